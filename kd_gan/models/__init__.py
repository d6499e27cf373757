"""Generators and discriminators: the paper's DCGAN family, what any Keras
generator is asked (latent size, image shape, range), loading from `.keras`,
SavedModel or `.tflite`, precision policies, parameter/multiply-accumulate counts and
width profiles for a parameter budget."""

from kd_gan.models.precision import PRECISIONS, float32_copy, policy, with_policy
from kd_gan.models.tflite_generator import TFLiteGenerator, run_tflite
from kd_gan.models.dcgan import Discriminator, Generator, LeakyReLU, dcgan_widths, generator_layout
from kd_gan.models.pruning import prune_generator
from kd_gan.models.pretrained import pretrained, pretrained_path
from kd_gan.models.counting import compression_ratio, count_multiply_accumulates, count_parameters
from kd_gan.models.budget import PAPER_RATIOS, generator_parameters, propose_widths
from kd_gan.models.any_generator import (
    check_generator,
    feature_extractor,
    freeze,
    generate,
    generator_shapes,
    latent_size,
    load_generator,
)

__all__ = [
    "PAPER_RATIOS",
    "PRECISIONS",
    "Discriminator",
    "Generator",
    "LeakyReLU",
    "TFLiteGenerator",
    "check_generator",
    "compression_ratio",
    "count_multiply_accumulates",
    "count_parameters",
    "dcgan_widths",
    "feature_extractor",
    "float32_copy",
    "freeze",
    "generate",
    "generator_layout",
    "generator_parameters",
    "generator_shapes",
    "latent_size",
    "load_generator",
    "policy",
    "pretrained",
    "pretrained_path",
    "propose_widths",
    "prune_generator",
    "run_tflite",
    "with_policy",
]
