"""Quantization-aware fine-tuning: a student that learns under int8 rounding.

Post-training int8 (`kd_gan.export.export_tflite(..., quantization="int8")`) rounds
a trained student's weights and activations; the student never saw that
rounding. `QuantizedView` runs a `Generator`'s own weights the way the int8
`.tflite` file does (Jacob et al., 2018, "Quantization and Training of Neural
Networks for Efficient Integer-Arithmetic-Only Inference", Sec. 3):

- batch norm folded into the weights before them (its moving statistics
  frozen, as in the file; through a crop too), transposed convolutions in
  the sub-pixel form the file holds (`kd_gan.export.subpixel`), weights
  rounded symmetrically to int8 ([-127, 127]): one scale for the
  projection, one per output channel of each sub-pixel convolution (a
  phase of a channel), as `kd_gan.export` converts them, except the last
  convolution's and small ones', which the file keeps in float32;
- every tensor the file stores in int8 (z, each block's ReLU output, an
  output the converter cannot fuse, the image before and after tanh) rounded
  to 256 levels over the range the converter calibrates (min/max over
  `converters.calibration_latents`); tanh's output on the file's fixed grid
  (scale 1/128).

The view reproduces the int8 file to 4e-7 (mean squared difference, against
7e-6 for the float model, d=4; tests).

Gradients pass the rounding straight through (`tf.quantization.fake_quant_*`).
The view shares the student's variables: distilling the view
(`Distiller(teacher, QuantizedView(student))`) fine-tunes the student, which
is then exported with post-training int8 as before, e.g.

```python
view = QuantizedView(student)
distiller = Distiller(teacher, view)
distiller.compile(keras.optimizers.Adam(1e-4))
distiller.fit(latent_dataset(64, student.latent_dim), epochs=2, steps_per_epoch=500,
              callbacks=[QuantizedView.Recalibrate(view)])
kd_gan.export.export_tflite(student, "student_int8.tflite", quantization="int8")
```
"""

import keras
import tensorflow as tf
from keras import layers

from kd_gan.export import converters, subpixel, tflite_graph
from kd_gan.errors import InputError
from kd_gan.models.dcgan import TRANSPOSED, Generator

TANH_RANGE = (-1.0, 127.0 / 128.0)  # LiteRT's int8 tanh output: scale 1/128, zero point 0.
_WEIGHTED = (layers.Dense, layers.Conv2DTranspose)


def _fake_quantize_weights(kernel, per_channel_axis=None):
    """Symmetric int8 rounding of a kernel: one scale, or one per `per_channel_axis` slice."""
    if per_channel_axis is None:
        bound = tf.reduce_max(tf.abs(kernel))
        return tf.quantization.fake_quant_with_min_max_vars(kernel, -bound, bound, num_bits=8, narrow_range=True)
    rank = len(kernel.shape)
    order = [axis for axis in range(rank) if axis != per_channel_axis] + [per_channel_axis]
    moved = tf.transpose(kernel, order)  # The per-channel op quantizes along the last axis.
    bound = tf.reduce_max(tf.abs(tf.reshape(moved, (-1, moved.shape[-1]))), axis=0)
    rounded = tf.quantization.fake_quant_with_min_max_vars_per_channel(
        moved, -bound, bound, num_bits=8, narrow_range=True
    )
    return tf.transpose(rounded, [order.index(axis) for axis in range(rank)])


