"""Knowledge distillation: the `Distiller`, what it distils (losses as objects,
the feature taps they read) and the cache of the teacher's outputs."""

from kd_gan.distillation.losses import (
    DistillationLoss,
    FeatureLoss,
    KerasDistillationLoss,
    PerceptualLoss,
    PixelL1,
    PixelMSE,
)
from kd_gan.distillation.pyramid import PixelLaplacianL1
from kd_gan.distillation.structural import PixelSSIM
from kd_gan.distillation.distiller import Distiller
from kd_gan.distillation.teacher_cache import TeacherCache

__all__ = [
    "DistillationLoss",
    "Distiller",
    "FeatureLoss",
    "KerasDistillationLoss",
    "PerceptualLoss",
    "PixelL1",
    "PixelLaplacianL1",
    "PixelMSE",
    "PixelSSIM",
    "TeacherCache",
]
