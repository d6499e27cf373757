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
BINOMIAL_TAPS = np.array([1.0, 4.0, 6.0, 4.0, 1.0], np.float32) / 16.0
PAD = len(BINOMIAL_TAPS) // 2


def low_pass(images):
    """The binomial low-pass of each map of NHWC `images` (edges reflected: no dark border);
    the height and width must be at least 3."""
    channels = images.shape[-1]
    padded = tf.pad(images, [[0, 0], [PAD, PAD], [PAD, PAD], [0, 0]], mode="REFLECT")
    rows = tf.reshape(tf.constant(BINOMIAL_TAPS), [-1, 1, 1, 1]) * tf.ones([1, 1, channels, 1])
    blurred = tf.nn.depthwise_conv2d(padded, rows, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(blurred, tf.transpose(rows, [1, 0, 2, 3]), [1, 1, 1, 1], "VALID")


def laplacian_pyramid(images, levels):
    """`levels` band-pass images and the low-pass residual (`levels + 1` tensors, finest
    first): each band is an image less its low-pass, the next level that low-pass halved by
    2x2 averaging. The bands and residual are float32 whatever `images` come in."""
    current, pyramid = tf.cast(images, tf.float32), []
    for _ in range(levels):
        smooth = low_pass(current)
        pyramid.append(current - smooth)
        current = tf.nn.avg_pool2d(smooth, 2, 2, "VALID")
    return pyramid + [current]


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
        pairs = zip(laplacian_pyramid(teacher_outputs[0], levels), laplacian_pyramid(student_outputs[0], levels))
        terms = [tf.reduce_mean(tf.abs(student - teacher), axis=[1, 2, 3]) for teacher, student in pairs]
        return tf.add_n(terms) / float(len(terms))

    def get_config(self):
        config = super().get_config()
        config.update(levels=self.levels)
        return config
