"""PixelLaplacianL1: the pyramid and the loss against a numpy reference, its levels, its refusal of
images too small for them, saving, and what it trains."""

import numpy as np
import pytest

import keras
from conftest import changed, weights_of
from kd_gan import Distiller, Generator, latent_dataset
from kd_gan.distillation import PixelL1, PixelLaplacianL1
from kd_gan.distillation.pyramid import laplacian_pyramid
from kd_gan.errors import InputError
from test_distill import LATENT, SHAPE, fixed_teacher


def numpy_pyramid(image, levels):
    """Each band: the image less its [1, 4, 6, 4, 1] / 16 filtering along rows then columns (edges
    mirrored without repeating the edge pixel); the next level: that filtering, 2x2-averaged."""
    taps = np.array([1, 4, 6, 4, 1], "float64") / 16
    current, bands = image.astype("float64"), []
    for _ in range(levels):
        padded = np.pad(current, [(2, 2), (2, 2), (0, 0)], mode="reflect")
        rows = sum(taps[i] * padded[i : i + current.shape[0], :] for i in range(5))
        smooth = sum(taps[i] * rows[:, i : i + current.shape[1]] for i in range(5))
        bands.append(current - smooth)
        h, w = smooth.shape[0] // 2 * 2, smooth.shape[1] // 2 * 2
        current = smooth[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).mean(axis=(1, 3))
    return bands + [current]


@pytest.mark.parametrize("shape", [(2, 30, 26, 3), (4, 28, 28, 1)])  # Odd halves (15x13), and grayscale batches.
def test_the_pyramid_and_the_loss_match_numpy(shape):
    rng = np.random.default_rng(0)
    teacher = rng.uniform(-1, 1, shape).astype("float32")
    student = np.clip(teacher + rng.normal(0, 0.3, teacher.shape), -1, 1).astype("float32")
    for got, expected in zip(laplacian_pyramid(teacher, 2), numpy_pyramid(teacher[1], 2)):
        np.testing.assert_allclose(got[1], expected, atol=1e-5)
    expected = [np.mean([np.mean(np.abs(s - t)) for s, t in zip(numpy_pyramid(st, 2), numpy_pyramid(te, 2))])
                for st, te in zip(student, teacher)]
    np.testing.assert_allclose(PixelLaplacianL1(levels=2).compute_loss([teacher], [student]), expected, rtol=1e-5)
    np.testing.assert_allclose(PixelLaplacianL1(levels=2).compute_loss([teacher], [teacher]), 0.0, atol=1e-7)


def test_no_band_is_the_plain_l1_and_a_flat_image_has_no_detail():
    rng = np.random.default_rng(1)
    teacher, student = (rng.uniform(-1, 1, (2, *SHAPE)).astype("float32") for _ in range(2))
    np.testing.assert_allclose(PixelLaplacianL1(levels=0).compute_loss([teacher], [student]),
                               PixelL1().compute_loss([teacher], [student]), rtol=1e-6)
    # A colour offset lives in the residual alone (the mirrored low-pass keeps a flat image flat).
    flat = np.full((1, 16, 16, 3), 0.5, "float32")
    bands = laplacian_pyramid(flat, 2)
    assert all(float(np.max(np.abs(band))) < 1e-6 for band in bands[:-1])
    np.testing.assert_allclose(PixelLaplacianL1(levels=2).compute_loss([flat], [flat + 0.3]), 0.3 / 3, rtol=1e-5)


def test_levels_default_to_what_the_images_allow_and_impossible_ones_are_refused():
    loss = PixelLaplacianL1()
    assert [loss.levels_for((None, side, side, 3)) for side in (64, 32, 28, 8, 2)] == [3, 3, 3, 2, 0]
    with pytest.raises(InputError, match=r"levels=3\) needs images of at least 12 pixels a side.*these are 8x10: they allow levels <= 2"):
        PixelLaplacianL1(levels=3).levels_for((None, 8, 10, 3))
    with pytest.raises(InputError, match=r"levels=6\) needs images of at least 96 pixels.*28x28: they allow levels <= 4"):
        Distiller(fixed_teacher(1), Generator(LATENT, SHAPE, 1), distillation_losses=[PixelLaplacianL1(levels=6)])
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(InputError, match=r"levels \(or None\) must be an integer >= 0. Received: levels="):
            PixelLaplacianL1(levels=bad)


def test_the_smallest_bands_match_numpy_and_the_pyramid_refuses_smaller_ones():
    rng = np.random.default_rng(2)
    for side, levels in ((3, 1), (6, 2), (7, 2)):  # Each last band 3 pixels a side.
        image = rng.uniform(-1, 1, (1, side, side, 2)).astype("float32")
        for got, expected in zip(laplacian_pyramid(image, levels), numpy_pyramid(image[0], levels)):
            np.testing.assert_allclose(got[0], expected, atol=1e-5)
    with pytest.raises(InputError, match="Level 3 of the pyramid is 1x3: .* at least 3 pixels.* images 7x13 allow fewer than 3 levels"):
        laplacian_pyramid(np.zeros((1, 7, 13, 1), "float32"), 3)
    with pytest.raises(InputError, match="known height and width; got shape \\(None, None, 8, 3\\)"):
        PixelLaplacianL1().levels_for((None, None, 8, 3))


def test_lap1_trains_the_student_only_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    teacher = fixed_teacher(2)
    distiller = Distiller(teacher, Generator(LATENT, SHAPE, 1), distillation_losses=[PixelLaplacianL1()])
    teacher_before, student_before = weights_of(teacher), weights_of(distiller.student)
    distiller.compile(student_optimizer=keras.optimizers.Adam(1e-2))
    history = distiller.fit(latent_dataset(4, LATENT), epochs=1, steps_per_epoch=2, verbose=0).history
    assert np.isfinite(history["lap1"][-1])
    assert not changed(teacher_before, teacher) and changed(student_before, distiller.student)
    distiller.save(tmp_path / "distiller.keras")
    restored = keras.saving.load_model(tmp_path / "distiller.keras")
    assert [type(loss).__name__ for loss in restored.distillation_losses] == ["PixelLaplacianL1"]
    two = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(PixelLaplacianL1(levels=2, name="p")))
    assert isinstance(two, PixelLaplacianL1) and (two.levels, two.name) == (2, "p")
    assert restored.distillation_losses[0].levels is None and restored.distillation_losses[0].name == "lap1"
    z = np.random.default_rng(3).normal(size=(2, LATENT)).astype("float32")
    np.testing.assert_allclose(restored.student(z), distiller.student(z), atol=1e-6)
