"""A Laplacian pyramid's L1 as a distillation loss: the pixel error scale by scale.

The pyramid here is the common loss-function variant of Burt & Adelson's (1983): each
band is a level less its own low-pass (a 5-tap binomial filter, at the level's size), and
the next level is that low-pass halved by 2x2 averaging; the last low-pass is the residual.
(Burt & Adelson subtract the next level enlarged again, so their bands and residual rebuild
the image; these need not.) The loss takes the absolute error of each level and weighs the
levels' means alike. It follows the Lap1 loss of Bojanowski et al. ("Optimizing the Latent
Space of Generative Networks", 2018), the reconstruction loss of a generator fitted to fixed
latent-image pairs, which is what a student on cached teacher outputs is; it is not their
exact pyramid or level weights. Against the plain L1, the absolute value is taken of each
scale's detail rather than of the pixel.
"""

import keras
import numpy as np
import tensorflow as tf

from kd_gan.distillation.losses import DistillationLoss
from kd_gan.distillation.structural import filter_maps
from kd_gan.errors import InputError, check_integer

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
    for level in range(levels):
        height, width = current.shape[2], current.shape[3]
        if height is None or width is None or min(height, width) < PAD + 1:
            raise InputError(
                f"Level {level + 1} of the pyramid is {height}x{width}: each band needs a known height and width of at "
                f"least {PAD + 1} pixels (the low-pass's mirrored border); the images "
                f"{maps.shape[2]}x{maps.shape[3]} allow fewer than {levels} levels."
            )
        rows, columns = (tf.constant(_filter_matrix(size), tf.float32) for size in (height, width))
        smooth = filter_maps(current, rows, columns)
        pyramid.append(current - smooth)
        half_height, half_width = height // 2, width // 2
        smooth = smooth[:, :, : 2 * half_height, : 2 * half_width]
        current = tf.reduce_mean(tf.reshape(smooth, [-1, smooth.shape[1], half_height, 2, half_width, 2]), axis=[3, 5])
    return pyramid + [current]


def laplacian_pyramid(images, levels):
    """The bands and the low-pass residual of `images` (module docstring), finest first.

    Each low-pass is two matrix products per map (rows, then columns) on channels-first
    images, the mirrored border folded into the matrices.

    Args:
        images: NHWC images of a known height and width; any float dtype (the levels are
            float32).
        levels: how many bands precede the residual; each band must be at least 3 pixels a
            side (an odd last row or column is dropped by the halving).

    Returns:
        `levels + 1` NHWC float32 tensors: the bands, then the residual.

    Example:

    ```python
    bands_and_residual = laplacian_pyramid(images, 3)  # 64x64 images: 64, 32 and 16 pixels, then 8.
    ```
    """
    maps = tf.transpose(tf.cast(images, tf.float32), [0, 3, 1, 2])
    return [tf.transpose(level, [0, 2, 3, 1]) for level in _channels_first_pyramid(maps, levels)]


@keras.saving.register_keras_serializable(package="kd_gan")
class PixelLaplacianL1(DistillationLoss):
    """The mean absolute difference of the student's and teacher's Laplacian pyramids,
    averaged over the `levels` bands and the low-pass residual (each level's mean, the levels
    weighed alike; after Bojanowski et al.'s Lap1, see the module docstring).

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
        self.levels = None if levels is None else check_integer("levels", levels, 0, label="levels (or None)")

    def levels_for(self, shape):
        """How many band-pass levels images of `shape` (batch first) get, or InputError."""
        if None in tuple(shape[1:3]):
            raise InputError(f"PixelLaplacianL1 needs images of a known height and width; got shape {tuple(shape)}.")
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

    def check_shapes(self, teacher_shapes, student_shapes):
        self.levels_for(teacher_shapes[0])  # Refused before training, not at the first step.

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
