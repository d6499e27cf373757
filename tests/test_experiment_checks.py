"""The experiment's objectives, weight average and up-front checks, on a tiny setting."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import weights_of

from kd_gan import Generator, experiment, load_generator
from kd_gan.experiment import run_folder
from kd_gan.errors import InputError
from kd_gan.models.any_generator import check_generator

TINY = dict(
    dataset="mnist", teacher_depths=(2,), student_depths=(1,), latent_dim=8, batch_size=4,
    teacher_epochs=1, student_epochs=1, steps_per_epoch=3, grid_columns=4, verbose=0, eval_samples=0,
)
MNIST = (28, 28, 1)


def tiny_config(tiny_mnist, output_dir, **changes):
    return experiment.ExperimentConfig(**{**TINY, **changes}, data_dir=tiny_mnist[0], output_dir=str(output_dir))


def constant_generator(value, latent_dim=8):
    """A generator whose every pixel is `value`."""
    return keras.Sequential([
        keras.Input((latent_dim,)),
        keras.layers.Dense(28 * 28, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(value)),
        keras.layers.Reshape(MNIST),
    ])


def _raises(_):
    raise ValueError("no such signature")


@pytest.mark.parametrize(
    "generator, message",
    [
        (Generator(16, MNIST, 1), "takes z of size 16; this run's latent_dim is 8"),
        (Generator(8, (32, 32, 3), 1), r"images of shape \(32, 32, 3\); this data set needs \(28, 28, 1\)"),
        (constant_generator(127.0), r"values in \[127, 127\].*\[-1, 1\]"),
        (constant_generator(float("nan")), "NaN or infinite"),
        (_raises, r"could not be called on z of shape \(64, 8\): no such signature"),
    ],
)
def test_a_generator_that_does_not_fit_the_data_is_named_with_the_reason(generator, message):
    with pytest.raises(InputError, match=message):
        check_generator(generator, 8, MNIST, source="the teacher")


def test_a_classifier_as_teacher_is_named_in_one_short_line_without_its_input():
    classifier = keras.Sequential([keras.Input(MNIST), keras.layers.Conv2D(4, 3), keras.layers.Flatten(), keras.layers.Dense(10)])
    with pytest.raises(InputError, match=r"takes inputs of shape \(None, 28, 28, 1\) \(is it a generator\?\)") as caught:
        check_generator(classifier, 8, MNIST, source="the teacher")
    message = str(caught.value)
    assert len(message) <= 500 and "\n" not in message and "0." not in message  # Keras' error echoes all 64 z.


def test_a_fitting_generator_passes():
    check_generator(Generator(8, MNIST, 1), 8, MNIST)
    check_generator(constant_generator(-1.0), 8, MNIST)


def test_a_teacher_in_another_range_stops_the_run_before_anything_trains_or_is_scored(tiny_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("KD_GAN_CACHE_DIR", str(tmp_path / "cache"))  # Empty: no statistics from other tests.
    constant_generator(127.0).save(tmp_path / "teacher.keras")
    config = tiny_config(tiny_mnist, tmp_path / "run", teacher_path=str(tmp_path / "teacher.keras"), eval_samples=8)
    with pytest.raises(InputError, match="teacher_path=.*teacher.keras.*values in"):
        experiment.run(config)
    assert sorted(os.listdir(tmp_path / "run")) == [".lock"]  # Unclaimed: the corrected command needs no --overwrite.
    # The reference statistics were not computed either.
    assert not os.path.isdir(os.path.join(os.environ["KD_GAN_CACHE_DIR"], "stats"))


def test_overwrite_deletes_what_each_process_writes(tiny_mnist, tmp_path, monkeypatch):
    config = tiny_config(tiny_mnist, tmp_path)
    experiment.run(config)
    worker_dir = tmp_path / "workers" / "worker_1"
    experiment.run(tiny_config(tiny_mnist, worker_dir))  # What another worker of the run wrote.
    changed = tiny_config(tiny_mnist, tmp_path, seed=1)
    strategy = tf.distribute.get_strategy()
    # Another worker clears its own folder only.
    monkeypatch.setattr(run_folder, "is_chief", lambda strategy: False)
    monkeypatch.setattr(run_folder, "worker_output_dir", lambda strategy, output_dir: str(worker_dir))
    experiment.prepare_output_dir(changed, True, strategy)
    assert os.path.isfile(tmp_path / "teachers" / "d2" / "generator.keras")
    assert not os.path.exists(worker_dir / "teachers") and not os.path.exists(worker_dir / "config.json")
    with pytest.raises(ValueError, match="seed: 0 -> 1"):
        experiment.prepare_output_dir(changed, False, strategy)
    # The chief clears the run's folder; under several replicas the workers' folders are theirs.
    experiment.run(tiny_config(tiny_mnist, worker_dir))
    monkeypatch.setattr(run_folder, "is_chief", lambda strategy: True)
    experiment.prepare_output_dir(changed, True, _Replicas(2))
    assert not os.path.exists(tmp_path / "teachers") and not os.path.exists(tmp_path / "config.json")
    assert os.path.isfile(worker_dir / "config.json")
    experiment.prepare_output_dir(changed, True, _Replicas(1))
    assert not os.path.exists(tmp_path / "workers")


class _Replicas:
    """A strategy as far as `prepare_output_dir` looks: its replica count."""

    def __init__(self, count):
        self.num_replicas_in_sync = count


def test_objective_settings_resolve_and_are_recorded(tiny_mnist, tmp_path):
    config = tiny_config(tiny_mnist, tmp_path, objective="wgan-gp", critic_steps=2, ema_decay=0.5, student_depths=(1,), loss="joint")
    assert (config.learning_rate, config.d_learning_rate) == (1e-4, 1e-4)
    assert experiment.build_config(**{**TINY, "objective": "wgan-gp"}).critic_steps == 5
    assert experiment.build_config(**{**TINY, "learning_rate": 3e-4}).d_learning_rate == 3e-4
    results = experiment.run(config)
    recorded = json.loads((tmp_path / "config.json").read_text())
    assert {key: recorded[key] for key in ("objective", "critic_steps", "learning_rate", "d_learning_rate", "ema_decay")} == {
        "objective": "wgan-gp", "critic_steps": 2, "learning_rate": 1e-4, "d_learning_rate": 1e-4, "ema_decay": 0.5,
    }
    losses = {entry["name"]: entry["training"]["final_losses"] for entry in results["models"]}
    assert all(np.isfinite(value) for record in losses.values() for value in record.values())


def test_a_folder_from_before_the_objective_settings_resumes(tiny_mnist, tmp_path):
    config = tiny_config(tiny_mnist, tmp_path)
    experiment.run(config)
    path = tmp_path / "config.json"
    old = json.loads(path.read_text())
    for key in ("objective", "critic_steps", "d_learning_rate", "ema_decay"):
        del old[key]
    path.write_text(json.dumps(old))
    experiment.check_output_dir(config)  # Not refused: the missing settings had these values.
    with pytest.raises(ValueError, match="objective: 'ns' -> 'hinge'"):
        experiment.check_output_dir(tiny_config(tiny_mnist, tmp_path, objective="hinge"))


def test_a_finished_run_gains_its_scratch_gans_in_place_without_training_its_students_again(tiny_mnist, tmp_path):
    first = experiment.run(tiny_config(tiny_mnist, tmp_path, scratch=False))
    assert [entry["method"] for entry in first["models"]].count("scratch") == 0
    students = {entry["name"]: entry["path"] for entry in first["models"] if entry["method"] != "scratch"}
    before = {name: weights_of(load_generator(str(tmp_path / path))) for name, path in students.items()}
    second = experiment.run(tiny_config(tiny_mnist, tmp_path, scratch=True))
    assert [entry["method"] for entry in second["models"]].count("scratch") == 1
    for name, path in students.items():
        after = weights_of(load_generator(str(tmp_path / path)))
        assert all(np.array_equal(a, b) for a, b in zip(before[name], after)), name
    with pytest.raises(ValueError, match="seed: 0 -> 1"):  # Settings of the trained stages still may not change.
        experiment.check_output_dir(tiny_config(tiny_mnist, tmp_path, scratch=False, seed=1))


def test_every_generator_is_saved_with_its_averaged_weights(tiny_mnist, tmp_path):
    # The average does not change the steps a GAN takes: both runs go through the same
    # raw weights (equal losses), and every saved weight differs. (Students differ anyway:
    # they learn from the averaged teacher.)
    plain = experiment.run(tiny_config(tiny_mnist, tmp_path / "plain"))
    averaged = experiment.run(tiny_config(tiny_mnist, tmp_path / "ema", ema_decay=0.5))
    gans = [(a, b) for a, b in zip(plain["models"], averaged["models"]) if a["method"] in ("teacher", "scratch")]
    assert len(gans) == 2
    for a, b in gans:
        assert a["training"]["final_losses"] == pytest.approx(b["training"]["final_losses"], rel=1e-5)
        raw = load_generator(str(tmp_path / "plain" / a["path"]))
        saved = load_generator(str(tmp_path / "ema" / b["path"]))
        differs = [not np.allclose(x, y) for x, y in zip(weights_of(raw), weights_of(saved))]
        # Averaged trainable weights, and batch-norm statistics recomputed for them.
        assert all(differs), (a["name"], differs)


def test_cpu_preset_takes_each_data_sets_values_and_is_recorded(tiny_mnist, tmp_path):
    cifar = experiment.build_config("cpu", dataset="cifar10")
    assert (cifar.teacher_depths, cifar.student_depths, cifar.teacher_cache) == ((32,), (1, 2, 4), 50_000)
    assert (cifar.precision, cifar.inception_precision, cifar.ema_decay, cifar.eval_samples) == ("auto", "auto", 0.999, 10_000)
    mnist = experiment.build_config("cpu", dataset="mnist")
    assert (mnist.teacher_depths, mnist.inception_precision, mnist.latent_dim) == ((128,), "auto", 32)  # MNIST: its own float32 CNN.
    # A tiny run under the preset (sizes overridden) records the preset's settings.
    small = {key: value for key, value in TINY.items() if key != "dataset"}
    config = experiment.build_config("cpu", **small, dataset="mnist", teacher_cache=16, data_dir=tiny_mnist[0], output_dir=str(tmp_path))
    experiment.run(config)
    recorded = json.loads((tmp_path / "config.json").read_text())
    assert recorded["preset"] == "cpu" and recorded["precision"] == "auto" and recorded["ema_decay"] == 0.999
    assert recorded["teacher_cache"] == 16 and recorded["teacher_depths"] == [2]
