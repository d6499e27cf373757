"""Transposed convolutions as sub-pixel convolutions: the form a `.tflite` generator ships in.

A stride-s transposed convolution with a k x k kernel computes each of the
s*s output phases (output pixel (s*m + p_y, s*m' + p_x)) as an ordinary
convolution of the input with the kernel taps of that phase (Shi et al., 2016,
"Real-Time Single Image and Video Super-Resolution Using an Efficient
Sub-Pixel Convolutional Neural Network", Sec. 2.2). So

    conv2d_transpose(x, W, stride=s, padding="same")
        == depth_to_space(conv2d(x, W', padding), s)

with W' holding, for every phase, the taps of W that reach it (zeros where a
phase has fewer taps): the same products summed in another order, equal to
float rounding. A batch norm after the layer (or after its crop) folds into
W' and a bias, as it would into the transposed convolution, and a plain ReLU
after them runs before depth_to_space and the crop (elementwise, it commutes
with both), where the converter fuses it into the convolution: before,
an int8 RELU op of its own after a crop added 0.7-1.3 us to a 8-10 us MNIST
call through XNNPACK on an Intel Xeon with AMX (each file cut after each op
and timed, as `benchmarks/probe_int8_layers.py` does).

Why ship this form: XNNPACK, LiteRT's default CPU engine, runs int8
TRANSPOSE_CONV slowly on some CPUs (measured on an Intel Xeon with AMX: a
d=4 MNIST int8 generator 0.25 ms a call through XNNPACK, 0.037 ms without it,
float32 0.033 ms; the 14x14x4 -> 28x28x1 layer alone cost 0.18 ms), while
int8 CONV_2D and DEPTH_TO_SPACE run at full speed on every engine
(`benchmarks/bench_inference.py`, docs/DEPLOYMENT.md). The file computes
what the Keras model computes; `export.verify_tflite` checks it on every
export.
"""

import keras
import numpy as np
import tensorflow as tf

from kd_gan.errors import InputError


def phase_kernel(kernel, strides):
    """The sub-pixel kernel of a "same"-padded transposed convolution, and its padding.

    Args:
        kernel: `[k_y, k_x, out, in]` (Keras' `Conv2DTranspose` layout), a
            NumPy array or a tensor (then the result is a tensor, and
            gradients reach `kernel`).
        strides: `(s_y, s_x)`.

    Returns:
        `(W', paddings)`: `W'` of shape `[K_y, K_x, in, s_y * s_x * out]`,
        output channel `(p_y * s_x + p_x) * out + c` holding phase `(p_y, p_x)`
        of channel `c` (`tf.nn.depth_to_space`'s order); `paddings`:
        `((before_y, after_y), (before_x, after_x))` of the input for a VALID
        convolution with `W'`.
    """
    indices, paddings = phase_indices(tuple(kernel.shape), tuple(strides))
    if isinstance(kernel, np.ndarray):
        return np.concatenate([[0.0], kernel.ravel()])[indices].astype(kernel.dtype), paddings
    flat = tf.concat([tf.zeros([1], kernel.dtype), tf.reshape(kernel, [-1])], axis=0)
    return tf.gather(flat, indices), paddings


def phase_indices(kernel_shape, strides):
    """Where each entry of the sub-pixel kernel comes from: 1 + the flat index
    into the transposed kernel, 0 for a zero tap; and the padding (`phase_kernel`)."""
    size_y, size_x, outputs, inputs = kernel_shape
    (taps_y, low_y, high_y), (taps_x, low_x, high_x) = (
        _phase_taps(size, stride) for size, stride in zip((size_y, size_x), strides)
    )
    stride_y, stride_x = strides
    source = 1 + np.arange(size_y * size_x * outputs * inputs).reshape(kernel_shape)
    indices = np.zeros((high_y - low_y + 1, high_x - low_x + 1, inputs, stride_y * stride_x * outputs), np.int64)
    for phase_y in range(stride_y):
        for phase_x in range(stride_x):
            first = (phase_y * stride_x + phase_x) * outputs
            for j_y, t_y in taps_y[phase_y]:
                for j_x, t_x in taps_x[phase_x]:
                    indices[j_y, j_x, :, first : first + outputs] = source[t_y, t_x].T
    return indices, ((-low_y, high_y), (-low_x, high_x))


