"""The experiment's report: results.json / results.csv / report.md, sample
grids and plots (the scores come from `kd_gan.evaluation`)."""

import csv
import os

import keras
import numpy as np

from kd_gan.evaluation import classifiers
from kd_gan.experiment import evaluator
from kd_gan.data import pixels
from kd_gan.experiment import plan, plots, recipes
from kd_gan.experiment.summary import csv_rows, findings, headline, number as _number, ratio
from kd_gan.models import precision
from kd_gan.models.any_generator import generate
from kd_gan._io import write_json

CSV_COLUMNS = (
    "name", "method", "depth", "parameters", "compression_ratio", "score_name", "score", "fid", "fid_samples",
    "reference_count", "kid", "kid_std", "precision", "recall", "vol", "mse_to_teacher", "psnr_db", "interpolation_psnr_db", "epochs", "generator_steps", "train_wall_time_s",
)


def write(output_dir, results, generators, heldout_z, columns):
    """Writes results.json, results.csv, the grids, the plots and report.md."""
    names = [entry["name"] for entry in results["models"]]
    results["samples"] = "samples.png"
    grid_z = heldout_z[:columns]
    rows = [np.asarray(generate(generators[name], grid_z)) for name in names]
    pixels.save_png(pixels.image_grid(rows), os.path.join(output_dir, results["samples"]))
    results["labelled_samples"] = plots.labelled_samples(
        results, [pixels.to_uint8(row) for row in rows], os.path.join(output_dir, "samples_labelled.png")
    )
    results["interpolation"] = "interpolation.png"
    weights = np.linspace(0.0, 1.0, columns, dtype=np.float32)[:, None]
    path = (1 - weights) * heldout_z[columns] + weights * heldout_z[columns + 1]
    pixels.save_png(
        pixels.image_grid([np.asarray(generate(generators[name], path)) for name in names]),
        os.path.join(output_dir, results["interpolation"]),
    )
    results["plots"] = {
        "quality_vs_compression": plots.quality_vs_compression(results, os.path.join(output_dir, "quality_vs_compression.png")),
        "training_curves": plots.training_curves(results, os.path.join(output_dir, "training_curves.png")),
    }
    write_json(os.path.join(output_dir, "results.json"), results)
    with open(os.path.join(output_dir, "results.csv"), "w", newline="") as file:
        writer = csv.DictWriter(file, CSV_COLUMNS, extrasaction="ignore")  # role and label: for the report only
        writer.writeheader()
        writer.writerows(csv_rows(results))
    with open(os.path.join(output_dir, "report.md"), "w") as file:
        file.write(markdown(results))


