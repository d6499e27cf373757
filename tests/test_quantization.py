"""Quantization-aware fine-tuning: the view rounds as the int8 file does and
trains the generator it views."""

import keras
import numpy as np
import pytest

from kd_gan import Distiller, Generator
from kd_gan.export import converters as export
from kd_gan.errors import InputError
from kd_gan.export.quantization import QuantizedView
from kd_gan.training.steps import latent_dataset

LATENT = 8


def latents(count=64, seed=9):
    return np.random.default_rng(seed).standard_normal((count, LATENT)).astype(np.float32)


def mean_squared(a, b):
    return float(np.mean((np.asarray(a) - np.asarray(b)) ** 2))


def trained_like(image_shape, depth, seed=0):
    """A generator with spread-out weights and batch-norm statistics, as a trained one has."""
    keras.utils.set_random_seed(seed)
    generator = Generator(LATENT, image_shape, depth)
    rng = np.random.default_rng(seed)
    for layer in generator.network:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, channels))
            layer.beta.assign(rng.normal(0.0, 0.3, channels))
            layer.moving_mean.assign(rng.normal(0.0, 0.5, channels))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, channels))
    return generator


@pytest.mark.parametrize("image_shape", [(32, 32, 3), (28, 28, 1)])
def test_the_view_reproduces_the_int8_file_far_closer_than_the_float_model(tmp_path, image_shape):
    # 28x28 crops between a transposed convolution and its batch norm: the file folds it through the crop.
    # d=4: the first convolution has int8 weights, the smaller ones float32 (`tflite_graph.keeps_float_weights`).
    generator = trained_like(image_shape, 4)
    path = str(tmp_path / "g_int8.tflite")
    export.export_tflite(generator, path, quantization="int8", verify=False)
    z = latents()
    file_images = export.run_tflite(path, z)
    float_error = mean_squared(generator(z, training=False), file_images)
    view_error = mean_squared(QuantizedView(generator)(z), file_images)
    assert float_error > 0
    print(f"{image_shape}: view {view_error:.2e}, float model {float_error:.2e}")
    assert view_error < 0.1 * float_error


def test_transposed_convolution_weights_round_per_output_channel():
    from kd_gan.export.quantization import _fake_quantize_weights

    kernel = np.random.default_rng(3).normal(size=(5, 5, 3, 2)).astype(np.float32)  # (kh, kw, out, in)
    kernel[..., 1, :] *= 40  # One output channel far wider than the others.
    rounded = _fake_quantize_weights(kernel, per_channel_axis=2).numpy()
    for channel in range(3):
        step = np.abs(kernel[:, :, channel]).max() / 127
        np.testing.assert_allclose(rounded[:, :, channel], np.round(kernel[:, :, channel] / step) * step, atol=1e-5 * step * 127)


def test_without_rounding_the_view_is_the_generator():
    generator = trained_like((28, 28, 1), 2)
    view = QuantizedView(generator)
    z = latents(8)
    unrounded = view._tensors(z, quantize=False)["image"]
    np.testing.assert_allclose(unrounded, generator(z, training=False), atol=1e-5)


def test_the_view_shares_the_generator_variables_and_calibrates_on_the_export_latents():
    generator = trained_like((28, 28, 1), 1)
    view = QuantizedView(generator)
    assert {id(v) for v in generator.trainable_variables} == {id(v) for v in view.trainable_variables}
    z = export.calibration_latents(LATENT)
    np.testing.assert_allclose(view._ranges["z"].numpy(), [z.min(), z.max()], rtol=1e-6)


def test_distilling_the_view_trains_the_generator_which_still_exports_within_tolerance(tmp_path):
    teacher = trained_like((32, 32, 3), 2, seed=1)
    student = trained_like((32, 32, 3), 1, seed=2)
    view = QuantizedView(student)
    ranges = {name: variable.numpy() for name, variable in view._ranges.items()}
    weights = [w.numpy() for w in student.trainable_weights]
    distiller = Distiller(teacher, view)
    distiller.compile(keras.optimizers.Adam(1e-3))
    distiller.fit(latent_dataset(16, LATENT, seed=1), epochs=2, steps_per_epoch=5, verbose=0,
                  callbacks=[QuantizedView.Recalibrate(view)])
    assert all(not np.array_equal(w, v.numpy()) for w, v in zip(weights, student.trainable_weights))
    assert all(np.isfinite(v.numpy()).all() for v in student.weights)
    # Ranges follow the moved weights (recalibrated after each epoch); z's do not move.
    assert any(not np.allclose(ranges[name], view._ranges[name].numpy()) for name in ranges if name != "z")
    np.testing.assert_array_equal(ranges["z"], view._ranges["z"].numpy())
    record = export.export_tflite(student, str(tmp_path / "s_int8.tflite"), quantization="int8")
    assert record["verification"]["passed"]


@pytest.mark.parametrize("make", [lambda: keras.Sequential([keras.layers.Dense(4)]),
                                  lambda: Generator(LATENT, (28, 28, 1), 1, dtype="mixed_bfloat16")])
def test_the_view_refuses_what_it_cannot_round(make):
    with pytest.raises(InputError):
        QuantizedView(make())


def test_config_round_trip():
    view = QuantizedView(trained_like((28, 28, 1), 1))
    again = QuantizedView.from_config(view.get_config())
    assert again.generator.get_config() == view.generator.get_config()


def test_fine_tuning_under_int8_rounding_brings_the_int8_file_closer_to_the_teacher(tmp_path):
    teacher = trained_like((32, 32, 3), 2, seed=10)
    student = trained_like((32, 32, 3), 1, seed=20)
    z = latents()
    target = teacher(z, training=False)

    def int8_error(name):
        path = str(tmp_path / f"{name}.tflite")
        export.export_tflite(student, path, quantization="int8", verify=False)
        return mean_squared(export.run_tflite(path, z), target)

    before = int8_error("before")
    view = QuantizedView(student)
    distiller = Distiller(teacher, view)
    distiller.compile(keras.optimizers.Adam(1e-3))
    distiller.fit(latent_dataset(16, LATENT, seed=1), epochs=2, steps_per_epoch=10, verbose=0,
                  callbacks=[QuantizedView.Recalibrate(view)])
    assert int8_error("after") < 0.7 * before  # Measured: 0.36x.
