"""PNG plots of an experiment's results (matplotlib, no display needed)."""

import itertools
import os

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullFormatter  # noqa: E402

from kd_gan.evaluation.classifiers import score_name  # noqa: E402
from kd_gan.experiment.recipes import pixel_loss_names  # noqa: E402

METHOD_STYLES = {
    "student_mse": ("tab:blue", "o"),
    "student_joint": ("tab:green", "s"),
    "student_adversarial": ("tab:olive", "*"),
    "scratch": ("tab:red", "^"),
}
# Students of other distillation kinds take the next free style.
EXTRA_STYLES = (("tab:purple", "D"), ("tab:orange", "v"), ("tab:brown", "P"), ("tab:pink", "X"),
                ("tab:cyan", "<"), ("tab:gray", ">"))


def _styles(results):
    """`(method, label, colour, marker)` of every method in `results` but the teacher."""
    labels = {entry["method"]: entry["label"] for entry in results["models"][1:]}
    extra = iter(EXTRA_STYLES * (1 + len(labels) // len(EXTRA_STYLES)))
    return [(method, label, *(METHOD_STYLES.get(method) or next(extra))) for method, label in labels.items()]


def quality_vs_compression(results, path):
    """Score and FID against compression ratio (log axis), one line per method."""
    score_key = score_name(results["dataset"])
    teacher = results["models"][0]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key, label in ((axes[0], score_key, score_key.replace("_", " ")), (axes[1], "fid", "FID (lower is better)")):
        teacher_value = (teacher.get("quality") or {}).get(key)
        if teacher_value is not None:
            axis.axhline(teacher_value, color="black", linestyle="--", label=f"teacher d={teacher['depth']}" if teacher["depth"] else "teacher")
        for method, name, color, marker in _styles(results):
            points = sorted(
                (entry["compression_ratio"], entry["quality"][key])
                for entry in results["models"]
                if entry["method"] == method and (entry.get("quality") or {}).get(key) is not None
            )
            if points:
                axis.plot(*zip(*points), color=color, marker=marker, label=name)
        axis.set_xscale("log")
        # Ticks at the models' own ratios, written as ratios.
        ratios = sorted({entry["compression_ratio"] for entry in results["models"][1:]})
        axis.set_xticks(ratios, [f"{r:,.0f}:1" if r >= 10 else f"{r:.1f}:1" for r in ratios])
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel("compression ratio (teacher : model parameters)")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    for axis, missing in zip(axes, (f"no {score_key.replace('_', ' ')} in this run", "no FID in this run")):
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize="small")
        else:  # E.g. the Inception Score of a FID network without logits.
            axis.text(0.5, 0.5, missing, ha="center", va="center", transform=axis.transAxes)
    figure.suptitle(f"{results['dataset']}: quality against compression")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return os.path.basename(path)


_LINE_STYLES = ("-", ":", "--", "-.")


def curve_panels(results):
    """What `training_curves` draws: `(title, [(label, per-epoch values, line style)])`
    per panel: the teacher GANs, each student method (its loss and every pixel
    term it logged, `recipes.PIXEL_TERMS`' losses by name) and the scratch GANs."""
    recipes = {entry["method"]: entry["recipe"] for entry in results["models"] if entry["role"] == "student"}
    student_keys = ("student_loss",) + pixel_loss_names()
    panels = (
        [("teacher", ("g_loss", "d_loss"), "teacher GANs")]
        + [(method, student_keys, f"students: {recipe}") for method, recipe in recipes.items()]
        + [("scratch", ("g_loss", "d_loss"), "scratch GANs")]
    )
    entries = {entry["name"]: entry for entry in results["teacher_candidates"] + results["models"]}
    drawn = []
    for method, keys, title in panels:
        curves = []
        for entry in entries.values():
            history = (entry.get("training") or {}).get("history") or {}
            if entry["method"] != method:
                continue
            logged = [key for key in keys if key in history]
            for key, style in zip(logged, itertools.cycle(_LINE_STYLES)):
                curves.append((f"{entry.get('size_label') or ''} {key}".strip(), history[key], style))
        drawn.append((title, curves))
    return drawn


def training_curves(results, path):
    """Per-epoch losses of every trained stage: teachers, students, scratch GANs."""
    panels = curve_panels(results)
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    for axis, (title, curves) in zip(axes, panels):
        for label, values, style in curves:
            axis.plot(range(1, len(values) + 1), values, style, marker=".", label=label)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(True, alpha=0.3)
        if axis.lines:
            axis.legend(fontsize="x-small")
        else:
            axis.text(0.5, 0.5, "not trained in this run", ha="center", va="center", transform=axis.transAxes)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return os.path.basename(path)


def labelled_samples(results, rows, path):
    """The sample grid with each row named: its model, d, parameters and compression.

    Args:
        results: the run's results (`results["models"]`, in the order of `rows`).
        rows: one uint8 array `(columns, height, width, channels)` per model.
        path: the PNG to write.
    """
    labels = []
    for entry in results["models"]:
        ratio = entry.get("compression_ratio") or 1.0
        name = entry["label"] + (f", {entry['size_label']}" if entry.get("size_label") else "")
        labels.append(f"{name}\n{entry['parameters']:,} parameters\n{ratio:,.0f}:1")
    # Room for the longest label line: about 0.07 inch a character at 8 points.
    longest = max(len(line) for label in labels for line in label.split("\n"))
    row_inches, label_inches = 0.9, max(1.8, 0.07 * longest + 0.2)
    aspect = len(rows[0]) * rows[0].shape[2] / rows[0].shape[1]  # A row's width over its height.
    width = label_inches + row_inches * aspect
    figure, axes = plt.subplots(len(rows), 1, figsize=(width, row_inches * len(rows) + 0.1), squeeze=False)
    for axis, label, row in zip(axes[:, 0], labels, rows):
        strip = np.concatenate(list(row), axis=1)  # The row's images side by side.
        axis.imshow(strip[..., 0] if strip.shape[-1] == 1 else strip, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    figure.subplots_adjust(left=label_inches / width, right=0.995, top=0.99, bottom=0.01, hspace=0.08)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return os.path.basename(path)
