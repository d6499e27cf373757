"""Files written before the subpackage layout still load, and a finished run still resumes."""

import json
import pathlib
import shutil

import keras
import numpy as np
import pytest

import kd_gan
from kd_gan import experiment

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "layout_v0_1"
# The fixtures were written on one CPU; another kind rounds floats differently
# (~1e-8 here between an AMD EPYC and an Intel Xeon): the same weights, not the same bits.
IMAGE_TOLERANCE = 1e-6


def approximately(value):
    """`value` with its floats compared to 1e-6 relative, inside dicts too."""
    if isinstance(value, dict):
        return {key: approximately(item) for key, item in value.items()}
    return pytest.approx(value, rel=1e-6, nan_ok=True) if isinstance(value, float) else value


def test_a_generator_saved_before_the_layout_loads_and_draws_the_same_images():
    generator = kd_gan.load_generator(str(FIXTURES / "generator.keras"))
    assert isinstance(generator, kd_gan.Generator)
    z = np.load(FIXTURES / "z.npy")
    np.testing.assert_allclose(generator(z, training=False).numpy(), np.load(FIXTURES / "generator_images.npy"), atol=IMAGE_TOLERANCE)


def test_a_distiller_saved_before_the_layout_loads_with_its_losses():
    distiller = keras.saving.load_model(FIXTURES / "distiller.keras")
    assert isinstance(distiller, kd_gan.Distiller)
    assert [type(loss).__name__ for loss in distiller.distillation_losses] == ["PixelMSE", "FeatureLoss", "PerceptualLoss"]
    assert distiller.distillation_loss_weights == [1.0, 0.2, 0.5]
    z = np.load(FIXTURES / "z.npy")
    np.testing.assert_allclose(
        distiller.student(z, training=False).numpy(), np.load(FIXTURES / "distiller_student_images.npy"), atol=IMAGE_TOLERANCE
    )
    total = distiller._distillation(z, distiller._taps.teacher_outputs(z))[2]
    np.testing.assert_allclose(np.asarray(total), np.load(FIXTURES / "distiller_losses.npy"), rtol=1e-6)


def test_a_run_finished_before_the_layout_resumes_without_training(tiny_mnist, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURES / "run", run_dir)
    before = json.loads((run_dir / "results.json").read_text())
    stamps = {path: path.stat().st_mtime_ns for path in run_dir.rglob("generator.keras")}
    assert len(stamps) == 6
    values = json.loads((run_dir / "config.json").read_text())
    values.update(output_dir=str(run_dir), data_dir=tiny_mnist[0])
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}
    after = experiment.run(experiment.ExperimentConfig(**values))
    # Every stage was found finished and loaded: no generator file was written again.
    assert {path: path.stat().st_mtime_ns for path in run_dir.rglob("generator.keras")} == stamps
    for old, new in zip(before["models"], after["models"], strict=True):
        for key in ("name", "method", "depth", "parameters", "path", "quality", "fidelity", "compression_ratio"):
            if isinstance(old.get(key), dict):
                for name, value in old[key].items():
                    assert new[key][name] == approximately(value), (old["name"], key, name)
            else:
                assert new.get(key) == old.get(key), (old["name"], key)
    assert after["teacher"] == before["teacher"] == "teacher_d2"
