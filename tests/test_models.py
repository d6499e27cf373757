"""Generator / Discriminator: shapes, parameter counts, serialization, bad input."""

import numpy as np
import pytest

import keras
from kd_gan import Discriminator, Generator, compression_ratio, count_parameters, load_generator
from kd_gan.data.loading import IMAGE_SHAPES
from kd_gan.errors import InputError
from kd_gan.models.any_generator import inference_function
from kd_gan.models.counting import count_multiply_accumulates

KERNEL_AREA = 25  # 5x5 kernels


def expected_generator_parameters(latent_dim, image_shape, depth):
    """Counted by hand from the documented layout (BN: 4 numbers per channel)."""
    size, channels = image_shape[0], image_shape[2]
    stages = {28: 3, 32: 3, 64: 4}[size]
    widths = [depth * 2 ** (stages - 1 - i) for i in range(stages)]
    count = latent_dim * 16 * widths[0] + 4 * 16 * widths[0]  # dense to 4x4 + BN
    for previous, width in zip(widths, widths[1:]):
        count += KERNEL_AREA * previous * width + 4 * width  # transposed conv + BN
    return count + KERNEL_AREA * widths[-1] * channels + channels  # output conv with bias


def expected_discriminator_parameters(image_shape, depth):
    size, channels = image_shape[0], image_shape[2]
    stages = {28: 3, 32: 3, 64: 4}[size]
    widths = [depth * 2**i for i in range(stages)]
    count, previous = 0, channels
    for width in widths:
        count += KERNEL_AREA * previous * width + width
        previous = width
    return count + 16 * widths[-1] + 1  # 4x4 final map -> one logit


@pytest.mark.parametrize("dataset", sorted(IMAGE_SHAPES))
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_shapes_and_parameter_counts(dataset, depth):
    shape = IMAGE_SHAPES[dataset]
    generator = Generator(16, shape, depth)
    discriminator = Discriminator(shape, depth)
    images = generator(np.random.normal(size=(2, 16)).astype("float32"), training=False)
    assert tuple(images.shape) == (2,) + shape
    assert np.all(np.abs(images) <= 1.0)  # tanh output
    assert tuple(discriminator(images, training=False).shape) == (2, 1)
    assert count_parameters(generator) == expected_generator_parameters(16, shape, depth)
    assert count_parameters(discriminator) == expected_discriminator_parameters(shape, depth)


def test_mnist_d64_matches_the_stock_wgan_gp_generator_size():
    # PAPER.md: the stock WGAN-GP MNIST generator at d=64 has about 1.55M parameters.
    assert count_parameters(Generator(128, (28, 28, 1), 64)) == 1_567_041


def test_compression_ratio():
    teacher, student = Generator(16, (28, 28, 1), 8), Generator(16, (28, 28, 1), 1)
    assert compression_ratio(teacher, student) == pytest.approx(
        count_parameters(teacher) / count_parameters(student)
    )
    assert compression_ratio(teacher, student) > 4


@pytest.mark.parametrize("model_fn", [lambda: Generator(8, (32, 32, 3), 2), lambda: Discriminator((32, 32, 3), 2)])
def test_config_round_trip_and_keras_file_give_identical_outputs(model_fn, tmp_path):
    model = model_fn()
    clone = type(model).from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    inputs = (
        np.random.normal(size=(2, 8)) if isinstance(model, Generator) else np.random.uniform(-1, 1, (2, 32, 32, 3))
    ).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = load_generator(str(path))
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded(inputs, training=False), model(inputs, training=False))


