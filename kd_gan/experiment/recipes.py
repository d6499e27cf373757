"""What each student distils: the losses and weights of its kind."""

import keras

from kd_gan.distillation import losses
from kd_gan.errors import InputError


def pixel_weight(config, spec, steps):
    """The pixel MSE's weight of a student (`plan.StageSpec`) of `steps`
    steps: 1 alone; beside an adversarial term `config.mse_weight`, decaying
    linearly to `config.mse_weight_end` over the steps when that is given."""
    if not spec.discriminated:
        return 1.0
    if config.mse_weight_end is None:
        return config.mse_weight
    if steps is None:
        raise InputError("mse_weight_end decays the pixel weight over the student's steps: pass steps=.")
    return keras.optimizers.schedules.PolynomialDecay(
        float(config.mse_weight), max(int(steps), 1), float(config.mse_weight_end)
    )


def kind_losses(config, spec, teacher_discriminator=None, steps=None):
    """`(distillation_losses, weights)` of a student (`plan.StageSpec`);
    `(None, None)` for the paper's pixel MSE.

    Each kind adds its terms to the pixel MSE (weighted as in the paper's
    presets). The perceptual term reads `teacher_discriminator`, frozen; with
    none (a given teacher), the student's own discriminator, which trains
    beside it (joint and adversarial losses only). `steps`: the student's
    (the pixel weight's schedule, `pixel_weight`).
    """
    if not spec.terms:
        return None, None
    distillation_losses = [losses.PixelMSE()]
    weights = [pixel_weight(config, spec, steps)]
    if spec.distils_features:
        distillation_losses.append(losses.FeatureLoss())
        weights.append(config.feature_weight)
    if spec.perceptual:
        distillation_losses.append(losses.PerceptualLoss(teacher_discriminator or "discriminator"))
        weights.append(config.perceptual_weight)
    return distillation_losses, weights