@keras.saving.register_keras_serializable(package="kd_gan")
class QuantizedView(keras.Model):
    """A `Generator` run under int8 rounding, sharing the generator's variables.

    Train it (distil it) to make the generator robust to int8 export; save
    and export the generator itself. Batch norm runs on its moving
    statistics (frozen) in training too, as the file folds them. Activation
    ranges are calibrated as the converter calibrates the file (min/max over
    `converters.calibration_latents`); `QuantizedView.Recalibrate` refreshes them
    after each epoch, as the weights move.

    Args:
        generator: a `kd_gan.Generator` in float32.
        **kwargs: passed to `keras.Model`.
    """

    def __init__(self, generator, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(generator, Generator):
            raise InputError(
                f"QuantizedView takes a kd_gan.Generator (its layers are what the int8 file holds). "
                f"Received: {type(generator).__name__}"
            )
        if generator.block != TRANSPOSED:
            raise InputError(
                f"QuantizedView simulates transposed-conv generators only; got block={generator.block!r}. "
                "Export a separable generator with post-training int8 quantization (export_tflite) instead."
            )
        if generator.dtype_policy.compute_dtype != "float32":
            raise InputError(
                f"QuantizedView needs a float32 generator; got compute dtype {generator.dtype_policy.compute_dtype!r}: "
                "pass kd_gan.models.float32_copy(generator)."
            )
        self.generator = generator
        self.latent_dim = generator.latent_dim
        self.image_shape = generator.image_shape
        self._steps = _plan(generator.network)
        # The file keeps the last convolution's weights in float32, and those of small ones
        # (`export_tflite(float_small_layers=True)`, `tflite_graph.keeps_float_weights`).
        convolutions = [step for step in self._steps if isinstance(step.layer, layers.Conv2DTranspose)]
        for k, step in enumerate(convolutions):
            phases, _ = subpixel.phase_kernel(step.layer.kernel.numpy(), step.layer.strides)
            step.float_weights = tflite_graph.keeps_float_weights(phases.size, last=k == len(convolutions) - 1)
        # Tensors the int8 file stores: z, ReLU outputs, the outputs of weighted layers and of
        # unfolded norms (scale, and shift unless a ReLU follows, through a crop, and is fused with it).
        uncropped = [step for step in self._steps if not isinstance(step.layer, layers.Cropping2D)]
        names = ["z"] + [
            step.name for step, following in zip(uncropped, uncropped[1:] + [None])
            if isinstance(step.layer, layers.ReLU)
            or (
                (isinstance(step.layer, _WEIGHTED) or step.part is not None)
                and not (following and isinstance(following.layer, layers.ReLU))
            )
        ]
        self._ranges = {
            name: self.add_weight(shape=(2,), initializer="zeros", trainable=False, name=f"{name}_range")
            for name in names
        }
        self.built = True
        self.calibrate(converters.calibration_latents(self.latent_dim))

    def calibrate(self, z):
        """Sets every activation range to its min/max over `z` in float."""
        tensors = self._tensors(tf.convert_to_tensor(z, tf.float32), quantize=False)
        for name, variable in self._ranges.items():
            variable.assign(tf.stack([tf.reduce_min(tensors[name]), tf.reduce_max(tensors[name])]))

    def _activation(self, name, x):
        """x rounded to 256 levels over its range (int8 ranges hold zero)."""
        low, high = tf.minimum(self._ranges[name][0], 0.0), tf.maximum(self._ranges[name][1], 0.0)
        return tf.quantization.fake_quant_with_min_max_vars(x, low, high, num_bits=8)

    def _tensors(self, z, quantize):
        """The image and every tensor the file stores, by name; rounded when `quantize`."""
        found = {"z": z}
        x = self._activation("z", z) if quantize else z
        for step in self._steps:
            x = step(x, quantize)
            found[step.name] = x
            if quantize and step.name in self._ranges:
                x = self._activation(step.name, x)
        found["image"] = x
        return found

    def call(self, z, training=False):
        del training  # Batch norm always runs on its moving statistics, as in the file.
        return self._tensors(z, quantize=True)["image"]

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(self.image_shape)

    def get_config(self):
        config = super().get_config()
        config.update(generator=keras.saving.serialize_keras_object(self.generator))
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        return cls(**config)

    class Recalibrate(keras.callbacks.Callback):
        """Recalibrates a `QuantizedView`'s ranges after each epoch."""

        def __init__(self, view):
            super().__init__()
            self.view = view

        def on_epoch_end(self, epoch, logs=None):
            self.view.calibrate(converters.calibration_latents(self.view.latent_dim))


class _Step:
    """One op of the int8 file's graph: a weighted layer with the batch norm
    after it (or after its crop) folded in (`norm`); a batch norm with no
    weights before it as its scale and its shift (`part`), two ops as in the
    file; or any other layer."""

    def __init__(self, layer, norm=None, part=None):
        self.layer, self.norm, self.part = layer, norm, part
        self.float_weights = False
        self.name = layer.name if part is None else f"{layer.name}_{part}"

    def __call__(self, x, quantize):
        layer = self.layer
        if isinstance(layer, _WEIGHTED):
            return self._weighted(x, quantize)
        if self.part == "scale":
            return x * _norm_scale(layer)
        if self.part == "shift":
            return x + layer.beta - layer.moving_mean * _norm_scale(layer)
        outputs = layer(x, training=False)
        if quantize and isinstance(layer, layers.Activation):  # tanh: the file's fixed output grid.
            outputs = tf.quantization.fake_quant_with_min_max_vars(outputs, *TANH_RANGE, num_bits=8)
        return outputs

    def _weighted(self, x, quantize):
        layer = self.layer
        dense = isinstance(layer, layers.Dense)
        kernel = layer.kernel  # Dense: (in, out); Conv2DTranspose: (kh, kw, out, in).
        bias = layer.bias if layer.use_bias else tf.zeros(kernel.shape[-1 if dense else -2])
        if self.norm is not None:
            scale = _norm_scale(self.norm)
            kernel = kernel * (scale if dense else scale[:, None])
            bias = bias * scale + self.norm.beta - self.norm.moving_mean * scale
        if dense:
            kernel = _fake_quantize_weights(kernel) if quantize else kernel
            return tf.matmul(x, kernel) + bias
        # The file's form: a convolution per output phase (`subpixel`), each phase of a channel its own scale.
        phases, paddings = subpixel.phase_kernel(kernel, layer.strides)
        phases = _fake_quantize_weights(phases, per_channel_axis=3) if quantize and not self.float_weights else phases
        biases = tf.tile(bias, [layer.strides[0] * layer.strides[1]])
        return subpixel.sub_pixel_convolution(x, phases, biases, paddings, layer.strides[0])

def _norm_scale(norm):
    return norm.gamma * tf.math.rsqrt(norm.moving_variance + norm.epsilon)


def _plan(network):
    """The file's graph as `_Step`s: batch norms folded as the converter folds them."""
    steps = []
    for layer in network:
        previous = steps[-1] if steps else None
        if previous and isinstance(previous.layer, layers.Cropping2D) and len(steps) > 1:
            previous = steps[-2]  # A crop commutes with a per-channel affine: the norm folds through it.
        if isinstance(layer, layers.BatchNormalization) and previous and isinstance(previous.layer, _WEIGHTED):
            previous.norm = layer  # Folded into the weights before it (`subpixel.SubPixelGenerator` does so).
        elif isinstance(layer, layers.BatchNormalization):
            steps += [_Step(layer, part="scale"), _Step(layer, part="shift")]
        elif subpixel.is_plain_relu(layer) and steps and isinstance(steps[-1].layer, layers.Cropping2D):
            steps.insert(len(steps) - 1, _Step(layer))  # Before the crop, as the file computes (and calibrates) it.
        else:
            steps.append(_Step(layer))
    return steps
