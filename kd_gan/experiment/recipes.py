"""What each student distils: the losses and weights of its kind."""

from kd_gan.distillation import losses


def kind_losses(config, spec, teacher_discriminator=None):
    """`(distillation_losses, weights)` of a student (`plan.StageSpec`);
    `(None, None)` for the paper's pixel MSE.

    Each kind adds its terms to the pixel MSE (weighted as in the paper's
    presets). The perceptual term reads `teacher_discriminator`, frozen; with
    none (a given teacher), the student's own discriminator, which trains
    beside it (joint and adversarial losses only).
    """
    if not spec.terms:
        return None, None
    distillation_losses = [losses.PixelMSE()]
    weights = [config.mse_weight if spec.discriminated else 1.0]
    if spec.distils_features:
        distillation_losses.append(losses.FeatureLoss())
        weights.append(config.feature_weight)
    if spec.perceptual:
        distillation_losses.append(losses.PerceptualLoss(teacher_discriminator or "discriminator"))
        weights.append(config.perceptual_weight)
    return distillation_losses, weights
