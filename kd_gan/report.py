"""The experiment's evaluation: every model on the same z, and the results table."""

from absl import logging

from kd_gan import metrics

# Real images the FID is measured against: MNIST's test split; CIFAR-10 and
# CelebA train (the shared local files hold no other split of them).
REFERENCE_SPLITS = {"mnist": "test", "cifar10": "train", "celeb_a": "train"}
DEFAULT_EVAL_SAMPLES = {"mnist": 10_000, "cifar10": 1_000, "celeb_a": 1_000}


def eval_sample_count(config):
    if config.eval_samples is not None:
        return config.eval_samples
    return DEFAULT_EVAL_SAMPLES[config.dataset]


def evaluate(config, generators):
    """Metrics of every generator on the same z, the real reference, and latent fidelity."""
    count = eval_sample_count(config)
    classifier = metrics.classifier_for(config.dataset, config.inception_path, config.data_dir)
    split = REFERENCE_SPLITS[config.dataset]
    reference, logits, vol = metrics.real_activations(classifier, config.dataset, split, count, config.data_dir)
    real = metrics.quality(reference, logits, vol, classifier, None, count)
    real["split"] = split
    evaluated, activations = {}, {}
    for name, generator in generators.items():
        logging.info("Evaluating %s on %d samples with %s", name, count, classifier.name)
        evaluated[name], activations[name] = metrics.evaluate_generator(
            generator, classifier, reference, count, seed=config.seed + 1
        )
    fidelity = {}
    for name in ("student", "scratch"):
        fidelity[name] = metrics.latent_fidelity(generators[name], generators["teacher"], num_samples=min(count, 1000))
        # Both on the same z as the teacher: how far from the teacher's own images.
        fidelity[name]["fid_to_teacher"] = metrics.frechet_distance(activations["teacher"], activations[name])
    return {"real": real, "models": evaluated, "fidelity": fidelity}


def results_table(results):
    """The markdown table of a run: one row per model."""
    evaluation = results.get("evaluation") or {}
    score_key = "mnist_score" if results["dataset"] == "mnist" else "inception_score"
    count = evaluation.get("real", {}).get("num_samples")
    lines = [
        f"| model | d | parameters | compression | {score_key} | FID (n={count}) | VoL | MSE to teacher | PSNR dB | FID to teacher |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def number(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"

    real = evaluation.get("real")
    if real:
        lines.append(f"| real ({real['split']}) | | | | {number(real.get(score_key), 2)} | 0 | {number(real['vol'], 0)} | | | |")
    teacher_parameters = results["models"]["teacher"]["parameters"]
    for name, entry in results["models"].items():
        quality = evaluation.get("models", {}).get(name, {})
        fidelity = evaluation.get("fidelity", {}).get(name, {})
        lines.append(
            f"| {name} | {entry.get('depth') or ''} | {entry['parameters']:,} | "
            f"{teacher_parameters / entry['parameters']:.1f}:1 | {number(quality.get(score_key), 2)} | "
            f"{number(quality.get('fid'), 2)} | {number(quality.get('vol'), 0)} | {number(fidelity.get('mse'), 4)} | "
            f"{number(fidelity.get('psnr_db'), 1)} | {number(fidelity.get('fid_to_teacher'), 2)} |"
        )
    return "\n".join(lines)
