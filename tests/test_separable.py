"""Generators whose hidden stages upsample and apply a depthwise-separable convolution."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kd_gan import Distiller, Generator, count_multiply_accumulates, count_parameters, latent_dataset, load_generator
import kd_gan
from kd_gan import prune_generator
from kd_gan.distillation.teacher_cache import teacher_identity
from kd_gan.errors import InputError
from kd_gan.export import QuantizedView, export_tflite

KERNEL_AREA = 25
LATENT = 8


def hand_count(latent_dim, widths, channels):
    """Parameters: projection, then per hidden stage 25 depthwise taps per input channel, a 1x1 mix
    and a batch norm (4 numbers per unit), then the transposed conv that draws the image."""
    count = latent_dim * 16 * widths[0] + 4 * 16 * widths[0]
    for previous, width in zip(widths, widths[1:]):
        count += KERNEL_AREA * previous + previous * width + 4 * width
    return count + KERNEL_AREA * widths[-1] * channels + channels


def z(count=4, seed=1):
    return tf.random.stateless_normal((count, LATENT), seed=(seed, 0)).numpy()


def randomised(generator, seed=0):
    """`generator` with batch-norm statistics away from their initial values."""
    rng = np.random.default_rng(seed)
    for layer in generator.network:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                               rng.normal(0, 0.3, beta.shape).astype("float32"),
                               rng.normal(0, 0.1, mean.shape).astype("float32"),
                               rng.uniform(0.5, 2.0, variance.shape).astype("float32")])
    return generator


@pytest.mark.parametrize("shape, widths", [((28, 28, 1), (4, 16, 16)), ((32, 32, 3), (2, 24, 24)),
                                           ((64, 64, 3), (4, 40, 40, 40))])
def test_a_separable_generator_draws_its_shape_and_counts_its_parameters(shape, widths):
    generator = Generator(LATENT, shape, widths=widths, block="separable")
    assert generator(z(), training=False).shape == (4, *shape)
    assert count_parameters(generator) == hand_count(LATENT, widths, shape[2])


def test_forty_separable_channels_cost_less_than_twelve_transposed_ones():
    separable = Generator(128, (64, 64, 3), widths=(4, 40, 40, 40), block="separable")
    assert count_parameters(separable) == 17_391 < count_parameters(Generator(128, (64, 64, 3), widths=(4, 12, 12, 12)))


def test_a_separable_stage_is_nearest_upsampling_then_depthwise_then_pointwise():
    generator = randomised(Generator(LATENT, (32, 32, 3), widths=(2, 6, 5), block="separable"))
    before, after = generator.call_with_features(z(2), ["to_feature_map", "upsample_1"])[1]
    layer = next(layer for layer in generator.network if layer.name == "upsample_1")
    depthwise, pointwise = (w.numpy().astype(np.float64) for w in layer.weights)  # (5, 5, C, 1), (1, 1, C, W)
    x = np.repeat(np.repeat(before.numpy().astype(np.float64), 2, axis=1), 2, axis=2)  # (2, 8, 8, C)
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    taps = np.zeros_like(x)
    for i in range(5):
        for j in range(5):
            taps += padded[:, i:i + 8, j:j + 8, :] * depthwise[i, j, :, 0]
    expected = taps @ pointwise[0, 0]
    np.testing.assert_allclose(after.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_multiply_accumulates_of_a_separable_stage_by_hand():
    generator = Generator(LATENT, (32, 32, 3), widths=(2, 6, 5), block="separable")
    expected = (LATENT * 16 * 2  # projection
                + 8 * 8 * 2 * (KERNEL_AREA + 6)  # 8x8 output positions: depthwise taps and 1x1 mix per input channel
                + 16 * 16 * 6 * (KERNEL_AREA + 5)
                + 16 * 16 * KERNEL_AREA * 5 * 3)  # the transposed conv to the image: input positions
    assert count_multiply_accumulates(generator) == expected


def test_a_separable_generator_round_trips_through_keras_files(tmp_path):
    generator = randomised(Generator(LATENT, (28, 28, 1), widths=(4, 16, 16), block="separable"))
    assert generator.get_config()["block"] == "separable"
    generator.save(tmp_path / "g.keras")
    loaded = load_generator(str(tmp_path / "g.keras"))
    assert loaded.block == "separable" and loaded.widths == (4, 16, 16)
    np.testing.assert_array_equal(loaded(z(), training=False).numpy(), generator(z(), training=False).numpy())
    # The paper's generators write no block: their configs, files and teacher fingerprints stay as before.
    config = Generator(LATENT, (28, 28, 1), 2).get_config()
    assert "block" not in config and Generator.from_config(config).block == "transposed"


def test_the_kept_teachers_keep_the_fingerprint_their_caches_were_written_under():
    # Teacher caches are found by this fingerprint (class, config, weights): a config key added
    # for every generator would orphan each cache of the kept teacher.
    assert teacher_identity(kd_gan.pretrained("celeb_a_d32")) == "weights-96728febb41c9c0f"


def test_a_separable_generator_exports_a_verified_int8_file(tmp_path):
    generator = randomised(Generator(LATENT, (28, 28, 1), widths=(4, 16, 16), block="separable"))
    record = export_tflite(generator, str(tmp_path / "g_int8.tflite"), quantization="int8")
    assert record["verification"]["passed"], record["verification"]


def test_a_separable_student_learns_from_a_frozen_teacher():
    keras.utils.set_random_seed(0)
    teacher = Generator(LATENT, (28, 28, 1), 2)
    teacher.trainable = False
    student = Generator(LATENT, (28, 28, 1), widths=(2, 8, 8), block="separable")
    distiller = Distiller(teacher, student, loss="mse")
    distiller.compile(student_optimizer=keras.optimizers.Adam(3e-3))
    teacher_before = [w.numpy().copy() for w in teacher.weights]
    depthwise = next(layer for layer in student.network if layer.name == "upsample_1").weights[0]
    depthwise_before = depthwise.numpy().copy()
    history = distiller.fit(latent_dataset(16, LATENT), epochs=2, steps_per_epoch=50, verbose=0).history
    assert all(np.array_equal(before, after.numpy()) for before, after in zip(teacher_before, teacher.weights))
    assert not np.allclose(depthwise.numpy(), depthwise_before)
    assert history["mse"][-1] < history["mse"][0]


def test_what_a_separable_generator_refuses_names_the_value():
    with pytest.raises(InputError, match=r"block must be one of \('transposed', 'separable'\). Received: block='sep'"):
        Generator(LATENT, (28, 28, 1), 2, block="sep")
    teacher = Generator(LATENT, (28, 28, 1), 2)
    with pytest.raises(InputError, match="a student of block 'separable'"):
        prune_generator(teacher, (4, 4, 2), block="separable")
    with pytest.raises(InputError, match="a teacher of block 'separable'"):
        prune_generator(Generator(LATENT, (28, 28, 1), 2, block="separable"), (4, 4, 2))
    with pytest.raises(InputError, match="transposed-conv generators only; got block='separable'"):
        QuantizedView(Generator(LATENT, (28, 28, 1), widths=(2, 8, 8), block="separable"))
