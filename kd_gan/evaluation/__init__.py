"""Evaluation in three rooms: the formulas (`formulas`: IS, FID, KID,
precision/recall, VoL, PSNR), the networks that feed them (`classifiers`), and
the plumbing (`scoring`: batches, statistics and their caches, quality records;
`callback`: scores during training). `python -m kd_gan.evaluate` is `cli`."""

from kd_gan.evaluation.classifiers import InceptionClassifier, MnistClassifier, classifier_for
from kd_gan.evaluation.scoring import (
    ImageStatistics,
    dataset_statistics,
    evaluate_generator,
    folder_statistics,
    generator_statistics,
    latent_fidelity,
)
from kd_gan.evaluation.callback import EvaluationCallback
from kd_gan.evaluation.cli import evaluate

__all__ = [
    "EvaluationCallback",
    "ImageStatistics",
    "InceptionClassifier",
    "MnistClassifier",
    "classifier_for",
    "dataset_statistics",
    "evaluate",
    "evaluate_generator",
    "folder_statistics",
    "generator_statistics",
    "latent_fidelity",
]
