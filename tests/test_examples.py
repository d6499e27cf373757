"""The examples run (with --tiny) and write what they say, so they cannot rot."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT
from kd_gan import load_generator
from kd_gan.export import android
from kd_gan.evaluation import cli as evaluate
from kd_gan.models import tflite_generator as litert
from kd_gan.evaluation import scoring


def run_example(name, *flags, cache_dir, tiny=True, check=True):
    command = [sys.executable, os.path.join(ROOT, "examples", name), *(["--tiny"] if tiny else []), *flags]
    environment = dict(os.environ, KD_GAN_CACHE_DIR=str(cache_dir))
    completed = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    if check:
        assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


@pytest.fixture(scope="module")
def distilled(tiny_mnist, tmp_path_factory):
    output = tmp_path_factory.mktemp("distil")
    completed = run_example(
        "distil_your_generator.py", f"--data_dir={tiny_mnist[0]}", f"--output_dir={output}", cache_dir=output / "cache"
    )
    return output, completed


def test_distil_your_generator_trains_students_that_load_and_move_towards_a_teacher_that_stays(distilled):
    output, completed = distilled
    with open(output / "summary.json") as file:
        summary = json.load(file)
    # The MSE scheme optimises the held-out measure itself: it must fall clearly.
    assert summary["mse"]["mse_to_teacher_after"] < 0.95 * summary["mse"]["mse_to_teacher_before"]
    assert summary["joint"]["mse_to_teacher_after"] != summary["joint"]["mse_to_teacher_before"]  # It trained.
    # teacher.keras, saved before distillation, gives the summary's numbers: distilling did not move the teacher.
    teacher = load_generator(str(output / "teacher.keras"))
    z = np.random.default_rng(1234).standard_normal((256, 64)).astype("float32")  # The example's held-out z.
    for scheme in ("mse", "joint"):
        student = load_generator(str(output / f"student_{scheme}.keras"))
        mse = float(np.mean((np.asarray(student(z)) - np.asarray(teacher(z))) ** 2))
        assert mse == pytest.approx(summary[scheme]["mse_to_teacher_after"], rel=1e-4)
    assert summary["compression_ratio"] == pytest.approx(summary["teacher_parameters"] / summary["student_parameters"])
    assert "mse student: MSE to the teacher" in completed.stdout


@pytest.mark.parametrize("source", ["distilled student", "tiny"])
def test_export_for_android_ships_a_verified_int8_file_and_its_kotlin(distilled, tmp_path, source):
    if source == "tiny":
        run_example("export_for_android.py", f"--output_dir={tmp_path}", cache_dir=tmp_path / "cache")
        latent_dim = 128
    else:
        student = distilled[0] / "student_mse.keras"
        run_example(
            "export_for_android.py", f"--generator={student}", f"--output_dir={tmp_path}", cache_dir=tmp_path / "cache",
            tiny=False,
        )
        latent_dim = 64
    with open(tmp_path / "export.json") as file:
        record = json.load(file)
    shipped = str(tmp_path / "generator_int8.tflite")
    assert record["generator_int8.tflite"]["bytes"] == os.path.getsize(shipped)
    assert record["generator_int8.tflite"]["bytes"] < record["generator.tflite"]["bytes"]
    for name in ("generator.tflite", "generator_int8.tflite"):
        with open(tmp_path / f"{name}.verification.json") as file:
            assert json.load(file)["passed"]
    # The sample is the int8 file's own output for the example's z.
    z = np.random.default_rng(0).standard_normal((1, latent_dim)).astype(np.float32)
    expected = litert.run_tflite(shipped, z, signature=litert.UINT8_SIGNATURE)[0]
    sample = tf.io.decode_png(tf.io.read_file(str(tmp_path / "sample.png"))).numpy()
    np.testing.assert_array_equal(sample, expected)
    with open(tmp_path / "Generator.kt") as file:
        assert file.read() == android.kotlin_snippet(shipped)
    assert f"const val LATENT_DIM = {latent_dim}" in android.kotlin_snippet(shipped)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_export_for_android_tiny_verifies_on_every_seed(tmp_path, seed):
    """The tiny student's int8 file passes its check whatever the seed (with seed 0 above: five in a row)."""
    completed = run_example("export_for_android.py", f"--output_dir={tmp_path}", f"--seed={seed}", cache_dir=tmp_path / "cache")
    with open(tmp_path / "generator_int8.tflite.verification.json") as file:
        check = json.load(file)
    assert check["passed"] and check["correlation"] >= 0.98, check
    assert "generator_int8.tflite" in completed.stdout


def test_export_for_android_takes_one_source(tmp_path):
    completed = run_example("export_for_android.py", "--generator=x.keras", cache_dir=tmp_path, check=False)
    assert completed.returncode != 0 and "Give one of --generator=PATH.keras and --tiny" in completed.stderr


def test_evaluate_folders_matches_the_command_line_on_its_saved_reference(tmp_path):
    run_example("evaluate_folders.py", f"--output_dir={tmp_path}", cache_dir=tmp_path / "cache")
    with open(tmp_path / "metrics.json") as file:
        record = json.load(file)
    assert record["num_samples"] == record["reference_count"] == 24 and record["fid"] > 1
    # The same folders through `python -m kd_gan.evaluate`'s function, against the saved statistics.
    again = evaluate.evaluate(
        dataset="mnist", images=str(tmp_path / "folders" / "noise"), reference_images=str(tmp_path / "reference.npz")
    )
    assert again["fid"] == pytest.approx(record["fid"], rel=1e-4)
    reference = scoring.ImageStatistics.load(str(tmp_path / "reference.npz"))
    assert reference.count == 24 and reference.network == record["classifier"] and "squares" in reference.source
