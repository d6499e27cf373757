"""Depth-scaled DCGAN generator and discriminator.

The paper (Aguinaldo et al., 2019, Sec. 3) sizes every model by a *depth scale
factor* d: the number of filters of each layer is a fixed multiple of d, so the
parameter count grows roughly with d**2. We follow the DCGAN convention for the
multiples: the widest layer comes first in the generator and the widths halve
towards the image (8d -> 4d -> 2d -> d for 64x64 images); the discriminator
mirrors it (d -> 2d -> 4d -> 8d).

The exact per-dataset layer lists of the paper are not published, so the layout
is derived from the image size alone (documented in `generator_layout`):

| image      | generator feature maps                      | discriminator        |
|------------|---------------------------------------------|----------------------|
| 28x28x1    | 4x4x4d -> 7x7x2d -> 14x14xd -> 28x28x1      | 14x14xd -> 7x7x2d -> 4x4x4d |
| 32x32x3    | 4x4x4d -> 8x8x2d -> 16x16xd -> 32x32x3      | 16x16xd -> 8x8x2d -> 4x4x4d |
| 64x64x3    | 4x4x8d -> 8x8x4d -> 16x16x2d -> 32x32xd -> 64x64x3 | 32x32xd -> ... -> 4x4x8d |

For 28x28 the 8x8 map is cropped to 7x7, as in the WGAN-GP MNIST generator
(Gulrajani et al., 2017), which this layout reproduces.
"""

import math

import keras
import tensorflow as tf
from keras import layers

from kd_gan.models import precision
from kd_gan.errors import InputError, check_integer

KERNEL_SIZE = 5  # DCGAN / WGAN-GP convention for 5x5 (transposed) convolutions.
BASE_SIZE = 4  # Spatial size of the first generator feature map.
TRANSPOSED, SEPARABLE = "transposed", "separable"
BLOCKS = (TRANSPOSED, SEPARABLE)  # How a generator's hidden stages double the map.


def _validate_image_shape(image_shape):
    image_shape = tuple(int(v) for v in image_shape)
    if (
        len(image_shape) != 3
        or image_shape[0] != image_shape[1]
        or image_shape[0] < 2 * BASE_SIZE
        or image_shape[2] < 1
    ):
        raise InputError(
            f"image_shape must be (size, size, channels) with size >= "
            f"{2 * BASE_SIZE} and channels >= 1, e.g. (28, 28, 1), "
            f"(32, 32, 3) or (64, 64, 3). Received: image_shape={image_shape}"
        )
    return image_shape


def _validate_depth(depth):
    check_integer("depth", depth, 1, "depth (the depth scale factor d)")
    return depth


def generator_layout(image_size):
    """Spatial sizes of the generator's feature maps, smallest first.

    Sizes are found by halving the image size (rounding up) until it reaches
    `BASE_SIZE`: 28 -> [4, 7, 14, 28], 32 -> [4, 8, 16, 32],
    64 -> [4, 8, 16, 32, 64]. Each step is one stride-2 transposed
    convolution; where doubling overshoots (4 -> 8 for a 7x7 target) the map
    is cropped.

    Args:
        image_size: height (= width) of the generated image.

    Returns:
        List of ints, the feature-map sizes from the first map to the image.
    """
    sizes = [int(image_size)]
    while sizes[-1] > BASE_SIZE:
        sizes.append(math.ceil(sizes[-1] / 2))
    return sizes[::-1]


def _widths(depth, num_stages):
    """Channel widths d * 2**(n-1), ..., 2d, d for `num_stages` = n maps."""
    return [depth * 2 ** (num_stages - 1 - i) for i in range(num_stages)]


def dcgan_widths(depth, image_size):
    """The width profile of the paper's generator of depth d: the channels of
    each feature map from the 4x4 projection to the last map before the image
    (28x28: (4d, 2d, d); 64x64: (8d, 4d, 2d, d))."""
    return tuple(_widths(_validate_depth(depth), len(generator_layout(image_size)) - 1))