def test_a_discriminator_conditioned_on_z_adds_the_projection_of_z_on_its_features(tmp_path):
    conditioned = Discriminator((32, 32, 3), 2, latent_dim=8)
    plain = Discriminator((32, 32, 3), 2)
    plain.set_weights(conditioned.get_weights()[: len(plain.weights)])  # The same layers, then the projection.
    images = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 3)).astype("float32")
    z = np.random.default_rng(1).normal(size=(3, 8)).astype("float32")
    _, (features,) = plain.call_with_features(images, ["flatten"])
    kernel = conditioned.projection.kernel.numpy()
    expected = plain(images).numpy() + np.sum((z @ kernel) * features.numpy(), axis=-1, keepdims=True)
    np.testing.assert_allclose(conditioned((images, z)), expected, rtol=1e-5, atol=1e-5)
    assert conditioned.count_params() == plain.count_params() + 8 * features.shape[-1]
    path = tmp_path / "conditioned.keras"
    conditioned.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.latent_dim == 8 and loaded.conditioned
    np.testing.assert_array_equal(loaded((images, z)), conditioned((images, z)))
    with pytest.raises(ValueError, match=r"call it on \(images, z\)"):
        conditioned(images)


def test_a_keras_name_on_another_file_is_named_for_what_it_is(tmp_path):
    path = tmp_path / "x.keras"
    path.write_text("not a model\n")
    with pytest.raises(InputError, match=r"x.keras' is not a .keras file \(a zip archive written by model.save\): it is 12 bytes"):
        load_generator(str(path))


def test_load_generator_savedmodel(tmp_path):
    generator = Generator(8, (28, 28, 1), 1)
    z = np.random.normal(size=(3, 8)).astype("float32")
    generator(z)  # Keras exports subclassed models once they have been called.
    generator.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    layer = load_generator(str(tmp_path / "saved"), call_endpoint="serve")
    np.testing.assert_allclose(layer(z), generator(z, training=False), atol=1e-6)


def test_inference_function_gives_generate_images_at_any_batch_and_sees_new_weights():
    generator = Generator(8, (28, 28, 1), 1)
    images = inference_function(generator)
    for count in (3, 5):  # Another batch size, the same compiled call.
        z = np.random.default_rng(count).normal(size=(count, 8)).astype("float32")
        np.testing.assert_allclose(images(z), generator(z, training=False), atol=1e-6)
    # Weights changed after tracing are the ones it uses (a cache filled after more training).
    generator.set_weights([w * 1.5 for w in generator.get_weights()])
    np.testing.assert_allclose(images(z), generator(z, training=False), atol=1e-6)
    plain = lambda z: {"images": generator(z, training=False)}  # noqa: E731 (a signature-like callable)
    np.testing.assert_allclose(inference_function(plain)(z), generator(z, training=False), atol=1e-6)


def test_load_generator_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing_here.keras"):
        load_generator(str(tmp_path / "nothing_here.keras"))
    with pytest.raises(FileNotFoundError, match="saved_model.pb"):
        load_generator(str(tmp_path))


@pytest.mark.parametrize("depth", [0, -1, 1.5, "4", True])
def test_bad_depth(depth):
    with pytest.raises(ValueError, match=f"depth={depth!r}"):
        Generator(16, (28, 28, 1), depth)
    with pytest.raises(ValueError, match=f"depth={depth!r}"):
        Discriminator((28, 28, 1), depth)


@pytest.mark.parametrize("shape", [(28, 32, 1), (4, 4, 1), (28, 28), (28, 28, 0)])
def test_bad_image_shape(shape):
    with pytest.raises(ValueError, match="image_shape"):
        Generator(16, shape, 1)


def test_bad_latent_dim():
    with pytest.raises(ValueError, match="latent_dim=0"):
        Generator(0, (28, 28, 1), 1)


def test_registered_for_safe_loading():
    assert keras.saving.get_registered_object("kd_gan>Generator") is Generator
    assert keras.saving.get_registered_object("kd_gan>Discriminator") is Discriminator


