"""What each student distils and how it learns: the losses and weights of its kind, its learning rate."""

import dataclasses
from typing import Callable, List, Tuple

import keras

from kd_gan.distillation import losses
from kd_gan.distillation.pyramid import PixelLaplacianL1
from kd_gan.distillation.structural import PixelSSIM
from kd_gan.errors import InputError

PIXEL_MSE = "mse"


@dataclasses.dataclass(frozen=True)
class PixelTerm:
    """A pixel term of the students (`ExperimentConfig.pixel_loss`): `make()` returns
    fresh `(loss, share)` pairs (each loss's share of the pixel weight);
    `label` names its students in tables and figures ("student (L1)"); `words`
    describe it in the report's methods and the flag's help."""

    make: Callable[[], List[Tuple[losses.DistillationLoss, float]]]
    label: str
    words: str


# Every pixel term, in one table: the config checks names against it, the plan
# labels stages by it, the report and the --pixel_loss flag describe it.
PIXEL_TERMS = {
    PIXEL_MSE: PixelTerm(lambda: [(losses.PixelMSE(), 1.0)], "MSE", "the pixel MSE (the paper's)"),
    "l1": PixelTerm(lambda: [(losses.PixelL1(), 1.0)], "L1", "the mean absolute pixel error"),
    "ssim_l1": PixelTerm(  # Zhao et al., 2017.
        lambda: [(PixelSSIM(scales=None), 0.84), (losses.PixelL1(), 0.16)], "SSIM + L1",
        "0.84 (1 - SSIM, averaged over up to 3 scales) + 0.16 the mean absolute pixel error",
    ),
    "lap1": PixelTerm(  # Bojanowski et al., 2018.
        lambda: [(PixelLaplacianL1(levels=None), 1.0)], "Lap1",
        "the mean absolute error of the Laplacian pyramids, each of up to 3 bands and the residual weighed alike",
    ),
}


def pixel_loss_names():
    """The names the pixel terms' losses log under (a student's history keys), each once."""
    return tuple(dict.fromkeys(loss.name for term in PIXEL_TERMS.values() for loss, _ in term.make()))


def pixel_terms(pixel_loss):
    """`(losses, shares)`: fresh losses of the pixel term `pixel_loss` (a key of
    `PIXEL_TERMS`) and each one's share of the pixel weight."""
    pairs = PIXEL_TERMS[pixel_loss].make()
    return [loss for loss, _ in pairs], [share for _, share in pairs]


CONSTANT, COSINE = "constant", "cosine"
LR_SCHEDULES = (CONSTANT, COSINE)  # `ExperimentConfig.student_lr_schedule`.


def student_learning_rate(config, steps):
    """A student's Adam learning rate over its `steps` steps: `config.student_learning_rate`,
    constant, or decaying to 0 along a cosine (`config.student_lr_schedule`). Quantization-aware
    fine-tuning keeps a constant tenth of it (`shipping.quantization_aware_student`)."""
    if config.student_lr_schedule == COSINE:
        return keras.optimizers.schedules.CosineDecay(float(config.student_learning_rate), max(int(steps), 1))
    return config.student_learning_rate


def pixel_weight(config, spec, steps, share=1.0):
    """The pixel term's weight of a student (`plan.StageSpec`) of `steps`
    steps, times `share`: 1 alone; beside an adversarial term
    `config.mse_weight`, decaying linearly to `config.mse_weight_end` over the
    steps when that is given."""
    if not spec.discriminated:
        return share
    if config.mse_weight_end is None:
        return share * config.mse_weight
    if steps is None:
        raise InputError("mse_weight_end decays the pixel weight over the student's steps: pass steps=.")
    return keras.optimizers.schedules.PolynomialDecay(
        share * float(config.mse_weight), max(int(steps), 1), share * float(config.mse_weight_end)
    )


def kind_losses(config, spec, teacher_discriminator=None, steps=None):
    """`(distillation_losses, weights)` of a student (`plan.StageSpec`);
    `(None, None)` for the paper's pixel MSE.

    Each kind adds its terms to the pixel term (`config.pixel_loss`, checked
    by `ExperimentConfig`; the paper's MSE by default, weighted as in the
    paper's presets). The perceptual term reads `teacher_discriminator`,
    frozen; with none (a given teacher), the student's own discriminator,
    which trains beside it (joint and adversarial losses only). `steps`: the student's
    (the pixel weight's schedule, `pixel_weight`).
    """
    if not spec.terms and config.pixel_loss == PIXEL_MSE:
        return None, None
    distillation_losses, shares = pixel_terms(config.pixel_loss)
    weights = [pixel_weight(config, spec, steps, share) for share in shares]
    if spec.distils_features:
        distillation_losses.append(losses.FeatureLoss())
        weights.append(config.feature_weight)
    if spec.perceptual:
        distillation_losses.append(losses.PerceptualLoss(teacher_discriminator or "discriminator"))
        weights.append(config.perceptual_weight)
    return distillation_losses, weights
