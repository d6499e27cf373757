"""The examples run (with --tiny) and write what they say, so they cannot rot."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT
from kd_gan import android, evaluate, litert, load_generator, scoring


def run_example(name, *flags, cache_dir):
    command = [sys.executable, os.path.join(ROOT, "examples", name), "--tiny", *flags]
    environment = dict(os.environ, KD_GAN_CACHE_DIR=str(cache_dir))
    completed = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


@pytest.fixture(scope="module")
def distilled(tiny_mnist, tmp_path_factory):
    output = tmp_path_factory.mktemp("distil")
    stdout = run_example(
        "distil_your_generator.py", f"--data_dir={tiny_mnist[0]}", f"--output_dir={output}", cache_dir=output / "cache"
    )
    return output, stdout


def test_distil_your_generator_trains_students_that_load_and_move_towards_the_teacher(distilled):
    output, stdout = distilled
    with open(output / "summary.json") as file:
        summary = json.load(file)
    # The MSE scheme optimises exactly the held-out measure: it must fall.
    assert summary["mse"]["mse_to_teacher_after"] < summary["mse"]["mse_to_teacher_before"]
    assert summary["teacher_parameters"] > summary["student_parameters"] > 0
    z = np.random.default_rng(0).standard_normal((2, 64)).astype("float32")
    for name in ("teacher", "student_mse", "student_joint"):
        images = np.asarray(load_generator(str(output / f"{name}.keras"))(z))
        assert images.shape == (2, 28, 28, 1) and np.all(np.abs(images) <= 1)
    assert "mse student: MSE to the teacher" in stdout


def test_export_for_android_ships_a_verified_int8_file_and_its_kotlin(distilled, tmp_path):
    student = distilled[0] / "student_mse.keras"
    run_example("export_for_android.py", f"--generator={student}", f"--output_dir={tmp_path}", cache_dir=tmp_path / "cache")
    with open(tmp_path / "export.json") as file:
        record = json.load(file)
    shipped = str(tmp_path / "generator_int8.tflite")
    assert record["generator_int8.tflite"]["bytes"] == os.path.getsize(shipped)
    assert record["generator_int8.tflite"]["bytes"] < record["generator.tflite"]["bytes"]
    for name in ("generator.tflite", "generator_int8.tflite"):
        with open(tmp_path / f"{name}.verification.json") as file:
            assert json.load(file)["passed"]
    # The sample is the int8 file's own output for the example's z.
    z = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)
    expected = litert.run_tflite(shipped, z, signature=litert.UINT8_SIGNATURE)[0]
    sample = tf.io.decode_png(tf.io.read_file(str(tmp_path / "sample.png"))).numpy()
    np.testing.assert_array_equal(sample, expected)
    with open(tmp_path / "Generator.kt") as file:
        assert file.read() == android.kotlin_snippet(shipped)
    assert "const val LATENT_DIM = 64" in android.kotlin_snippet(shipped)


def test_evaluate_folders_matches_the_command_line_on_its_saved_reference(tmp_path):
    run_example("evaluate_folders.py", f"--output_dir={tmp_path}", cache_dir=tmp_path / "cache")
    with open(tmp_path / "metrics.json") as file:
        record = json.load(file)
    assert record["num_samples"] == record["reference_count"] == 24 and record["fid"] > 1
    # The same folders through `python -m kd_gan.evaluate`'s function, against the saved statistics.
    again = evaluate.evaluate(
        dataset="mnist", images=str(tmp_path / "folders" / "noise"), reference_images=str(tmp_path / "reference.npz")
    )
    assert again["fid"] == pytest.approx(record["fid"], rel=1e-6)
    reference = scoring.ImageStatistics.load(str(tmp_path / "reference.npz"))
    assert scoring.quality(reference, reference, "mnist_score")["fid"] == pytest.approx(0, abs=1e-6)
