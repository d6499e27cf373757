"""Quality against size over several run folders: every scored model of their
results.json, the ones no smaller-or-equal model beats (the Pareto front), as
a markdown table and a plot.

    python tools/pareto.py runs/celeb_a_levers runs/celeb_a_long100 --output=runs/celeb_a_pareto

Runs are compared only where their numbers mean the same: one data set, one
teacher size, and, per metric, one sample count, reference set and feature
network (FID depends on all three); anything else is refused with the run that
differs. Seeds of one configuration are separate points: the front shows the
best seed, so compare configurations at equal seed counts. The table names, for
each model, the training settings in which its run differs from the others
(epochs, pixel weight and its schedule, discriminator, ...).
"""

import json
import os

from absl import logging

from kd_gan.errors import InputError
from kd_gan.evaluation.classifiers import score_name
from kd_gan.experiment.run_folder import recorded_config

# Lower is better for these; higher for the data set's score (Inception or MNIST).
LOWER_IS_BETTER = ("fid", "kid")
ROLE_STYLES = (("student", "students", "tab:blue", "o"), ("scratch", "scratch GANs", "tab:red", "^"),
               ("teacher", "teacher", "black", "*"))
# Run settings that change how a student or scratch GAN trains, with the roles they reach: the
# table names those that differ between the runs given, so that rows of one label from two runs
# (e.g. 20 and 100 epochs, or another discriminator) say what made them differ.
_BOTH, _STUDENT = ("student", "scratch"), ("student",)
TRAINING_SETTINGS = {
    "student_epochs": _BOTH, "steps_per_epoch": _BOTH, "batch_size": _BOTH, "objective": _BOTH,
    "critic_steps": _BOTH, "learning_rate": _BOTH, "d_learning_rate": _BOTH, "discriminator_depth": _BOTH,
    "ema_decay": _BOTH, "seed": _BOTH, "precision": _BOTH, "student_learning_rate": _STUDENT, "student_lr_schedule": _STUDENT,
    "mse_weight": _STUDENT, "mse_weight_end": _STUDENT, "pixel_loss": _STUDENT, "feature_weight": _STUDENT, "perceptual_weight": _STUDENT,
    "teacher_cache": _STUDENT, "cache_refresh_epochs": _STUDENT, "cache_storage": _STUDENT,
}


def pareto_front(points, lower_is_better=True):
    """Indices of the points `(parameters, value)` that no other point dominates
    (as small or smaller and at least as good, and better in one of the two)."""
    sign = 1 if lower_is_better else -1
    front = []
    for index, (size, value) in enumerate(points):
        dominated = any(
            other_size <= size and sign * other_value <= sign * value
            and (other_size < size or sign * other_value < sign * value)
            for other_index, (other_size, other_value) in enumerate(points) if other_index != index
        )
        if not dominated:
            front.append(index)
    return front


def _results(run_dir):
    path = os.path.join(run_dir, "results.json")
    if not os.path.exists(path):
        raise InputError(f"{run_dir} has no results.json: pass the folders of finished runs (run_experiment.py --output_dir).")
    with open(path) as file:
        results = json.load(file)
    if not results.get("dataset") or not results.get("models"):
        raise InputError(f"{path} names no data set or no models: it is not a run_experiment.py results.json.")
    return results


def _check_same(name, values):
    """`values`: (run folder, value) pairs; refuses where the values differ."""
    if len({value for _, value in values}) > 1:
        listed = ", ".join(sorted({f"{run}: {value}" for run, value in values}))
        raise InputError(f"The runs differ in {name} ({listed}): their numbers are not comparable.")


def _same_teacher(entry, kept):
    """Whether a teacher entry is one already kept: the same file, or the same scores."""
    def path(teacher):
        return (teacher.get("training") or {}).get("path")

    return any(
        entry["parameters"] == other["parameters"]
        and ((path(entry) is not None and path(entry) == path(other)) or entry["quality"] == other["quality"])
        for other in kept
    )


def differing_settings(runs):
    """The `TRAINING_SETTINGS` whose values differ between the runs (`{run: results}`)
    that record their configuration, by run: `{run: {setting: value}}`. A field
    newer than a run, or one that defaults to another's value, is compared at
    the value it had there (`run_folder.recorded_config`)."""
    configs = {
        run: recorded_config(results["config"]) for run, results in runs.items() if isinstance(results.get("config"), dict)
    }
    differing = [key for key in TRAINING_SETTINGS if len({json.dumps(c.get(key)) for c in configs.values()}) > 1]
    return {run: {key: configs[run].get(key) for key in differing} if run in configs else {} for run in runs}


def settings_label(settings, role):
    """`settings` (from `differing_settings`) that reach a model of `role`, in words
    (an unset setting, None in the configuration, as "default")."""
    return ", ".join(
        f"{key}={'default' if value is None else value}" for key, value in settings.items() if role in TRAINING_SETTINGS[key]
    )


