"""PixelSSIM: SSIM against a numpy reference and tf.image.ssim, its scales, its refusal of images
too small for them, saving, and what it trains."""

import numpy as np
import pytest
import scipy.signal

import keras
import tensorflow as tf
from conftest import changed, weights_of
from kd_gan import Distiller, Generator, latent_dataset
from kd_gan.distillation import PixelL1, PixelSSIM
from kd_gan.distillation.structural import filter_maps, ssim
from kd_gan.errors import InputError
from test_distill import LATENT, SHAPE, fixed_teacher


def numpy_ssim(x, y):
    """Wang et al.'s SSIM, 11x11 Gaussian window of sigma 1.5 (valid part), images in [0, 1]."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    window = np.outer(g, g) / g.sum() ** 2
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for channel in range(x.shape[-1]):
        a, b = x[..., channel].astype("float64"), y[..., channel].astype("float64")
        blur = lambda image: scipy.signal.correlate2d(image, window, mode="valid")
        mu_a, mu_b = blur(a), blur(b)
        var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
        values.append(((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
    return np.mean(values)


def average_pool(image):
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    return image[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).mean(axis=(1, 3))


def test_ssim_loss_is_one_minus_ssim_averaged_over_scales():
    rng = np.random.default_rng(0)
    teacher = rng.uniform(-1, 1, (2, 48, 40, 3)).astype("float32")
    student = np.clip(teacher + rng.normal(0, 0.3, teacher.shape), -1, 1).astype("float32")
    loss = PixelSSIM(scales=2)
    expected = []
    for t, s in zip((teacher + 1) / 2, (student + 1) / 2):
        expected.append(np.mean([1 - numpy_ssim(s, t), 1 - numpy_ssim(average_pool(s), average_pool(t))]))
    np.testing.assert_allclose(loss.compute_loss([teacher], [student]), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(loss.compute_loss([teacher], [teacher]), 0.0, atol=1e-5)


def numpy_ssim_scaled(x, y, max_val):
    return numpy_ssim(x / max_val, y / max_val)  # SSIM's constants scale with max_val**2: the same value.


@pytest.mark.parametrize("max_val, shift, level", [(1.0, 0.0, 1.0), (1.0, 0.2, 1.0), (1.0, 0.2, 0.05), (255.0, 0.0, 1.0)])
def test_separable_ssim_gives_tf_image_ssims_values_and_gradients(max_val, shift, level):
    """The two matrix products per map filter as tf.image.ssim's 11x11 Gaussian does, on images that are
    not square, with the local means apart, on dark images (where the constants weigh) and on a 0-255
    scale; in a traced function of unknown batch size."""
    rng = np.random.default_rng(4)
    target = rng.uniform(0, 1, (3, 23, 17, 2))
    images = np.clip((1 - shift) * target + shift + rng.normal(0, 0.2, target.shape), 0, 1)
    scale = level * max_val
    target, images = tf.constant(target * scale, tf.float32), tf.Variable((images * scale).astype("float32"))
    gradients = []
    for function in (ssim, lambda x, y: tf.image.ssim(x, y, max_val=max_val)):
        traced = tf.function(lambda x, y: function(x, y, max_val) if function is ssim else function(x, y),
                             input_signature=[tf.TensorSpec((None, 23, 17, 2), tf.float32)] * 2)
        with tf.GradientTape() as tape:
            values = traced(images, target)
            total = tf.reduce_sum(values)
        gradients.append(tape.gradient(total, images).numpy())
        expected = [numpy_ssim_scaled(x, y, max_val) for x, y in zip(images.numpy(), target.numpy())]
        np.testing.assert_allclose(values, expected, rtol=1e-5)
    np.testing.assert_allclose(gradients[0], gradients[1], rtol=1e-4, atol=1e-7 / scale)
    assert np.abs(gradients[1]).max() > 1e-4 / scale  # The comparison is of gradients that are there.


@pytest.mark.parametrize("shape", [(4, 1, 28, 28), (2, 1, 16, 11), (8, 1, 32, 32), (1, 1, 28, 28), (3, 3, 23, 17)])
def test_the_separable_filter_is_right_on_grayscale_batches_values_and_gradients(shape):
    """rows^T @ map @ columns per map, against numpy, on single-channel batches (MNIST's): TensorFlow
    2.21's batched product broadcast over (batch, 1, h, w) gives wrong values on AVX512 CPUs."""
    rng = np.random.default_rng(5)
    maps = tf.Variable(rng.uniform(-1, 1, shape).astype("float32"))
    rows, columns = (rng.uniform(0, 1, (size, size - 4)).astype("float32") for size in shape[2:])
    with tf.GradientTape() as tape:
        filtered = filter_maps(maps, tf.constant(rows), tf.constant(columns))
        total = tf.reduce_sum(filtered * filtered)
    expected = np.swapaxes(rows, 0, 1) @ maps.numpy().astype("float64") @ columns
    np.testing.assert_allclose(filtered.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tape.gradient(total, maps).numpy(), rows @ (2 * expected) @ columns.T, rtol=1e-4, atol=1e-4)
    traced = tf.function(lambda x: filter_maps(x, tf.constant(rows), tf.constant(columns)),
                         input_signature=[tf.TensorSpec((None, None, *shape[2:]), tf.float32)])  # Batch and channels unknown.
    np.testing.assert_allclose(traced(maps).numpy(), expected, rtol=1e-5, atol=1e-5)
    grayscale = rng.uniform(0, 1, (4, 28, 28, 1)).astype("float32")
    noisy = np.clip(grayscale + rng.normal(0, 0.2, grayscale.shape), 0, 1).astype("float32")
    np.testing.assert_allclose(ssim(tf.constant(noisy), tf.constant(grayscale)), [numpy_ssim(x, y) for x, y in zip(noisy, grayscale)], rtol=1e-5)


def test_separable_ssim_refuses_what_its_window_cannot_filter():
    for shape in [(2, 10, 16, 3), (16, 16, 3), (2, 16, 16, 3, 1)]:
        with pytest.raises(InputError, match=rf"known height and width of at least 11.*got shape \({shape[0]}, "):
            ssim(tf.zeros(shape), tf.zeros(shape))


def test_ssim_loss_sees_blur_that_a_pixel_error_prices_alike():
    """A blurred copy and a copy with flat noise at the same pixel MSE: SSIM prices the blur higher."""
    rng = np.random.default_rng(1)
    teacher = np.clip(rng.normal(0, 0.5, (1, 32, 32, 1)), -1, 1).astype("float32")
    blurred = (teacher + np.roll(teacher, 1, 1) + np.roll(teacher, 1, 2) + np.roll(teacher, (1, 1), (1, 2))) / 4
    noise = rng.normal(0, 1, teacher.shape)
    noisy = teacher + noise * np.sqrt(np.mean((blurred - teacher) ** 2) / np.mean(noise**2))
    loss = PixelSSIM(scales=1)
    assert abs(np.mean((noisy - teacher) ** 2) - np.mean((blurred - teacher) ** 2)) < 1e-6
    assert float(loss.compute_loss([teacher], [blurred])[0]) > float(loss.compute_loss([teacher], [noisy.astype("float32")])[0])


def test_ssim_trains_the_student_only_and_round_trips():
    keras.utils.set_random_seed(0)
    teacher = fixed_teacher(2)
    losses = [PixelSSIM(scales=2), PixelL1()]
    distiller = Distiller(teacher, Generator(LATENT, SHAPE, 1), distillation_losses=losses, distillation_loss_weights=[0.84, 0.16])
    teacher_before, student_before = weights_of(teacher), weights_of(distiller.student)
    distiller.compile(student_optimizer=keras.optimizers.Adam(1e-2))
    history = distiller.fit(latent_dataset(4, LATENT), epochs=1, steps_per_epoch=2, verbose=0).history
    assert np.isfinite(history["ssim"][-1]) and np.isfinite(history["l1"][-1])
    assert not changed(teacher_before, teacher) and changed(student_before, distiller.student)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(PixelSSIM(scales=2, name="s")))
    assert isinstance(restored, PixelSSIM) and (restored.scales, restored.name) == (2, "s")


