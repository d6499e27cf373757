"""Generators of any width profile, and students started from the pruned teacher."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kd_gan
from kd_gan import Generator, count_parameters, load_generator, prune_generator
from kd_gan.errors import InputError
from kd_gan.export import export_tflite
from kd_gan.models import dcgan_widths

KERNEL_AREA = 25
LATENT = 8


def hand_count(latent_dim, widths, channels):
    """Parameters of a width profile, counted from the layout (BN: 4 numbers per unit)."""
    count = latent_dim * 16 * widths[0] + 4 * 16 * widths[0]
    for previous, width in zip(widths, widths[1:]):
        count += KERNEL_AREA * previous * width + 4 * width
    return count + KERNEL_AREA * widths[-1] * channels + channels


def randomised(generator, seed=0):
    """`generator` with batch-norm scales, shifts and statistics away from their initial values."""
    rng = np.random.default_rng(seed)
    for layer in generator.network:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.2, 2.0, gamma.shape).astype("float32"), rng.normal(0, 0.3, beta.shape).astype("float32"),
                rng.normal(0, 0.1, mean.shape).astype("float32"), rng.uniform(0.5, 2.0, variance.shape).astype("float32"),
            ])
    return generator


def z(count=4, seed=1):
    return tf.random.stateless_normal((count, LATENT), seed=(seed, 0)).numpy()


@pytest.mark.parametrize("shape, widths", [((28, 28, 1), (4, 6, 6)), ((64, 64, 3), (4, 12, 12, 12))])
def test_a_width_profile_builds_those_maps_and_counts_its_parameters(shape, widths):
    generator = Generator(LATENT, shape, widths=widths)
    assert generator.depth is None and generator.widths == widths
    assert count_parameters(generator) == hand_count(LATENT, widths, shape[2])
    assert generator(z(), training=False).shape == (4, *shape)
    # The paper's family is the profile dcgan_widths gives.
    assert Generator(LATENT, shape, 2).widths == dcgan_widths(2, shape[0]) == tuple(2 * 2**i for i in range(len(widths)))[::-1]


def test_a_width_profile_round_trips_through_keras_files(tmp_path):
    generator = randomised(Generator(LATENT, (32, 32, 3), widths=(3, 5, 7)))
    assert generator.get_config()["widths"] == [3, 5, 7] and generator.get_config()["depth"] is None
    generator.save(tmp_path / "g.keras")
    loaded = load_generator(str(tmp_path / "g.keras"))
    assert loaded.widths == (3, 5, 7) and loaded.depth is None
    np.testing.assert_array_equal(loaded(z(), training=False).numpy(), generator(z(), training=False).numpy())
    # A depth generator's config has no widths: files written before profiles existed load the same way.
    assert "widths" not in Generator(LATENT, (32, 32, 3), 2).get_config()


def test_a_width_profile_exports_a_verified_int8_file(tmp_path):
    generator = randomised(Generator(LATENT, (28, 28, 1), widths=(4, 6, 6)))
    record = export_tflite(generator, str(tmp_path / "g_int8.tflite"), quantization="int8")
    assert record["verification"]["passed"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(widths=(4, 12, 12)), r"widths for 64x64 images must be 4 integers"),
        (dict(widths=(4, 0, 12, 12)), r"each of widths .* must be an integer >= 1"),
        (dict(widths="4-12-12-12"), r"must be 4 integers"),
        (dict(depth=2, widths=(4, 12, 12, 12)), r"Give depth or widths, not both"),
    ],
)
def test_bad_width_profiles_are_refused_naming_the_value(arguments, message):
    with pytest.raises(InputError, match=message):
        Generator(LATENT, (64, 64, 3), **arguments)


@pytest.mark.parametrize("shape", [(28, 28, 1), (64, 64, 3)])
@pytest.mark.parametrize("criterion", ["batch_norm", "filter_norm"])
def test_pruning_to_the_teacher_widths_keeps_its_output_exactly(shape, criterion):
    teacher = randomised(Generator(LATENT, shape, 2))
    student = prune_generator(teacher, teacher.widths, criterion=criterion)
    np.testing.assert_array_equal(student(z(), training=False).numpy(), teacher(z(), training=False).numpy())


def test_pruning_removes_the_channels_that_carry_nothing_and_keeps_the_output():
    """Channels whose batch norm has zero scale and shift are dead after the ReLU:
    the criterion must drop exactly those, and the kept weights reproduce the teacher."""
    teacher = randomised(Generator(LATENT, (64, 64, 3), 2))
    norms = [layer for layer in teacher.network if isinstance(layer, keras.layers.BatchNormalization)]
    widths = teacher.widths
    dead = [np.arange(width) % 2 == 1 for width in widths]  # Every odd channel of every map.
    for norm, width, mask in zip(norms, widths, dead):
        gamma, beta, mean, variance = norm.get_weights()
        units = np.tile(mask, gamma.size // width)  # The projection's batch norm is per (position, channel).
        gamma[units], beta[units] = 0.0, 0.0
        norm.set_weights([gamma, beta, mean, variance])
    student = prune_generator(teacher, tuple(width // 2 for width in widths))
    assert student.widths == (8, 4, 2, 1)
    np.testing.assert_allclose(student(z(), training=False).numpy(), teacher(z(), training=False).numpy(), atol=1e-5)
    assert count_parameters(student) < count_parameters(teacher) / 2


def test_a_pruned_start_keeps_the_strong_channels_and_starts_near_the_teacher():
    """Half the channels of every map weak (batch-norm scale 0.02, no shift): the
    pruned student keeps the strong half and starts far closer to the teacher than
    a student of the same widths from random weights."""
    keras.utils.set_random_seed(0)
    teacher = randomised(Generator(LATENT, (28, 28, 1), 4))
    norms = [layer for layer in teacher.network if isinstance(layer, keras.layers.BatchNormalization)]
    for norm, width in zip(norms, teacher.widths):
        gamma, beta, mean, variance = norm.get_weights()
        weak = np.tile(np.arange(width) < width // 2, gamma.size // width)
        gamma[weak], beta[weak] = 0.02, 0.0
        norm.set_weights([gamma, beta, mean, variance])
    target = teacher(z(64), training=False).numpy()

    def error(student):
        return float(np.mean((student(z(64), training=False).numpy() - target) ** 2))

    pruned = prune_generator(teacher, (8, 4, 2))
    assert error(pruned) < 0.1 * error(Generator(LATENT, (28, 28, 1), widths=(8, 4, 2)))
    # filter_norm ranks by weights alone, which these scales do not change: it need not find them.
    assert error(pruned) < error(prune_generator(teacher, (8, 4, 2), criterion="filter_norm"))


def test_pruning_refuses_what_it_cannot_do():
    teacher = Generator(LATENT, (28, 28, 1), 2)
    with pytest.raises(InputError, match=r"cannot be wider than its teacher \(map 1: 5 > 4\)"):
        prune_generator(teacher, (8, 5, 2))
    with pytest.raises(InputError, match="must be 3 integers"):
        prune_generator(teacher, (8, 4))
    with pytest.raises(InputError, match="Unknown pruning criterion 'random'"):
        prune_generator(teacher, (8, 4, 2), criterion="random")
    sequential = keras.Sequential([keras.Input((LATENT,)), keras.layers.Dense(28 * 28), keras.layers.Reshape((28, 28, 1))])
    with pytest.raises(InputError, match="takes a kd_gan Generator"):
        prune_generator(sequential, (8, 4, 2))


def test_the_package_exports_pruning_at_its_top():
    assert kd_gan.prune_generator is prune_generator


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (64, 64, 3)])
def test_refitting_at_the_teacher_widths_recovers_its_weights(shape):
    """Nothing removed, and the teacher's batch norms holding the statistics of
    its maps over the refit's latent vectors (which the refit gives the
    student's): least squares finds the teacher's kernels and image bias again."""
    teacher = randomised(Generator(LATENT, shape, 1))
    refit_z = tf.random.stateless_normal((32, LATENT), seed=(5, 0))  # prune_generator's, for seed=5.
    for position, layer in enumerate(teacher.network):
        if isinstance(layer, keras.layers.BatchNormalization):
            maps = refit_z
            for earlier in teacher.network[:position]:
                maps = earlier(maps, training=False)
            maps = np.reshape(maps.numpy(), (-1, maps.shape[-1])).astype("float64")
            layer.moving_mean.assign(maps.mean(axis=0).astype("float32"))
            layer.moving_variance.assign(maps.var(axis=0).astype("float32"))
    student = prune_generator(teacher, teacher.widths, refit_samples=32, seed=5)
    for mine, theirs in zip(student.network, teacher.network):
        if isinstance(mine, keras.layers.Conv2DTranspose):
            np.testing.assert_allclose(mine.kernel.numpy(), theirs.kernel.numpy(), atol=2e-3)
            if mine.use_bias:
                np.testing.assert_allclose(mine.bias.numpy(), theirs.bias.numpy(), atol=2e-3)
    np.testing.assert_allclose(student(z(), training=False).numpy(), teacher(z(), training=False).numpy(), atol=1e-3)


def test_refitting_brings_a_pruned_student_closer_to_the_teacher():
    keras.utils.set_random_seed(1)
    teacher = randomised(Generator(LATENT, (28, 28, 1), 4))
    target = teacher(z(128), training=False).numpy()

    def error(student):
        return float(np.mean((student(z(128), training=False).numpy() - target) ** 2))

    pruned = prune_generator(teacher, (8, 4, 2))
    refit = prune_generator(teacher, (8, 4, 2), refit_samples=256, seed=3)
    assert error(refit) < 0.8 * error(pruned)
    with pytest.raises(InputError, match="refit_samples"):
        prune_generator(teacher, (8, 4, 2), refit_samples=-1)
    # One latent vector: 49 positions of the 7x7 map for the 200 weights of each upsample_1 channel.
    with pytest.raises(InputError, match=r"refit_samples=1 gives 'upsample_1' 49 output positions for its 200 weights"):
        prune_generator(teacher, (8, 4, 2), refit_samples=1)


def test_a_start_file_fits_the_same_network_given_by_depth_or_by_widths(tmp_path):
    from kd_gan.models.any_generator import start_from

    by_depth = Generator(8, (28, 28, 1), depth=2)
    path = tmp_path / "d2.keras"
    by_depth.save(str(path))
    by_widths = start_from(Generator(8, (28, 28, 1), widths=dcgan_widths(2, 28)), path)
    for mine, theirs in zip(by_widths.get_weights(), by_depth.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    with pytest.raises(InputError, match=r"must be a generator of the student's architecture, Generator\(latent_dim=8, image_shape=\(28, 28, 1\), widths=\(8, 4, 2\), block='separable'\); it holds Generator\(.*block='transposed'\)"):
        start_from(Generator(8, (28, 28, 1), depth=2, block="separable"), path)
    with pytest.raises(InputError, match=r"latent_dim=16"):
        start_from(Generator(16, (28, 28, 1), depth=2), path)
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"student_start='.*broken.keras' could not be loaded as a Keras generator: .*not a \.keras file"):
        start_from(by_widths, tmp_path / "broken.keras")
