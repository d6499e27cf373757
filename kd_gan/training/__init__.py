"""Adversarial training: the `GAN` model, its objectives, the steps it shares
with the joint Distiller, optimizers with the weight average, exact steps and
latent draws."""

from kd_gan.training.objectives import OBJECTIVES, discriminator_loss, generator_loss, gradient_penalty
from kd_gan.training.optimizers import default_optimizer, objective_optimizer
from kd_gan.training.steps import latent_dataset
from kd_gan.training.adversarial_steps import adversarial_update, critic_update
from kd_gan.training.gan import GAN
from kd_gan.training.callbacks import SampleImages, StopOnNonFinite

__all__ = [
    "GAN",
    "OBJECTIVES",
    "SampleImages",
    "StopOnNonFinite",
    "adversarial_update",
    "critic_update",
    "default_optimizer",
    "discriminator_loss",
    "generator_loss",
    "gradient_penalty",
    "latent_dataset",
    "objective_optimizer",
]