def test_multiply_accumulates_of_a_tiny_generator_by_hand():
    # 28x28 layout at d=1: widths 4d, 2d, d = 4, 2, 1; maps 4x4 -> 8x8 (cropped to 7x7) -> 14x14 -> 28x28.
    # A transposed conv counts input positions x 5x5 x in x out.
    expected = (
        8 * (4 * 4 * 4)  # project: 8 latents -> 4x4x4
        + (4 * 4) * 25 * 4 * 2  # upsample_1: 4x4x4 -> 8x8x2
        + (7 * 7) * 25 * 2 * 1  # upsample_2: 7x7x2 (after the crop) -> 14x14x1
        + (14 * 14) * 25 * 1 * 1  # to_image: 14x14x1 -> 28x28x1
    )
    assert expected == 11_062
    generator = Generator(latent_dim=8, image_shape=(28, 28, 1), depth=1)
    assert count_multiply_accumulates(generator) == expected
    assert count_multiply_accumulates(generator, batch_size=3) == 3 * expected


def test_multiply_accumulates_of_a_tiny_discriminator_by_hand():
    # Widths d, 2d, 4d = 1, 2, 4; stride-2 "same" convs 28 -> 14 -> 7 -> 4; a conv counts output positions.
    expected = (
        (14 * 14) * 25 * 1 * 1  # downsample_1: 28x28x1 -> 14x14x1
        + (7 * 7) * 25 * 1 * 2  # downsample_2: 14x14x1 -> 7x7x2
        + (4 * 4) * 25 * 2 * 4  # downsample_3: 7x7x2 -> 4x4x4
        + (4 * 4 * 4) * 1  # logit: 64 features -> 1
    )
    assert expected == 10_614
    assert count_multiply_accumulates(Discriminator(image_shape=(28, 28, 1), depth=1)) == expected


def _multiply_accumulates_from_kernels(model, inputs):
    """Independent count: each kernel's size times the positions it is applied at, read from a real forward
    pass (a transposed conv is applied at its input's positions, a conv at its output's, a dense layer once)."""
    names = [layer.name for layer in model.network]
    _, outputs = model.call_with_features(inputs, names, training=False)
    shapes = dict(zip(names, (tuple(output.shape) for output in outputs)))
    total, previous_shape = 0, tuple(inputs.shape)
    for layer in model.network:
        kernels = [weight for weight in layer.weights if weight.path.endswith("kernel")]
        if kernels:
            applied_at = {
                "Dense": 1,
                "Conv2D": np.prod(shapes[layer.name][1:3]),
                "Conv2DTranspose": np.prod(previous_shape[1:3]),
            }[type(layer).__name__]
            total += int(applied_at) * int(np.prod(kernels[0].shape))
        previous_shape = shapes[layer.name]
    return total * inputs.shape[0]


@pytest.mark.parametrize("dataset", sorted(IMAGE_SHAPES))
@pytest.mark.parametrize("depth", [1, 3])
def test_multiply_accumulates_match_the_kernels_shapes(dataset, depth):
    shape = IMAGE_SHAPES[dataset]
    generator, discriminator = Generator(8, shape, depth), Discriminator(shape, depth)
    z = np.zeros((2, 8), "float32")
    images = np.zeros((2,) + shape, "float32")
    assert count_multiply_accumulates(generator, batch_size=2) == _multiply_accumulates_from_kernels(generator, z)
    assert count_multiply_accumulates(discriminator, batch_size=2) == _multiply_accumulates_from_kernels(
        discriminator, images
    )


class _GeneratorWithDepthwiseConv(Generator):
    """A generator ending in a layer with weights that the MAC count does not know."""

    def build(self, input_shape):
        self.network.append(keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise"))
        super().build(input_shape)


def test_multiply_accumulates_refuse_what_they_cannot_count():
    with pytest.raises(InputError, match="'depthwise' of type DepthwiseConv2D"):
        count_multiply_accumulates(_GeneratorWithDepthwiseConv(8, (28, 28, 1), 1))
    with pytest.raises(InputError, match="batch_size=0"):
        count_multiply_accumulates(Discriminator((28, 28, 1), 1), batch_size=0)
    with pytest.raises(InputError, match="Generator or Discriminator"):
        count_multiply_accumulates(keras.Sequential([keras.layers.Dense(1)]))