def collect(run_dirs, metric="fid"):
    """The scored models of `run_dirs` (teachers, students and scratch GANs of every
    run, a teacher that several runs share once) as dicts `run, name, label, role,
    settings, parameters, compression_ratio, value`, and the data set. `settings`
    names the run's training settings that differ between the runs and reach the
    model (`settings_label`): empty for teachers and where the runs agree.

    Compression is against the runs' teacher size. Models without a score for
    `metric` (e.g. a diverged GAN, whose FID is not finite) are left out and logged.

    Raises:
        InputError: a folder without a results.json, an unknown metric, or runs that
            differ in data set, teacher size, or the metric's sample count, reference
            or feature network.
    """
    if not run_dirs:
        raise InputError("Give at least one run folder.")
    runs = {run_dir: _results(run_dir) for run_dir in run_dirs}
    _check_same("data set", [(run, results["dataset"]) for run, results in runs.items()])
    _check_same("teacher parameters", [(run, results["models"][0]["parameters"]) for run, results in runs.items()])
    dataset = next(iter(runs.values()))["dataset"]
    teacher_parameters = next(iter(runs.values()))["models"][0]["parameters"]
    known = (*LOWER_IS_BETTER, score_name(dataset))
    if metric not in known:
        raise InputError(f"Unknown metric {metric!r} for {dataset}; choose one of {list(known)}.")
    models, teachers, scoring = [], [], []
    settings = differing_settings(runs)
    for run, results in runs.items():
        for entry in results["models"]:
            quality = entry.get("quality") or {}
            if quality.get(metric) is None:
                logging.info("%s: %s has no %s score; left out.", run, entry["name"], metric)
                continue
            if entry["role"] == "teacher":
                if _same_teacher(entry, teachers):
                    continue  # A later run's copy of a teacher already kept.
                teachers.append(entry)
            scoring.append((run, (quality.get("num_samples"), quality.get("reference"), quality.get("classifier"))))
            models.append(dict(
                run=run, name=entry["name"], label=entry["label"], size_label=entry.get("size_label") or "",
                role=entry["role"], settings=settings_label(settings[run], entry["role"]), parameters=entry["parameters"],
                compression_ratio=teacher_parameters / entry["parameters"], value=quality[metric],
            ))
    if not models:
        raise InputError(f"No model of {list(run_dirs)} has a {metric} score.")
    for position, name in enumerate(("sample count", "reference", "feature network")):
        _check_same(f"{metric} {name}", [(run, key[position]) for run, key in scoring])
    return models, dataset


def model_front(models, metric):
    """Indices of `models` (from `collect`) on the Pareto front of `metric`."""
    return pareto_front([(m["parameters"], m["value"]) for m in models], metric in LOWER_IS_BETTER)


def front_table(models, metric, front):
    """Markdown: every model by size, its metric, and whether it is on the front (`model_front`)."""
    lower = metric in LOWER_IS_BETTER
    on_front = set(front)
    order = sorted(range(len(models)), key=lambda i: (-models[i]["parameters"], models[i]["value"] * (1 if lower else -1)))
    lines = [f"| model | run | settings that differ | parameters | compression | {metric} | on the front |",
             "|---|---|---|---|---|---|---|"]
    for index in order:
        model = models[index]
        name = model["label"] + (f", {model['size_label']}" if model["size_label"] else "") + f" (`{model['name']}`)"
        lines.append(
            f"| {name} | {model['run']} | {model.get('settings', '')} | {model['parameters']:,} | {model['compression_ratio']:,.1f}:1 | "
            f"{model['value']:.4g} | {'yes' if index in on_front else ''} |"
        )
    return "\n".join(lines)


def front_plot(models, metric, dataset, path, front):
    """The metric against parameters (log axis): students, scratch GANs, the teacher, and the front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lower = metric in LOWER_IS_BETTER
    steps = sorted((models[i]["parameters"], models[i]["value"]) for i in front)
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for role, label, colour, marker in ROLE_STYLES:
        chosen = [m for m in models if m["role"] == role]
        if chosen:
            axis.scatter([m["parameters"] for m in chosen], [m["value"] for m in chosen], color=colour, marker=marker, label=label)
    axis.step(*zip(*steps), where="post", color="tab:green", alpha=0.6, label="Pareto front")
    axis.set_xscale("log")
    axis.set_xlabel("generator parameters")
    axis.set_ylabel(f"{metric} ({'lower' if lower else 'higher'} is better)")
    axis.set_title(f"{dataset}: {metric} against size")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_front(run_dirs, output_dir, metric="fid"):
    """Writes `pareto_<metric>.md`, `.json` and `.png` to `output_dir`; returns the table."""
    models, dataset = collect(run_dirs, metric)
    os.makedirs(output_dir, exist_ok=True)
    front = model_front(models, metric)
    table = front_table(models, metric, front)
    stem = os.path.join(output_dir, f"pareto_{metric}")
    with open(stem + ".md", "w") as file:
        file.write(table + "\n")
    with open(stem + ".json", "w") as file:
        json.dump({"dataset": dataset, "metric": metric, "runs": list(run_dirs), "models": models,
                   "front": [models[i]["name"] + " @ " + models[i]["run"] for i in front]}, file, indent=2)
    front_plot(models, metric, dataset, stem + ".png", front)
    return table