def check_block(block):
    """`block` if it is one of `BLOCKS`; else an `InputError` naming it."""
    if block not in BLOCKS:
        raise InputError(f"block must be one of {BLOCKS}. Received: block={block!r}")
    return block


def check_widths(widths, image_size):
    maps = len(generator_layout(image_size)) - 1
    allowed = f"{maps} integers >= 1, the channels of the {maps} feature maps from the 4x4 projection on"
    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__len__") or len(widths) != maps:
        raise InputError(f"widths for {image_size}x{image_size} images must be {allowed}. Received: widths={widths!r}")
    for width in widths:
        check_integer("widths", width, 1, f"each of widths ({allowed})")
    return tuple(int(width) for width in widths)


@keras.saving.register_keras_serializable(package="kd_gan")
class LeakyReLU(layers.LeakyReLU):
    """`keras.layers.LeakyReLU` whose gradient reads its output, not its input.

    TensorFlow's LeakyRelu gradient reads the activation's input. Grappler's
    remapper fuses Conv2D + BiasAdd + LeakyRelu into one node, which removes
    that input: the pass failed on every discriminator step ("remapper failed:
    INVALID_ARGUMENT ... LeakyReluGrad ... missing node ... BiasAdd") and left
    the step's graph unfused. With a positive slope the output has the input's
    sign, so the gradient can read the output, as ReLU's does: the same
    values, and a graph the remapper can fuse.
    """

    def call(self, inputs):
        slope = float(self.negative_slope)

        @tf.custom_gradient
        def leaky_relu(x):
            y = tf.nn.leaky_relu(x, alpha=slope)

            def gradient(upstream):
                return upstream * tf.where(y > 0, tf.ones_like(y), tf.fill(tf.shape(y), tf.cast(slope, y.dtype)))

            return y, gradient

        return leaky_relu(inputs)


class _LayerStack(keras.Model):
    """A model that applies its `network` list of layers in order."""

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.network:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.built = True

    def call(self, inputs, training=False):
        return self.call_with_features(inputs, (), training=training)[0]

    def call_with_features(self, inputs, layer_names, training=False):
        """The output and the outputs of the layers `layer_names` (in that
        order) from one pass: what feature distillation compares."""
        found = {}
        x = inputs
        for layer in self.network:
            x = layer(x, training=training)
            found[layer.name] = x
        return x, [found[name] for name in layer_names]

    def feature_layer_names(self):
        """Names of the layers whose outputs end each block: the default
        feature maps of feature and perceptual distillation."""
        return [layer.name for layer in self.network if layer.name in self._block_ends]


