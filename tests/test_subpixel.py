"""Transposed convolutions as sub-pixel convolutions: the same images, and
files without TRANSPOSE_CONV whose first output is the float image."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kd_gan import Generator
from kd_gan.export import converters as export
from kd_gan.export import subpixel, tflite_graph
from kd_gan.models import tflite_generator

from test_quantization import trained_like  # A generator with spread-out batch-norm statistics.


@pytest.mark.parametrize("kernel_size, stride", [(5, 2), (4, 2), (3, 2), (2, 2), (5, 3), (1, 2), (3, 1)])
def test_phase_kernel_computes_the_transposed_convolution(kernel_size, stride):
    rng = np.random.default_rng(kernel_size * 10 + stride)
    x = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
    kernel = rng.standard_normal((kernel_size, kernel_size, 4, 3)).astype(np.float32)  # [k, k, out, in]
    expected = keras.ops.conv_transpose(x, kernel, strides=stride, padding="same").numpy()
    phases, paddings = subpixel.phase_kernel(kernel, (stride, stride))
    got = subpixel.sub_pixel_convolution(x, phases, np.zeros(phases.shape[-1], np.float32), paddings, stride).numpy()
    assert got.shape == expected.shape == (2, 5 * stride, 5 * stride, 4)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_phase_kernel_of_a_tensor_passes_gradients_to_every_tap():
    kernel = tf.Variable(np.random.default_rng(0).standard_normal((5, 5, 2, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        phases, _ = subpixel.phase_kernel(kernel, (2, 2))
        total = tf.reduce_sum(phases)
    # Each of the 25 taps reaches exactly one phase once: the gradient of the sum is all ones.
    np.testing.assert_array_equal(tape.gradient(total, kernel).numpy(), np.ones((5, 5, 2, 3)))
    np.testing.assert_allclose(phases.numpy(), subpixel.phase_kernel(kernel.numpy(), (2, 2))[0])


@pytest.mark.parametrize("image_shape", [(28, 28, 1), (32, 32, 3), (64, 64, 3)])
def test_the_sub_pixel_generator_draws_the_generators_images(image_shape):
    generator = trained_like(image_shape, 1)
    z = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    np.testing.assert_allclose(subpixel.SubPixelGenerator(generator)(z).numpy(), generator(z, training=False).numpy(), atol=2e-6)


def test_width_profiles_rewrite_too():
    generator = Generator(8, (32, 32, 3), widths=(4, 6, 6))
    z = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    np.testing.assert_allclose(subpixel.SubPixelGenerator(generator)(z).numpy(), generator(z, training=False).numpy(), atol=2e-6)


def test_only_generators_with_transposed_convolutions_are_rewritten():
    functional = keras.Sequential([keras.Input((8,)), keras.layers.Dense(28 * 28), keras.layers.Reshape((28, 28, 1))])
    assert not subpixel.rewritable(functional)
    assert subpixel.rewritable(Generator(8, (28, 28, 1), 1))


def _operators(path):
    interpreter = tflite_generator.interpreter(path)
    return [op["op_name"] for op in interpreter._get_ops_details()]


@pytest.mark.parametrize("quantization", ["none", "int8"])
def test_exported_files_hold_sub_pixel_convolutions_and_match_keras(tmp_path, quantization):
    generator = trained_like((28, 28, 1), 2)
    path = str(tmp_path / f"g_{quantization}.tflite")
    record = export.export_tflite(generator, path, quantization=quantization)  # Verified against Keras.
    operators = _operators(path)
    assert "TRANSPOSE_CONV" not in operators and operators.count("DEPTH_TO_SPACE") == 3
    assert record["verification"]["passed"]
    kept = str(tmp_path / f"kept_{quantization}.tflite")
    export.export_tflite(generator, kept, quantization=quantization, sub_pixel=False)
    assert _operators(kept).count("TRANSPOSE_CONV") == 3


@pytest.mark.parametrize("quantization", ["none", "int8"])
def test_a_plain_interpreters_first_output_is_the_float_image(tmp_path, quantization):
    generator = trained_like((28, 28, 1), 1)
    path = str(tmp_path / "g.tflite")
    export.export_tflite(generator, path, quantization=quantization, verify=False)
    interpreter = tflite_generator.interpreter(path)
    interpreter.allocate_tensors()
    z = np.random.default_rng(2).standard_normal((1, 8)).astype(np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], z)
    interpreter.invoke()
    first, second = interpreter.get_output_details()
    assert first["dtype"] == np.float32 and second["dtype"] == np.uint8
    image = interpreter.get_tensor(first["index"])
    np.testing.assert_allclose(image, generator(z, training=False).numpy(), atol=1e-5 if quantization == "none" else 0.1)
    assert list(interpreter.get_signature_list()) == [export.SIGNATURE, export.UINT8_SIGNATURE]


def test_an_int8_file_keeps_its_small_and_last_convolutions_in_float32(tmp_path):
    generator = trained_like((32, 32, 3), 4)
    path = str(tmp_path / "g_int8.tflite")
    export.export_tflite(generator, path, quantization="int8")  # Verified against Keras.
    interpreter = tflite_generator.interpreter(path)
    tensors = interpreter.get_tensor_details()
    weighted = [op for op in interpreter._get_ops_details() if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED")]
    weights = [tensors[op["inputs"][1]] for op in weighted]
    # Projection; 16 -> 4x8 channels (4,608 weights); 8 -> 4x4 (1,152); the image, 4 -> 4x3 (432).
    assert [int(np.prod(w["shape"])) for w in weights[1:]] == [4608, 1152, 432]
    assert [w["dtype"] for w in weights] == [np.int8, np.int8, np.float32, np.float32]
    assert [tflite_graph.keeps_float_weights(n, last=False) for n in (2048, 2049)] == [True, False]
    assert tflite_graph.keeps_float_weights(10**6, last=True)
    # The ReLUs run fused into the convolutions before them: no RELU op is left.
    assert "RELU" not in [op["op_name"] for op in interpreter._get_ops_details()]
    plain = str(tmp_path / "g_int8_plain.tflite")
    export.export_tflite(generator, plain, quantization="int8", float_small_layers=False)
    interpreter = tflite_generator.interpreter(plain)
    tensors = interpreter.get_tensor_details()
    assert all(tensors[op["inputs"][1]]["dtype"] == np.int8 for op in interpreter._get_ops_details()
               if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED"))


@pytest.mark.parametrize("quantization", ["none", "int8"])
def test_a_relu_after_a_crop_runs_fused_into_the_convolution(tmp_path, quantization):
    generator = trained_like((28, 28, 1), 2)  # 7x7 -> 14x14 after cropping 8x8: a crop before the ReLU.
    assert any(isinstance(layer, keras.layers.Cropping2D) for layer in generator.network)
    path = str(tmp_path / f"g_{quantization}.tflite")
    export.export_tflite(generator, path, quantization=quantization)  # Verified against Keras.
    names = [op["op_name"] for op in tflite_generator.interpreter(path)._get_ops_details()]
    drawn = names[: names.index("TANH")]  # Before the image (a float file's uint8 output clips with a RELU).
    assert "RELU" not in drawn and "STRIDED_SLICE" in drawn