def test_ssim_refuses_scales_its_window_cannot_reach():
    with pytest.raises(InputError, match=r"scales=3\) needs images of at least 44 pixels.*are 28x28: these allow scales <= 2"):
        Distiller(fixed_teacher(1), Generator(LATENT, SHAPE, 1), distillation_losses=[PixelSSIM()])
    with pytest.raises(InputError, match="scales must be an integer >= 1 or None. Received: scales=0"):
        PixelSSIM(scales=0)


def test_ssim_without_scales_compares_as_many_as_the_images_allow_and_survives_saving(tmp_path):
    keras.utils.set_random_seed(0)
    loss = PixelSSIM(scales=None)
    assert loss.scales_for((None, 28, 28, 1)) == 2 and loss.scales_for((None, 64, 64, 3)) == 3  # 7 < 11 pixels.
    images = np.random.default_rng(2).uniform(-1, 1, (2, *SHAPE)).astype("float32")
    np.testing.assert_allclose(loss.compute_loss([images], [images[::-1]]),
                               PixelSSIM(scales=2).compute_loss([images], [images[::-1]]), rtol=1e-6)
    with pytest.raises(InputError, match="scales=None.*at least 11 pixels a side.*these are 8x8: no scale fits them"):
        loss.scales_for((None, 8, 8, 3))
    # A Distiller with it saves and loads with the same loss and the same values.
    distiller = Distiller(fixed_teacher(1), Generator(LATENT, SHAPE, 1), distillation_losses=[PixelSSIM(scales=None), PixelL1()],
                          distillation_loss_weights=[0.84, 0.16])
    distiller.save(tmp_path / "distiller.keras")
    restored = keras.saving.load_model(tmp_path / "distiller.keras")
    assert [type(l).__name__ for l in restored.distillation_losses] == ["PixelSSIM", "PixelL1"]
    assert restored.distillation_losses[0].scales is None and restored.distillation_loss_weights == [0.84, 0.16]
    z = np.random.default_rng(3).normal(size=(2, LATENT)).astype("float32")
    np.testing.assert_allclose(restored.student(z), distiller.student(z), atol=1e-6)