@keras.saving.register_keras_serializable(package="kd_gan")
class Generator(_LayerStack):
    """DCGAN generator whose channel widths are multiples of `depth`, or any
    width profile.

    Maps latent vectors z of shape `(batch, latent_dim)` to images of shape
    `(batch, *image_shape)` with values in [-1, 1] (tanh output).

    Args:
        latent_dim: size of the latent vector z.
        image_shape: `(size, size, channels)` of the generated images.
        depth: depth scale factor d (>= 1); widths are multiples of it
            (`dcgan_widths`). Default 64 when `widths` is not given.
        widths: instead of `depth`, the channels of each feature map from the
            4x4 projection to the last map before the image, e.g.
            `(4, 12, 12, 12)` for 64x64 images: a budget spent on the path to
            the image rather than on the projection. `depth` is then None.
        block: how each hidden stage doubles its map: "transposed" (the
            paper's stride-2 5x5 transposed convolution) or "separable"
            (nearest 2x upsampling, then a depthwise-separable 5x5
            convolution: 25 + w_out parameters per input channel instead of
            25 w_out, so about four times the channels at a small budget). The
            stage that draws the image stays a transposed convolution.
        **kwargs: passed to `keras.Model`, e.g. `name`, or `dtype`: a Keras
            policy such as "mixed_bfloat16" (`kd_gan.models.policy`), which
            every layer computes under (the tanh output stays float32).

    Example:

    ```python
    generator = Generator(latent_dim=128, image_shape=(28, 28, 1), depth=4)
    images = generator(keras.random.normal((16, 128)), training=False)
    small = Generator(latent_dim=128, image_shape=(64, 64, 3), widths=(4, 12, 12, 12))
    separable = Generator(latent_dim=128, image_shape=(64, 64, 3), widths=(4, 40, 40, 40), block="separable")
    ```
    """

    def __init__(self, latent_dim=128, image_shape=(28, 28, 1), depth=None, widths=None, block=TRANSPOSED, **kwargs):
        super().__init__(**kwargs)
        self.block = check_block(block)
        latent_dim = check_integer("latent_dim", latent_dim, 1)
        self.latent_dim = latent_dim
        self.image_shape = _validate_image_shape(image_shape)
        if widths is not None and depth is not None:
            raise InputError(f"Give depth or widths, not both. Received: depth={depth!r}, widths={widths!r}")
        self.depth = None if widths is not None else _validate_depth(64 if depth is None else depth)
        self.widths = (
            dcgan_widths(self.depth, self.image_shape[0]) if widths is None else check_widths(widths, self.image_shape[0])
        )

        sizes = generator_layout(self.image_shape[0])
        widths = self.widths
        # Every layer computes under the model's dtype policy (a serialized
        # `dtype` argument, e.g. "mixed_bfloat16"); the tanh output stays float32
        # under a mixed policy, so losses and metrics see float32 images.
        dtype = self.dtype_policy
        self.network = [
            layers.Dense(sizes[0] * sizes[0] * widths[0], use_bias=False, name="project", dtype=dtype),
            layers.BatchNormalization(synchronized=True, name="project_norm", dtype=dtype),
            layers.ReLU(name="project_relu", dtype=dtype),
            layers.Reshape((sizes[0], sizes[0], widths[0]), name="to_feature_map", dtype=dtype),
        ]
        # One 2x upsampling conv per size step; the last one (transposed) emits the image.
        for stage, (size, previous) in enumerate(zip(sizes[1:], sizes[:-1]), start=1):
            is_output = stage == len(sizes) - 1
            if block == SEPARABLE and not is_output:
                self.network += [
                    layers.UpSampling2D(2, name=f"resize_{stage}", dtype=dtype),
                    layers.SeparableConv2D(widths[stage], KERNEL_SIZE, padding="same", use_bias=False,
                                           name=f"upsample_{stage}", dtype=dtype),
                ]
            else:
                self.network.append(self._transposed(stage, is_output, dtype))
            if 2 * previous > size:
                self.network.append(
                    layers.Cropping2D(((0, 2 * previous - size), (0, 2 * previous - size)),
                                      name=f"crop_{stage}", dtype=dtype)
                )
            if is_output:
                self.network.append(layers.Activation("tanh", name="tanh", dtype=precision.output_dtype(dtype)))
            else:
                self.network.append(layers.BatchNormalization(synchronized=True, name=f"norm_{stage}", dtype=dtype))
                self.network.append(layers.ReLU(name=f"relu_{stage}", dtype=dtype))
        # Feature maps a distillation loss compares: each hidden stage's output.
        self._block_ends = ["to_feature_map"] + [f"relu_{stage}" for stage in range(1, len(sizes) - 1)]
        # Batch norm is synchronized across replicas under tf.distribute, so a
        # mirrored run normalises over the global batch like a single device
        # (without a strategy it is plain batch norm, at no extra cost).
        # Every shape is known from the config: build now so that parameter
        # counts, weight copies and saving work before the first call.
        self.build((None, self.latent_dim))

    def _transposed(self, stage, is_output, dtype):
        """The stride-2 5x5 transposed conv of `stage`: the image's, or a hidden map's (no bias: a norm follows)."""
        return layers.Conv2DTranspose(
            self.image_shape[2] if is_output else self.widths[stage],
            KERNEL_SIZE,
            strides=2,
            padding="same",
            use_bias=is_output,
            name="to_image" if is_output else f"upsample_{stage}",
            dtype=dtype,
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.image_shape

    def get_config(self):
        config = super().get_config()
        config.update(latent_dim=self.latent_dim, image_shape=list(self.image_shape), depth=self.depth)
        if self.block != TRANSPOSED:  # The paper's generators keep the config (and teacher fingerprint) they always had.
            config["block"] = self.block
        if self.depth is None:
            config["widths"] = list(self.widths)
        return config


@keras.saving.register_keras_serializable(package="kd_gan")
class Discriminator(_LayerStack):
    """DCGAN discriminator whose channel widths are multiples of `depth`.

    Strided 5x5 convolutions with LeakyReLU(0.2), widths d, 2d, 4d, ...
    (one layer per generator stage), then a dense layer giving one logit per
    image. It has no batch normalisation, so it also serves as a WGAN-GP
    critic (the gradient penalty is per-example).

    Args:
        image_shape: `(size, size, channels)` of the input images.
        depth: depth scale factor d (>= 1).
        latent_dim: None, or the size of latent vectors z the discriminator
            is also given: it is then called on `(images, z)` and adds to its
            logit the projection of z on its last features, `<W z, phi(x)>`
            (the projection discriminator of Miyato & Koyama, 2018). In
            adversarial distillation this lets it judge each image against
            its own z, the teacher's image for that z being the real one.
        **kwargs: passed to `keras.Model`, e.g. `dtype` (a Keras policy, as for
            `Generator`; the logit stays float32).

    Example:

    ```python
    discriminator = Discriminator(image_shape=(28, 28, 1), depth=4)
    logits = discriminator(images, training=True)  # (batch, 1)
    conditioned = Discriminator(image_shape=(28, 28, 1), depth=4, latent_dim=128)
    logits = conditioned((images, z), training=True)
    ```
    """

    def __init__(self, image_shape=(28, 28, 1), depth=64, latent_dim=None, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = _validate_image_shape(image_shape)
        self.depth = _validate_depth(depth)
        self.latent_dim = None if latent_dim is None else check_integer("latent_dim", latent_dim, 1)
        num_stages = len(generator_layout(self.image_shape[0])) - 1
        dtype = self.dtype_policy  # As in Generator; the logit is float32 under a mixed policy.
        self.network = []
        for stage, width in enumerate(reversed(_widths(self.depth, num_stages)), start=1):
            self.network.append(
                layers.Conv2D(width, KERNEL_SIZE, strides=2, padding="same", name=f"downsample_{stage}", dtype=dtype)
            )
            self.network.append(LeakyReLU(0.2, name=f"leaky_relu_{stage}", dtype=dtype))
        self._block_ends = [f"leaky_relu_{stage}" for stage in range(1, num_stages + 1)]
        self.network.append(layers.Flatten(name="flatten", dtype=dtype))
        self.network.append(layers.Dense(1, name="logit", dtype=precision.output_dtype(dtype)))
        self.projection = None
        if self.latent_dim is not None:
            # z to the width of the flattened features; no bias (that is the logit's).
            self.projection = layers.Dense(
                self._feature_size(), use_bias=False, name="latent_projection", dtype=precision.output_dtype(dtype)
            )
            self.projection.build((None, self.latent_dim))
        self.build((None,) + self.image_shape)

    def _feature_size(self):
        """Width of the flattened features the logit reads."""
        shape = (None,) + self.image_shape
        for layer in self.network[:-1]:
            shape = layer.compute_output_shape(shape)
        return shape[-1]

    @property
    def conditioned(self):
        """Takes `(images, z)`: its logit adds the projection of z (`latent_dim` given)."""
        return self.latent_dim is not None

    def call(self, inputs, training=False):
        if not self.conditioned:
            return super().call(inputs, training=training)
        if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
            raise InputError(
                f"This discriminator takes z too (latent_dim={self.latent_dim}): call it on (images, z); "
                f"got {type(inputs).__name__}."
            )
        images, z = inputs
        logits, (features,) = self.call_with_features(images, ["flatten"], training=training)
        features = tf.cast(features, self.projection.compute_dtype)
        return logits + tf.reduce_sum(self.projection(tf.cast(z, features.dtype)) * features, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self):
        config = super().get_config()
        config.update(image_shape=list(self.image_shape), depth=self.depth)
        if self.conditioned:
            config.update(latent_dim=self.latent_dim)
        return config
