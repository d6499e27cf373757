"""The experiment's scoring: every model of a run against one cached real
reference on the same latent draws (`Evaluator`), and the choice of teacher.

The maths is `kd_gan.evaluation.formulas`; the networks
`kd_gan.evaluation.classifiers`; batches, statistics and their caches
`kd_gan.evaluation.scoring`.
"""

import os

from absl import logging

from kd_gan.evaluation import classifiers, scoring
from kd_gan.evaluation.scoring import REFERENCE_SPLITS
from kd_gan._io import read_json, write_json

DEFAULT_EVAL_SAMPLES = {"mnist": 10_000, "cifar10": 1_000, "celeb_a": 1_000, "images": 1_000}
FIDELITY_SAMPLES = 1000  # Held-out z for the MSE / PSNR to the teacher.


def eval_sample_count(dataset, eval_samples=None):
    """Generated images per model: `eval_samples` when given, else the data set's default."""
    return DEFAULT_EVAL_SAMPLES[dataset] if eval_samples is None else eval_samples


class Evaluator:
    """Scores generators against the real reference, all on the same latent draws.

    The reference is every image of the data set's reference split (or
    `reference_samples` seeded random ones), its statistics cached.

    Args:
        dataset: the data set's name (its reference split and classifier).
        count: generated images per model.
        data_dir: local data (as `data.load_dataset`).
        image_size: for dataset "images".
        inception_path: a local FID Inception (colour data sets).
        inception_precision: "auto", "float32" or "bfloat16" (`InceptionClassifier`).
        inception_engine: "auto", "tensorflow" or "openvino" (`InceptionClassifier`).
        reference_samples: a seeded random subset of the reference; None: all of it.
        seed: the run's seed (samples are drawn with `seed + 1`).
    """

    def __init__(self, dataset, count, data_dir=None, image_size=None, inception_path=None,
                 inception_precision="auto", reference_samples=None, seed=0, inception_engine="auto"):
        self.count = count
        self.seed = seed
        self.classifier = classifiers.classifier_for(dataset, inception_path, inception_precision, inception_engine)
        split = REFERENCE_SPLITS[dataset]
        self.reference = scoring.dataset_statistics(
            self.classifier, dataset, split, reference_samples, data_dir, image_size=image_size,
        )
        self.real = dict(
            scoring.quality(self.reference, None, classifiers.score_name(dataset)), split=split, source=self.reference.source
        )

    def quality(self, generator, cache_path=None, identity=None):
        """Score, FID, KID, precision/recall and VoL on `count` samples; cached in `cache_path` when given.

        The cache holds while the sample count, classifier, seed, reference and
        `identity` (e.g. a digest of a given teacher's file) are unchanged.
        """
        key = {
            "num_samples": self.count, "classifier": self.classifier.name, "seed": self.seed + 1,
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
