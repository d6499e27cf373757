"""kd_gan: compress GAN generators by knowledge distillation.

Implements Aguinaldo et al., "Compressing GANs using Knowledge Distillation"
(2019): depth-scaled DCGAN teachers and students, a Keras `Distiller` with the
MSE and joint losses, and the experiment that compares students to equal-size
GANs trained from scratch.

Subpackages, one job each: `models`, `training`, `distillation`, `data`,
`evaluation`, `export`, and `experiment` (the paper's run, which the others
never import).
"""

from kd_gan.models import (
    Discriminator,
    Generator,
    compression_ratio,
    count_multiply_accumulates,
    count_parameters,
    generator_shapes,
    load_generator,
    pretrained,
    propose_widths,
    prune_generator,
)
from kd_gan.training import GAN, latent_dataset
from kd_gan.distillation import Distiller

__version__ = "0.1.0"

__all__ = [
    "GAN",
    "Discriminator",
    "Distiller",
    "Generator",
    "compression_ratio",
    "count_multiply_accumulates",
    "count_parameters",
    "generator_shapes",
    "latent_dataset",
    "load_generator",
    "pretrained",
    "propose_widths",
    "prune_generator",
]
