"""The Laplacian pyramid's L1 as a distillation loss: the pixel error scale by scale.

A Laplacian pyramid (Burt & Adelson, 1983) splits an image into its details at
each scale (band-pass images) and what is left at the coarsest (the low-pass
residual). The loss takes the absolute error of each level and weighs the
levels' means alike: after Bojanowski et al.'s Lap1 ("Optimizing the Latent
Space of Generative Networks", 2018), the reconstruction loss of a generator
fitted to fixed latent-image pairs, which is what a student on cached teacher
outputs is. Against the plain L1, the absolute value is taken of each scale's
detail rather than of the pixel, so an error is priced in the band it sits in.
"""

import keras
import numpy as np
import tensorflow as tf

from kd_gan.distillation.losses import DistillationLoss
from kd_gan.errors import InputError

# Burt & Adelson's 5-tap binomial low-pass (a Gaussian of sigma ~1), applied along rows, then columns.
BINOMIAL_TAPS = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
PAD = len(BINOMIAL_TAPS) // 2


def _filter_matrix(size):
    """(size, size): column j holds the taps centred on row j, the border mirrored without
    repeating the edge pixel, so `x @ matrix` low-passes x's last axis as a reflected pad and a
    valid 5-tap filtering would; needs size >= 3."""
    matrix = np.zeros((size, size))
    for column in range(size):
        for offset, tap in enumerate(BINOMIAL_TAPS, start=-PAD):
            row = abs(column + offset)  # Mirrored at the first pixel ...
            row = 2 * (size - 1) - row if row > size - 1 else row  # ... and at the last.
            matrix[row, column] += tap
    return matrix


def _channels_first_pyramid(maps, levels):
    """`laplacian_pyramid` of channels-first float32 `maps` (batch, channels, height, width)."""
    current, pyramid = maps, []
    for _ in range(levels):
        height, width = current.shape[2], current.shape[3]
        rows, columns = (tf.constant(_filter_matrix(size), tf.float32) for size in (height, width))
        smooth = tf.matmul(rows, tf.matmul(current, columns), transpose_a=True)
        pyramid.append(current - smooth)
        half_height, half_width = height // 2, width // 2
        smooth = smooth[:, :, : 2 * half_height, : 2 * half_width]
        current = tf.reduce_mean(tf.reshape(smooth, [-1, smooth.shape[1], half_height, 2, half_width, 2]), axis=[3, 5])
    return pyramid + [current]


def laplacian_pyramid(images, levels):
    """`levels` band-pass images and the low-pass residual (`levels + 1` NHWC tensors, finest
    first): each band is an image less its low-pass, the next level that low-pass halved by
    2x2 averaging (an odd last row or column dropped). Float32 whatever `images` come in.

    Each low-pass is two matrix products per map (rows, then columns) on channels-first
    images: on a CPU several times faster than depthwise convolutions for these 5-tap filters,
    forward and backward (docs/RESULTS.md, "Speed: the Lap1 term").
    """
    maps = tf.transpose(tf.cast(images, tf.float32), [0, 3, 1, 2])
    return [tf.transpose(level, [0, 2, 3, 1]) for level in _channels_first_pyramid(maps, levels)]


@keras.saving.register_keras_serializable(package="kd_gan")
class PixelLaplacianL1(DistillationLoss):
    """The mean absolute difference of the student's and teacher's Laplacian pyramids,
    averaged over the `levels` bands and the low-pass residual (each level's mean, the levels
    weighed alike; after Bojanowski et al.'s Lap1).

    Per example, with `L_j` the j-th level of `laplacian_pyramid`:
    `mean_j mean_pixels |L_j(S(z)) - L_j(T(z))|`. One level (`levels=0`) is the plain L1.

    Args:
        levels: how many band-pass levels precede the residual; each halves the image, and
            the smallest band must be at least 3 pixels a side (the low-pass's reflected
            border). None: as many as the images allow, up to 3 (3 at 64x64, 32x32 and 28x28).

    Example:

    ```python
    distiller = Distiller(teacher, student, distillation_losses=[PixelLaplacianL1()])
    ```
    """

    MOST_LEVELS = 3  # What levels=None reaches at most.
    SMALLEST = PAD + 1  # A reflected pad of 2 needs 3 pixels.

    def __init__(self, levels=None, name="lap1", **kwargs):
        super().__init__(name=name, **kwargs)
        if levels is not None and (isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 0):
            raise InputError(f"levels must be an integer >= 0 or None. Received: levels={levels!r}")
        self.levels = None if levels is None else int(levels)

    def levels_for(self, shape):
        """How many band-pass levels images of `shape` (batch first) get, or InputError."""
        smallest_side = min(shape[1:3])
        fitting = [n for n in range(max(self.levels or 0, self.MOST_LEVELS) + 1)
                   if n == 0 or smallest_side // 2 ** (n - 1) >= self.SMALLEST]
        if self.levels is None:
            return fitting[-1]
        if self.levels in fitting:
            return self.levels
        raise InputError(
            f"PixelLaplacianL1(levels={self.levels}) needs images of at least {self.SMALLEST * 2 ** (self.levels - 1)} "
            f"pixels a side (each band halves the image; the smallest needs {self.SMALLEST}); these are "
            f"{shape[1]}x{shape[2]}: they allow levels <= {fitting[-1]}."
        )

    def build_for(self, teacher_shapes, student_shapes, distiller):
        self.levels_for(teacher_shapes[0])  # Refused before training, not at the first step.
        super().build_for(teacher_shapes, student_shapes, distiller)

    def compute_loss(self, teacher_outputs, student_outputs):
        levels = self.levels_for(teacher_outputs[0].shape)
        # The pyramid is linear: the levels of the difference are the differences of the levels (one pyramid, not two).
        difference = tf.cast(student_outputs[0], tf.float32) - tf.cast(teacher_outputs[0], tf.float32)
        maps = tf.transpose(difference, [0, 3, 1, 2])  # A level's mean needs no layout back.
        terms = [tf.reduce_mean(tf.abs(level), axis=[1, 2, 3]) for level in _channels_first_pyramid(maps, levels)]
        return tf.add_n(terms) / float(len(terms))

    def get_config(self):
        config = super().get_config()
        config.update(levels=self.levels)
        return config
