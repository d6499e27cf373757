"""Evaluation of generators: during training (`EvaluationCallback`, every
few epochs to TensorBoard) and after it (`Evaluator`: an experiment's models
scored against one cached real reference, on the same latent draws).

The maths is `kd_gan.metrics`; the networks `kd_gan.classifiers`; batches,
statistics and their caches `kd_gan.scoring`.
"""

import os

import keras
import tensorflow as tf
from absl import logging

from kd_gan import classifiers, scoring
from kd_gan.jsonio import read_json, write_json

# Real images the FID is measured against: MNIST's test split; CIFAR-10 and
# CelebA train (the shared local files hold no other split of them).
REFERENCE_SPLITS = {"mnist": "test", "cifar10": "train", "celeb_a": "train", "images": "train"}
DEFAULT_EVAL_SAMPLES = {"mnist": 10_000, "cifar10": 1_000, "celeb_a": 1_000, "images": 1_000}
FIDELITY_SAMPLES = 1000  # Held-out z for the MSE / PSNR to the teacher.


def eval_sample_count(config):
    if config.eval_samples is not None:
        return config.eval_samples
    return DEFAULT_EVAL_SAMPLES[config.dataset]


class Evaluator:
    """Scores generators against the real reference, all on the same latent draws.

    The reference is every image of the data set's reference split (or
    `config.reference_samples` seeded random ones), its statistics cached.

    Args:
        config: the `ExperimentConfig` (dataset, sample counts, classifier paths, seed).
    """

    def __init__(self, config):
        self.config = config
        self.count = eval_sample_count(config)
        self.classifier = classifiers.classifier_for(config.dataset, config.inception_path, config.inception_precision)
        split = REFERENCE_SPLITS[config.dataset]
        self.reference = scoring.dataset_statistics(
            self.classifier, config.dataset, split, config.reference_samples, config.data_dir,
            image_size=config.image_size,
        )
        self.real = dict(
            scoring.quality(self.reference, None, classifiers.score_name(config.dataset)), split=split, source=self.reference.source
        )

    def quality(self, generator, cache_path=None, identity=None):
        """Score, FID, KID, precision/recall and VoL on `count` samples; cached in `cache_path` when given.

        The cache holds while the sample count, classifier, seed, reference and
        `identity` (e.g. a digest of a given teacher's file) are unchanged.
        """
        key = {
            "num_samples": self.count, "classifier": self.classifier.name, "seed": self.config.seed + 1,
            "reference": [self.reference.source, self.reference.fingerprint, self.reference.preprocessing],
            "metrics_version": scoring.STATISTICS_VERSION, "identity": identity,
        }
        if cache_path and os.path.isfile(cache_path):
            cached = read_json(cache_path)
            if cached.get("key") == key:
                return cached["quality"]
        logging.info("Evaluating %s on %d samples with %s", getattr(generator, "name", "generator"), self.count, self.classifier.name)
        # Every model draws the same z (seed + 1): like is compared with like.
        record = scoring.evaluate_generator(generator, self.classifier, self.reference, self.count, seed=key["seed"])
        if cache_path:
            write_json(cache_path, {"key": key, "quality": record})
        return record

    def fidelity(self, generator, teacher, heldout_z):
        """MSE / PSNR to the teacher on the shared held-out z."""
        return scoring.latent_fidelity(generator, teacher, z=heldout_z[: min(self.count, FIDELITY_SAMPLES)])


def select_teacher(candidates):
    """The candidate (`results.ModelResult`) with the lowest FID, the higher
    score breaking ties (first when unscored)."""
    def key(candidate):
        quality = candidate.quality or {}
        fid = quality.get("fid")
        score = quality.get("mnist_score", quality.get("inception_score")) or 0.0
        return (float("inf") if fid is None else round(fid, 6), -score)

    return min(candidates, key=key)


class EvaluationCallback(keras.callbacks.Callback):
    """Scores a generator every `every_n_epochs` epochs and logs it to TensorBoard.

    Args:
        generator: the generator being trained (e.g. a Distiller's student).
        classifier: a classifier from `classifiers.classifier_for`; for
            monitoring on a CPU with bfloat16 units,
            `classifier_for(dataset, path, precision="bfloat16")`, with a
            reference computed by that same classifier.
        reference: the real data's `ImageStatistics` (`scoring.dataset_statistics`).
        num_samples: generated images per evaluation (state it with the FID).
        log_dir: TensorBoard folder; scalars are named `eval/<metric>`.
        every_n_epochs: evaluation period.
        seed: seed of the latent vectors (the same z at every evaluation).

    Example:

    ```python
    classifier = classifiers.classifier_for("mnist")
    reference = scoring.dataset_statistics(classifier, "mnist", "test", data_dir="../shared/data")
    distiller.fit(..., callbacks=[EvaluationCallback(student, classifier, reference, 1000, "logs/eval")])
    ```
    """

    def __init__(self, generator, classifier, reference, num_samples, log_dir, every_n_epochs=1, seed=0):
        super().__init__()
        self.generator = generator
        self.classifier = classifier
        self.reference = reference
        self.num_samples = num_samples
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.writer = tf.summary.create_file_writer(log_dir)
        self.history = []

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        record = scoring.evaluate_generator(self.generator, self.classifier, self.reference, self.num_samples, self.seed)
        record["epoch"] = epoch + 1
        self.history.append(record)
        with self.writer.as_default():
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "num_samples", "reference_count"):
                    tf.summary.scalar(f"eval/{key}", value, step=epoch + 1)
        self.writer.flush()
        logging.info("Epoch %d evaluation (%d samples): %s", epoch + 1, self.num_samples, record)
