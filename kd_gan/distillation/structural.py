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


GAUSSIAN_WINDOW, SIGMA = 11, 1.5  # Wang et al.'s Gaussian window, as tf.image.ssim's defaults.
K1, K2 = 0.01, 0.03


def _window_matrix(size):
    """(size, size - 10): column j holds the normalised 1-D Gaussian at rows j..j + 10,
    so `x @ matrix` is the valid Gaussian filtering of x's last axis."""
    taps = np.exp(-((np.arange(GAUSSIAN_WINDOW) - (GAUSSIAN_WINDOW - 1) / 2.0) ** 2) / (2 * SIGMA**2))
    matrix = np.zeros((size, size - GAUSSIAN_WINDOW + 1), np.float32)
    for column in range(size - GAUSSIAN_WINDOW + 1):
        matrix[column : column + GAUSSIAN_WINDOW, column] = taps / taps.sum()
    return tf.constant(matrix)


def filter_maps(maps, rows, columns):
    """`rows^T @ map @ columns` for every map of channels-first `maps` (batch, channels,
    height, width): a separable filter as two matrix products per map.

    The maps are flattened to one batch axis first: TensorFlow 2.21's oneDNN batched
    product reads past a matrix it broadcasts against (batch, 1, height, width)
    (tensorflow/tensorflow#117700: wrong values, then a corrupted heap), so no product
    here broadcasts over two batch axes.
    """
    batch = tf.shape(maps)[0]
    channels = maps.shape[1] if maps.shape[1] is not None else tf.shape(maps)[1]
    flat = tf.reshape(maps, [-1, maps.shape[2], maps.shape[3]])
    filtered = tf.matmul(rows, tf.matmul(flat, columns), transpose_a=True)
    return tf.reshape(filtered, [batch, channels, rows.shape[1], columns.shape[1]])


def ssim(images, target, max_val=1.0):
    """Per-image SSIM `(batch,)` of `images` against `target` (NHWC with static height and
    width of at least 11, values in [0, max_val]; computed in float32): the mean over the
    valid window positions and the channels, as `tf.image.ssim` of float images.

    The 11x11 Gaussian is separable, so the filtering is two matrix products per map (rows,
    then columns) on the channels-first images, four maps as `tf.image.ssim` filters: on an
    AVX2 CPU about ten times faster than its 11x11 depthwise convolutions, forward and
    backward, for 32x32 and 64x64 images, equal to float32 rounding
    (docs/RESULTS.md, "Speed: the SSIM term").
    """
    if images.shape.rank != 4 or None in images.shape[1:3] or min(images.shape[1:3]) < GAUSSIAN_WINDOW:
        raise InputError(
            f"ssim needs batches of images (batch, height, width, channels) with a known height and width of at "
            f"least {GAUSSIAN_WINDOW} (its window); got shape {tuple(images.shape)}."
        )
    height, width = images.shape[1], images.shape[2]
    rows, columns = _window_matrix(height), _window_matrix(width)

    def blur(x):  # (batch, channels, height, width) -> the valid Gaussian filtering of each map.
        return filter_maps(x, rows, columns)

    x, y = (tf.transpose(tf.cast(tensor, tf.float32), [0, 3, 1, 2]) for tensor in (images, target))
    c1, c2 = (K1 * max_val) ** 2, (K2 * max_val) ** 2
    mean_x, mean_y = blur(x), blur(y)
    squared_means = mean_x * mean_x + mean_y * mean_y
    luminance = (2 * mean_x * mean_y + c1) / (squared_means + c1)
    covariance = blur(x * y) - mean_x * mean_y
    variances = blur(x * x + y * y) - squared_means  # The two variances' sum is all the term needs.
    structure = (2 * covariance + c2) / (variances + c2)
    return tf.reduce_mean(luminance * structure, axis=[1, 2, 3])


@keras.saving.register_keras_serializable(package="kd_gan")
class PixelSSIM(DistillationLoss):
    """One minus the structural similarity of student and teacher images,
    averaged over `scales` (the full size, then each 2x average-pooled copy).

    SSIM (Wang et al., 2004: 11x11 Gaussian windows of sigma 1.5, as
    `tf.image.ssim`; computed by `ssim` below) compares local means, contrasts and structure: unlike a
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

    WINDOW = GAUSSIAN_WINDOW
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

    def check_shapes(self, teacher_shapes, student_shapes):
        self.scales_for(teacher_shapes[0])  # Refused before training, not at the first step.

    def compute_loss(self, teacher_outputs, student_outputs):
        target = (tf.cast(teacher_outputs[0], tf.float32) + 1.0) / 2.0  # [-1, 1] -> [0, 1].
        images = (tf.cast(student_outputs[0], tf.float32) + 1.0) / 2.0
        scales = self.scales_for(target.shape)
        terms = []
        for scale in range(scales):
            if scale:
                target, images = (tf.nn.avg_pool2d(x, 2, 2, "VALID") for x in (target, images))
            terms.append(1.0 - ssim(images, target))
        return tf.add_n(terms) / float(scales)

    def get_config(self):
        config = super().get_config()
        config.update(scales=self.scales)
        return config
