"""Structural similarity as a distillation loss: a term that sees blur.

A student too small to copy its teacher's details settles, under a pixel
error, on their local average: a blurred image whose mean is right. SSIM
compares local contrasts and structure as well, so the same blur costs it.
"""

import keras
import numpy as np
import tensorflow as tf

from kd_gan.distillation.losses import DistillationLoss
from kd_gan.errors import InputError


@keras.saving.register_keras_serializable(package="kd_gan")
class PixelSSIM(DistillationLoss):
    """One minus the structural similarity of student and teacher images,
    averaged over `scales` (the full size, then each 2x average-pooled copy).

    SSIM (Wang et al., 2004, through `tf.image.ssim`: 11x11 Gaussian windows
    of sigma 1.5) compares local means, contrasts and structure: unlike a
    pixel error it penalises a blurred student for its missing local
    contrast even where its mean is right. Zhao et al. (2017, "Loss Functions
    for Image Restoration with Neural Networks") mix it with L1 (`0.84` and
    `0.16`). The scales are averaged rather than multiplied as in MS-SSIM,
    whose fractional powers of clipped terms have unbounded gradients at 0.

    Args:
        scales: how many sizes are compared (each halves the last); the
            smallest must be at least 11 pixels (the window). None: as many
            as the images allow, up to 3 (3 at 64x64, 2 at 32x32 and 28x28).

    Example:

    ```python
    losses = [PixelSSIM(), PixelL1()]
    distiller = Distiller(teacher, student, distillation_losses=losses, distillation_loss_weights=[0.84, 0.16])
    ```
    """

    WINDOW = 11
    MOST_SCALES = 3  # What scales=None reaches at most.

    def __init__(self, scales=3, name="ssim", **kwargs):
        super().__init__(name=name, **kwargs)
        if scales is not None and (isinstance(scales, bool) or not isinstance(scales, (int, np.integer)) or scales < 1):
            raise InputError(f"scales must be an integer >= 1 or None. Received: scales={scales!r}")
        self.scales = None if scales is None else int(scales)

    def scales_for(self, shape):
        """How many scales images of `shape` (batch first) are compared at, or InputError."""
        height, width = shape[1:3]
        fitting = [n for n in range(1, max(self.scales or 0, self.MOST_SCALES) + 1)
                   if min(height, width) // 2 ** (n - 1) >= self.WINDOW]
        if self.scales is None and fitting:
            return fitting[-1]
        if self.scales is not None and self.scales in fitting:
            return self.scales
        wanted = self.scales or 1
        allowed = f"these allow scales <= {fitting[-1]}" if fitting else "no scale fits them"
        raise InputError(
            f"PixelSSIM(scales={self.scales}) needs images of at least {self.WINDOW * 2 ** (wanted - 1)} pixels a "
            f"side (its {self.WINDOW}-pixel window at the smallest scale); these are {height}x{width}: {allowed}."
        )

    def build_for(self, teacher_shapes, student_shapes, distiller):
        self.scales_for(teacher_shapes[0])  # Refused before training, not at the first step.
        super().build_for(teacher_shapes, student_shapes, distiller)

    def compute_loss(self, teacher_outputs, student_outputs):
        target = (tf.cast(teacher_outputs[0], tf.float32) + 1.0) / 2.0  # [-1, 1] -> [0, 1].
        images = (tf.cast(student_outputs[0], tf.float32) + 1.0) / 2.0
        scales = self.scales_for(target.shape)
        terms = []
        for scale in range(scales):
            if scale:
                target, images = (tf.nn.avg_pool2d(x, 2, 2, "VALID") for x in (target, images))
            terms.append(1.0 - tf.image.ssim(images, target, max_val=1.0))
        return tf.add_n(terms) / float(scales)

    def get_config(self):
        config = super().get_config()
        config.update(scales=self.scales)
        return config
