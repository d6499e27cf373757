"""The experiment and its CLI on a tiny setting."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras
from kd_gan import Generator, count_parameters, experiment, load_generator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(
    dataset="mnist", teacher_depth=2, student_depth=1, latent_dim=8, batch_size=4,
    teacher_epochs=1, student_epochs=1, steps_per_epoch=3, grid_columns=4, verbose=0, eval_samples=0,
)


def test_cli_end_to_end_writes_models_grid_and_results(tiny_mnist, tmp_path):
    output_dir = tmp_path / "run"
    flags = [f"--{key}={value}" for key, value in {**TINY, "eval_samples": 8}.items()]
    command = [sys.executable, "run_experiment.py", *flags, "--loss=joint", f"--data_dir={tiny_mnist[0]}",
               f"--output_dir={output_dir}", "--export=tflite,saved_model", "--quantization=none,int8"]
    environment = dict(os.environ, KD_GAN_CACHE_DIR=str(tmp_path / "cache"))
    completed = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]

    results = json.loads((output_dir / "results.json").read_text())
    generators = {name: load_generator(str(output_dir / f"{name}.keras")) for name in experiment.STAGES}
    for name, generator in generators.items():
        entry = results["models"][name]
        assert entry["parameters"] == count_parameters(generator)
        assert entry["depth"] == generator.depth
        assert all(math.isfinite(v) for v in entry["final_losses"].values())
    assert set(results["models"]["student"]["final_losses"]) == {"student_loss", "mse", "g_loss", "d_loss"}
    assert results["compression_ratio"] == pytest.approx(
        count_parameters(generators["teacher"]) / count_parameters(generators["student"])
    )
    assert results["config"]["loss"] == "joint"
    assert json.loads((output_dir / "config.json").read_text()) == results["config"]
    # Metrics: the MNIST classifier (trained on the tiny data), 8 samples per model.
    evaluation = results["evaluation"]
    assert evaluation["real"]["num_samples"] == 8 and evaluation["real"]["split"] == "test"
    for name in experiment.STAGES:
        quality = evaluation["models"][name]
        assert quality["num_samples"] == 8 and quality["classifier"].startswith("mnist_cnn")
        assert 1.0 <= quality["mnist_score"] <= 10.0 and quality["fid"] >= 0 and quality["vol"] > 0
    assert evaluation["fidelity"]["student"]["mse"] > 0
    table = (output_dir / "results.md").read_text()
    assert "FID (n=8)" in table and "| student | 1 |" in table
    exported = results["export"]
    assert set(exported) == {"saved_model", "tflite_none", "tflite_int8"}
    assert exported["tflite_none"]["verification"]["max_abs_error"] <= 1e-4
    assert os.path.getsize(output_dir / "export" / "student.tflite") == exported["tflite_none"]["bytes"]
    assert os.path.isfile(output_dir / "export" / "student_savedmodel" / "saved_model.pb")
    # Grid: 3 rows (teacher, student, scratch) x 4 columns of 28x28 with 2-pixel padding.
    grid = tf.io.decode_png(tf.io.read_file(str(output_dir / "samples.png"))).numpy()
    assert grid.shape == (3 * 30 + 2, 4 * 30 + 2, 1)


def test_rerun_skips_finished_stages(tiny_mnist, tmp_path):
    config = experiment.ExperimentConfig(**TINY, data_dir=tiny_mnist[0], output_dir=str(tmp_path))
    experiment.run(config)
    stamps = {name: os.path.getmtime(tmp_path / f"{name}.keras") for name in experiment.STAGES}
    results = experiment.run(config)
    assert stamps == {name: os.path.getmtime(tmp_path / f"{name}.keras") for name in experiment.STAGES}
    assert results["models"]["student"]["final_losses"].keys() == {"mse"}


def test_mse_student_of_a_given_teacher(tiny_mnist, tmp_path):
    teacher = Generator(8, (28, 28, 1), 2)
    teacher.save(tmp_path / "teacher.keras")
    config = experiment.ExperimentConfig(
        **TINY, data_dir=tiny_mnist[0], output_dir=str(tmp_path / "run"), teacher_path=str(tmp_path / "teacher.keras")
    )
    results = experiment.run(config)
    assert results["models"]["teacher"]["path"] == str(tmp_path / "teacher.keras")
    assert not (tmp_path / "run" / "teacher.keras").exists()  # loaded, not trained
    z = np.random.normal(size=(2, 8)).astype("float32")
    np.testing.assert_array_equal(load_generator(str(tmp_path / "teacher.keras"))(z), teacher(z))


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(dataset="svhn"), "'svhn'"),
        (dict(loss="kl"), "'kl'"),
        (dict(student_depth=0), "student_depth=0"),
        (dict(steps_per_epoch=0), "steps_per_epoch=0"),
        (dict(learning_rate=-1.0), "learning_rate=-1.0"),
        (dict(export=("onnx",)), "export=\\('onnx',\\)"),
        (dict(quantization="int8"), "quantization='int8'"),
    ],
)
def test_config_rejects_bad_values(change, message):
    with pytest.raises(ValueError, match=message):
        experiment.ExperimentConfig(**{**TINY, **change})


def test_cli_rejects_unknown_dataset():
    completed = subprocess.run(
        [sys.executable, "run_experiment.py", "--dataset=svhn"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode != 0
    assert "svhn" in completed.stderr and "celeb_a" in completed.stderr


def test_non_finite_loss_stops_the_stage_naming_it():
    images = np.zeros((4, 28, 28, 1), "float32")
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss=lambda y, p: tf.reduce_mean(p) * np.nan)
    with pytest.raises(FloatingPointError, match=r"Stage 'teacher': loss became nan at epoch 1, step 1"):
        model.fit(images, np.zeros(4), batch_size=2, verbose=0, callbacks=[experiment.StopOnNonFinite("teacher")])


def test_interrupted_stage_resumes_from_its_last_epoch(tiny_mnist, tmp_path, monkeypatch):
    class InterruptAfterFirstEpoch(experiment.StopOnNonFinite):
        def on_epoch_end(self, epoch, logs=None):
            if self.stage == "teacher" and epoch == 0:
                raise KeyboardInterrupt  # Ctrl-C once epoch 1 is backed up.

    config = experiment.ExperimentConfig(
        **{**TINY, "teacher_epochs": 3}, data_dir=tiny_mnist[0], output_dir=str(tmp_path)
    )
    monkeypatch.setattr(experiment, "StopOnNonFinite", InterruptAfterFirstEpoch)
    with pytest.raises(KeyboardInterrupt):
        experiment.run(config)
    assert not (tmp_path / "teacher.keras").exists()
    monkeypatch.undo()
    monkeypatch.setenv("KD_GAN_CACHE_DIR", str(tmp_path / "cache"))
    results = experiment.run(config)
    # Epoch 1 is kept from the first run; epochs 2 and 3 ran after the restart.
    assert len(results["models"]["teacher"]["history"]["d_loss"]) == 3
    trained = load_generator(str(tmp_path / "teacher.keras"))
    assert count_parameters(trained) == results["models"]["teacher"]["parameters"]
    log = (tmp_path / "logs" / "teacher.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in log[1:]] == ["0", "1", "2"]