def _phase_taps(size, stride):
    """Per phase p, the `(j, t)` pairs: input offset index j of the sub-pixel
    kernel fed by tap t of the transposed kernel; and the offsets' range.

    TensorFlow's "same" transposed convolution is the gradient of a "same"
    convolution, which pads `max(size - stride, 0) // 2` before: output
    `o = stride * m + p` takes input `i` through tap `t = o + before - stride * i`.
    """
    before = max(size - stride, 0) // 2
    offsets = {p: [((p + before - t) // stride, t) for t in range(size) if (p + before - t) % stride == 0] for p in range(stride)}
    low = min(u for pairs in offsets.values() for u, _ in pairs)
    high = max(u for pairs in offsets.values() for u, _ in pairs)
    return {p: [(u - low, t) for u, t in pairs] for p, pairs in offsets.items()}, low, high


def _batch_norm_affine(layer):
    """`(scale, shift)` of a batch-norm layer at inference."""
    gamma = np.asarray(layer.gamma.numpy() if layer.scale else 1.0, np.float64)
    beta = np.asarray(layer.beta.numpy() if layer.center else 0.0, np.float64)
    mean, variance = np.asarray(layer.moving_mean.numpy(), np.float64), np.asarray(layer.moving_variance.numpy(), np.float64)
    scale = gamma / np.sqrt(variance + layer.epsilon)
    return scale, beta - mean * scale


def _is_rewritable(layer):
    return (
        isinstance(layer, keras.layers.Conv2DTranspose)
        and layer.padding == "same"
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.strides[0] == layer.strides[1]  # depth_to_space takes one block size.
        and layer.data_format == "channels_last"
        and layer.output_padding is None
        and layer.activation in (None, keras.activations.linear)
    )


def is_plain_relu(layer):
    """A `keras.layers.ReLU` that computes max(x, 0) (no slope, threshold or cap)."""
    return (
        isinstance(layer, keras.layers.ReLU)
        and layer.max_value is None
        and float(layer.negative_slope) == 0.0
        and float(layer.threshold) == 0.0
    )


def sub_pixel_convolution(x, phases, biases, paddings, block_size, relu=False):
    """`depth_to_space(conv2d(x, phases) + biases)`: a transposed convolution in sub-pixel form
    (`relu`: followed by a ReLU, applied before depth_to_space, where the converter fuses it)."""
    if all(before == after and 2 * before + 1 == size for (before, after), size in zip(paddings, phases.shape[:2])):
        y = tf.nn.conv2d(x, phases, strides=1, padding="SAME")
    else:
        y = tf.nn.conv2d(tf.pad(x, [[0, 0], *paddings, [0, 0]]), phases, strides=1, padding="VALID")
    y = tf.nn.bias_add(y, biases)
    y = tf.nn.relu(y) if relu else y
    return tf.nn.depth_to_space(y, block_size) if block_size > 1 else y  # Stride 1: one phase.


def crop_to(x, cropping):
    """`x` cropped as `keras.layers.Cropping2D(cropping)` crops it."""
    (top, bottom), (left, right) = cropping
    return x[:, top : x.shape[1] - bottom, left : x.shape[2] - right, :] if top or bottom or left or right else x


class SubPixelGenerator:
    """A kd_gan `Generator`'s inference graph with every transposed convolution
    as a sub-pixel convolution (and the batch norm after it folded in).

    A callable `z -> images` in float32 with the generator's `latent_dim`,
    what `export_tflite` converts. The rewritten layers' weights are
    constants of the graph; layers it does not rewrite run as they are, and
    `weights` lists their variables (for the SavedModel the converter reads).

    Raises:
        InputError: `generator` has no `network` layer list (not a kd_gan
            `Generator`); use `rewritable(generator)` first.
    """

    def __init__(self, generator):
        if not rewritable(generator):
            raise InputError(f"{type(generator).__name__} is not a kd_gan Generator with transposed convolutions to rewrite.")
        self.latent_dim = generator.latent_dim
        self.name = generator.name
        self.weights = []
        self._steps = []
        layers = list(generator.network)
        index = 0
        while index < len(layers):
            layer = layers[index]
            if not _is_rewritable(layer):
                self._steps.append(lambda x, layer=layer: layer(x, training=False))
                self.weights.extend(layer.weights)
                index += 1
                continue
            crop = None
            following = layers[index + 1 :]
            if following and isinstance(following[0], keras.layers.Cropping2D):
                crop, following = following[0], following[1:]
            norm = following[0] if following and isinstance(following[0], keras.layers.BatchNormalization) else None
            following = following[1:] if norm is not None else following
            relu = following[0] if following and is_plain_relu(following[0]) else None
            self._steps.append(self._sub_pixel(layer, crop, norm, relu is not None))
            index += 1 + (crop is not None) + (norm is not None) + (relu is not None)

    @staticmethod
    def _sub_pixel(layer, crop, norm, relu):
        kernel = layer.kernel.numpy()
        outputs = kernel.shape[2]
        bias = np.asarray(layer.bias.numpy(), np.float64) if layer.use_bias else np.zeros(outputs)
        scale, shift = _batch_norm_affine(norm) if norm is not None else (np.ones(outputs), np.zeros(outputs))
        kernel = kernel * scale[None, None, :, None]  # Per output channel: [k, k, out, in].
        bias = bias * scale + shift
        strides = tuple(layer.strides)
        phases, paddings = phase_kernel(kernel, strides)
        weights = tf.constant(phases, tf.float32)
        biases = tf.constant(np.tile(bias, strides[0] * strides[1]), tf.float32)
        cropping = crop.cropping if crop is not None else ((0, 0), (0, 0))

        def step(x):
            return crop_to(sub_pixel_convolution(x, weights, biases, paddings, strides[0], relu), cropping)

        return step

    def __call__(self, z, training=False):
        if training:
            raise InputError("SubPixelGenerator is an inference graph (training=False).")
        x = tf.cast(z, tf.float32)
        for step in self._steps:
            x = step(x)
        return tf.cast(x, tf.float32)


def rewritable(generator):
    """Whether `generator` is a kd_gan `Generator` (a `network` layer list) with a transposed convolution to rewrite."""
    network = getattr(generator, "network", None)
    return isinstance(network, list) and any(_is_rewritable(layer) for layer in network) and hasattr(generator, "latent_dim")