def results_table(results):
    """The paper's table: one row per model (teacher, then each student size)."""
    name = classifiers.score_name(results["dataset"])
    real = results.get("real")
    rows = csv_rows(results)
    count = next((row["fid_samples"] for row in rows if row["fid_samples"]), None)
    reference = f" vs {real['num_samples']:,} real" if real else ""
    fid = f"FID (n={count}{reference})" if count else "FID"  # No count: nothing was scored.
    lines = [
        f"| model | d | parameters | compression | {name} | {fid} | KID x1000 | precision | recall "
        "| VoL | MSE to teacher | PSNR dB | generator steps | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if real:
        lines.append(
            f"| real images ({real['split']}) | | | | {_number(real.get(name), 2)} | 0 | | | | {_number(real['vol'], 0)} | | | | |"
        )
    for row in rows:
        kid = _number(None if row["kid"] is None else 1000 * row["kid"], 1)
        if row["kid_std"] is not None:
            kid += f" ± {1000 * row['kid_std']:.1f}"
        lines.append(
            f"| {row['label']} | {_size_cell(row)} | {row['parameters']:,} | "
            f"{ratio(row['compression_ratio'])} | {_number(row['score'], 2)} | {_number(row['fid'], 1)} | {kid} | "
            f"{_number(row['precision'], 3)} | {_number(row['recall'], 3)} | "
            f"{_number(row['vol'], 0)} | {_number(row['mse_to_teacher'], 4)} | {_number(row['psnr_db'], 1)} | "
            f"{_number(row['generator_steps'], 0)} | {_number(row['train_wall_time_s'], 0)} |"
        )
    return "\n".join(lines)


def _size_cell(row):
    """The "d" column: "2", "4-12-12-12", "4-40-40-40, separable" (the depth alone for older results)."""
    if row["size_label"]:
        return row["size_label"].replace("widths ", "").replace("d=", "")
    return row["depth"] or ""


def _precision_sentence(config, results):
    """The run's precision, naming the stages that trained in float32 instead
    (`Experiment.stage_policy`) and those an earlier invocation trained in
    another precision (`precision=auto` resolved on another machine)."""
    chosen = results.get("precision") or config.get("precision", "float32")
    requested = f"{chosen} (precision auto on this machine)" if config.get("precision") == "auto" else chosen
    entries = {entry["name"]: entry for entry in results.get("teacher_candidates", []) + results.get("models", [])}
    differing = {}  # Compute dtype -> the stages that trained in it instead of the run's.
    for name, entry in entries.items():
        policy = (entry.get("training") or {}).get("dtype_policy")
        dtype = keras.dtype_policies.get(policy).compute_dtype if policy else chosen
        if dtype != chosen:
            differing.setdefault(dtype, []).append(name)
    in_float32 = differing.pop("float32", [])
    notes = [f"{', '.join(names)} in {dtype}, trained by an earlier invocation" for dtype, names in differing.items()]
    if in_float32:
        notes.append(f"{', '.join(in_float32)} in float32: {chosen} would slow them down on this CPU, "
                     "their steps being too small to gain from it or the CPU emulating it")
    return f"{requested} ({'; '.join(notes)})" if notes else requested


def shipped_table(results):
    """The exported `.tflite` files: size, latency and the file's own scores
    (through LiteRT) against its Keras student's."""
    name = classifiers.score_name(results["dataset"])
    keras_quality = {entry["name"]: entry.get("quality") or {} for entry in results["models"]}
    lines = [
        f"| student | file | bytes | p50 ms (engine) | {name} | FID | Keras {name} | Keras FID | FID change |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for student, records in results["export"].items():
        if "error" in records:
            lines.append(f"| {student} | export failed: {records['error']} | | | | | | | |")
            continue
        for key, record in records.items():
            if not key.startswith("tflite"):
                continue
            quality = record.get("quality") or {}
            reference = record.get("keras_quality") or keras_quality.get(student) or {}
            fid, keras_fid = quality.get("fid"), reference.get("fid")
            change = f"{100 * (fid - keras_fid) / keras_fid:+.1f}%" if fid is not None and keras_fid else "-"
            latency = _number(record.get("latency_ms"), 4)
            if record.get("latency_engine"):  # The faster LiteRT engine on this CPU (`measure_latency`).
                latency += f" ({record['latency_engine']})"
            lines.append(
                f"| {student} | `{os.path.basename(record['path'])}` | {record['bytes']:,} | "
                f"{latency} | {_number(quality.get(name), 2)} | {_number(fid, 1)} | "
                f"{_number(reference.get(name), 2)} | {_number(keras_fid, 1)} | {change} |"
            )
    cpus = {precision.cpu_label(record["cpu"]) for records in results["export"].values() for record in records.values()
            if isinstance(record, dict) and record.get("cpu")}
    if cpus:
        lines.append(f"\nLatency: batch 1, one LiteRT thread, the faster of XNNPACK and the built-in kernels, on {'; '.join(sorted(cpus))}.")
    return "\n".join(lines)


def _mse_weight_words(config):
    """The MSE weight beside an adversarial term, constant or decaying (`mse_weight_end`)."""
    end = config.get("mse_weight_end")
    if end is None:
        return f"{config['mse_weight']}"
    return f"{config['mse_weight']}, decaying linearly to {end} over each student's steps"


def _objective_sentence(config):
    """How the GANs trained: objective, critic steps, learning rates, weight average."""
    objective = config.get("objective", "ns")
    label = {"ns": "the non-saturating GAN loss", "hinge": "the hinge loss", "wgan-gp": "WGAN-GP (gradient penalty 10)"}
    critic = config.get("critic_steps") or 1
    text = (
        f"GANs trained with {label.get(objective, objective)}"
        + (f", {critic} discriminator steps per generator step" if critic > 1 else "")
        + f", Adam learning rates {config.get('learning_rate')} (generators) and "
        f"{config.get('d_learning_rate', config.get('learning_rate'))} (discriminators)"
    )
    decay = config.get("ema_decay") or 0
    return text + (f"; every generator is the moving average of its weights (decay {decay})." if decay else ".")


def _trained_sentence(config, results, sizes):
    """What the run trained beside its teacher, in what precision, on what data; the students'
    learning-rate schedule where it is not constant."""
    epochs = config["student_epochs"]
    if not results["losses"]:
        trained = f"No students; scratch GANs of {', '.join(sizes)} ({epochs} epochs)." if sizes else "No students."
        return f"{trained} Trained in {_precision_sentence(config, results)}."
    trained = f"Students of {', '.join(sizes)} distilled with the {' and '.join(results['losses'])} loss" + (
        f"; each size also trained from scratch as an ordinary GAN with the same {epochs} epochs."
        if config.get("scratch", True) else f" ({epochs} epochs; no scratch baselines)."
    )
    if config.get("student_start"):
        trained += f" Every student started from `{config['student_start']}`, whose own training these epochs leave out."
    data = "; students saw fresh z every step"
    if config.get("teacher_cache"):
        data = f"; students learned from {config['teacher_cache']:,} cached teacher outputs per pool" + (
            f", a fresh pool every {config['cache_refresh_epochs']} epochs" if config.get("cache_refresh_epochs") else ""
        )
    schedule = ""
    if config.get("student_lr_schedule", recipes.CONSTANT) != recipes.CONSTANT:
        schedule = f" Students learn at {config.get('student_learning_rate')}, decaying to 0 along a cosine over their steps."
    return f"{trained} Trained in {_precision_sentence(config, results)}{data}.{schedule}"


def markdown(results):
    """report.md: what ran, the table, findings, candidates, grids, plots, settings."""
    config = results["config"]
    name = classifiers.score_name(results["dataset"])
    teacher = results["models"][0]
    real = results.get("real") or {}
    sizes = list(dict.fromkeys(entry.get("size_label") or "" for entry in results["models"][1:]))
    finding = headline(results)
    pixel = config.get("pixel_loss", recipes.PIXEL_MSE)  # Runs before the setting existed used the MSE.
    out = [
        f"# Compressing a {results['dataset']} GAN by knowledge distillation",
        "",
        *([f"**{finding}**", ""] if finding else []),
        f"Teacher: **{teacher['name']}** ({teacher['parameters']:,} parameters"
        + (
            f", chosen by lowest FID among d = {', '.join(str(c['depth']) for c in results['teacher_candidates'])})."
            if not config.get("teacher_path")
            else f", loaded from `{config['teacher_path']}`)."
        ),
        _trained_sentence(config, results, sizes)
        + f" {_objective_sentence(config)}"
        + f" Training took {results['training_time_s']:,.0f} s over all stages; "
        f"this invocation {results['wall_time_s']:,.0f} s ({results['strategy']['name']} strategy, "
        f"{results['strategy']['replicas']} replica(s)).",
        "",
        "Methods: the *teacher* is a large DCGAN generator trained as a GAN; a *student "
        f"({recipes.PIXEL_TERMS[pixel].label})* is a small "
        f"generator trained to minimise {recipes.PIXEL_TERMS[pixel].words}"
        + ("" if pixel == recipes.PIXEL_MSE else f" (`--pixel_loss={pixel}`)")
        + " "
        "between its images and the teacher's for the same random z (no real data); a *student (joint)* adds that "
        "term (weight "
        f"{_mse_weight_words(config)}) to its own GAN loss against a student-sized discriminator on real images; "
        + (
            "a *student (adversarial)* adds that term to its GAN loss against a student-sized discriminator "
            "that learns to tell the teacher's images from the student's for the same z (no real data; "
            "*z-conditioned*: the discriminator is also given that z, a projection discriminator); "
            if {"adversarial", "adversarial_z"} & set(results["losses"]) else ""
        )
        + "a *scratch GAN* is the student's architecture trained as an ordinary GAN, the baseline distillation must beat. "
        "Compression is the teacher's parameter count over the model's.",
        "",
        "## Results",
        "",
        results_table(results),
        "",
    ]
    if real:
        out += [
            f"{name}: {'exp E[KL(p(y|x) || p(y))] with a small CNN trained on MNIST train, 10 at most' if name == 'mnist_score' else 'Inception Score (null when the classifier has no logits)'}. "
            f"FID against the statistics of {real['num_samples']:,} real images of the {real['split']} split "
            f"({real.get('source', 'the whole split')}) with {real['classifier']}, from {results.get('eval_samples') or '-'} "
            "samples per model; all models draw the same z. Compare FIDs only at equal sample counts; KID (x1000, "
            "± its standard error) is unbiased. Precision / recall (k=3 nearest-neighbour manifolds, Kynkäänniemi "
            "et al. 2019): the share of samples on the real manifold (fidelity) and of real images on the samples' "
            "(diversity), on up to 10,000 activations per side. VoL: variance of the Laplacian, higher is sharper. "
            "MSE / PSNR to teacher: on the same "
            f"{min(results.get('eval_samples') or evaluator.FIDELITY_SAMPLES, evaluator.FIDELITY_SAMPLES)} held-out z (`heldout_z.npy`), images in [-1, 1].",
            "",
        ]
    out += ["## Findings", ""] + [f"- {line}" for line in findings(results)] + [""]
    if results.get("export"):
        out += [
            "## Shipped files",
            "",
            "Each `.tflite` file under `export/`, scored itself through LiteRT on the same z as its Keras student; "
            "p50: median batch-1 call, one LiteRT thread, this machine. `_int8_qat`: the student fine-tuned "
            f"{results['config'].get('qat_epochs', 0)} epoch(s) under int8 rounding before its int8 export; its "
            "Keras columns are the fine-tuned Keras model's.",
            "",
            shipped_table(results),
            "",
        ]
    if len(results["teacher_candidates"]) > 1 or not config.get("teacher_path"):
        out += [
            "## Teacher candidates",
            "",
            f"| teacher | parameters | {name} | FID | chosen |",
            "|---|---|---|---|---|",
        ]
        for candidate in results["teacher_candidates"]:
            quality = candidate.get("quality") or {}
            out.append(
                f"| d={candidate['depth']} | {candidate['parameters']:,} | {_number(quality.get(name), 2)} | "
                f"{_number(quality.get('fid'), 1)} | {'yes' if candidate.get('selected') else ''} |"
            )
        out.append("")
    rows = ", ".join(f"{e['label']} {e.get('size_label') or ''}".strip() for e in results["models"])
    out += [
        "## Samples",
        "",
        f"Same latent vectors in every row. Rows, top to bottom: {rows}.",
        "",
        f"![samples]({results['samples']})",
        "",
        f"The same, each row named with its size: ![labelled samples]({results['labelled_samples']})",
        "",
        "Latent interpolation between two held-out z, same rows:",
        "",
        f"![interpolation]({results['interpolation']})",
        "",
        "## Plots",
        "",
        f"![quality against compression]({results['plots']['quality_vs_compression']})",
        "",
        f"![training curves]({results['plots']['training_curves']})",
        "",
        "## Settings",
        "",
        "| setting | value |",
        "|---|---|",
    ]
    out += [f"| {key} | {value} |" for key, value in config.items()]
    return "\n".join(out) + "\n"
