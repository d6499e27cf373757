"""A run folder trusted by its user: it knows what data its models saw and admits one writer."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from conftest import write_idx

from kd_gan import experiment
from kd_gan.errors import InputError
from kd_gan.experiment import run_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(
    dataset="mnist", teacher_depths=(2,), student_depths=(1,), latent_dim=8, batch_size=4, scratch=False,
    teacher_epochs=1, student_epochs=1, steps_per_epoch=3, grid_columns=4, verbose=0, eval_samples=0,
)


def config(data_dir, output_dir, **changes):
    return experiment.ExperimentConfig(**{**TINY, **changes}, data_dir=str(data_dir), output_dir=str(output_dir))


def other_mnist(tiny_mnist, path):
    """The tiny MNIST with one training image changed."""
    shutil.copytree(tiny_mnist[0], path)
    train = tiny_mnist[1].copy()
    train[0] = 255 - train[0]
    write_idx(os.path.join(path, "mnist", "train-images-idx3-ubyte.gz"), train)
    return path


def test_other_data_in_a_finished_run_folder_are_refused_naming_both_and_the_same_data_elsewhere_resume(
    tiny_mnist, tmp_path, caplog
):
    run = tmp_path / "run"
    experiment.run(config(tiny_mnist[0], run))
    recorded = (run / "data.json").read_text()
    changed = other_mnist(tiny_mnist, tmp_path / "changed")
    with pytest.raises(InputError, match=r"holds models trained on other data: mnist/.*\(from '.*tiny_mnist.*'\), not mnist/.*\(from '.*changed'\)"):
        experiment.run(config(changed, run))
    assert (run / "data.json").read_text() == recorded  # Nothing of the folder rewritten.
    moved = shutil.copytree(tiny_mnist[0], tmp_path / "moved")
    caplog.set_level("INFO", logger="absl")
    experiment.run(config(moved, run))
    assert "already finished" in caplog.text
    # --overwrite starts the folder again on the other data.
    experiment.run(config(changed, run), overwrite=True)
    assert (run / "data.json").read_text() != recorded


HOLDER = """
import sys, time
from kd_gan.experiment import run_folder
with run_folder.writer_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_second_writer_stops_at_once_naming_the_holder_and_a_killed_holders_lock_is_taken_over(
    tiny_mnist, tmp_path, caplog
):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        with pytest.raises(InputError, match=rf"is being written by another run \(pid {holder.pid} on .*, started .*\)"):
            experiment.run(config(tiny_mnist[0], run))
        assert time.monotonic() - start < 30 and sorted(os.listdir(run)) == [".lock"]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    caplog.set_level("WARNING")
    experiment.run(config(tiny_mnist[0], run))
    assert f"taking over the writer lock of a run that did not finish (pid {holder.pid}" in caplog.text
    assert (run / "teachers" / "d2" / "generator.keras").is_file()
    # A run that finished leaves the lock free and unnamed: the next takes it without a warning.
    caplog.clear()
    experiment.run(config(tiny_mnist[0], run))
    assert "taking over" not in caplog.text


def test_the_lock_refuses_a_second_holder_in_the_same_process_too(tmp_path):
    with run_folder.writer_lock(str(tmp_path)):
        with pytest.raises(InputError, match=f"pid {os.getpid()}"):
            with run_folder.writer_lock(str(tmp_path)):
                pass
    with run_folder.writer_lock(str(tmp_path)):  # Released.
        pass


def test_an_unwritable_run_folder_is_one_line(tmp_path):
    below_a_file = tmp_path / "file"
    below_a_file.write_text("")
    with pytest.raises(InputError, match="Cannot write the run folder .*file/run"):
        with run_folder.writer_lock(str(below_a_file / "run")):
            pass


def test_data_are_identified_by_their_bytes_not_their_path(tiny_mnist, tmp_path):
    from kd_gan.data import loading

    first = loading.dataset_identity("mnist", "train", tiny_mnist[0])
    assert first == loading.dataset_identity("mnist", "train", shutil.copytree(tiny_mnist[0], tmp_path / "copy"))
    assert first != loading.dataset_identity("mnist", "train", other_mnist(tiny_mnist, tmp_path / "other"))
    assert first.endswith("|train|40")
    # A prepared tfds data dir (here the conversion, copied out of the cache) by its record, at any path.
    converted = os.path.dirname(os.path.dirname(loading.get_builder("mnist", tiny_mnist[0]).data_dir))
    here, there = (shutil.copytree(converted, tmp_path / name) for name in ("here", "there"))
    prepared = loading.dataset_identity("mnist", "train", str(here))
    assert "|info-" in prepared and prepared == loading.dataset_identity("mnist", "train", str(there))


# A kill at any instant of a checkpoint's writes --------------------------------

def teacher_weights(run):
    from kd_gan import load_generator

    return [w.numpy() for w in load_generator(str(run / "teachers" / "d2" / "generator.keras")).weights]


def assert_same_teacher(run, reference):
    for a, b in zip(teacher_weights(run), teacher_weights(reference)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def straight(tiny_mnist, tmp_path_factory):
    """An uninterrupted three-epoch teacher."""
    run = tmp_path_factory.mktemp("straight") / "run"
    experiment.run(config(tiny_mnist[0], run, teacher_epochs=3, student_depths=(), student_widths=((2, 2, 2),)))
    return run


def three_epochs(tiny_mnist, run):
    return config(tiny_mnist[0], run, teacher_epochs=3, student_depths=(), student_widths=((2, 2, 2),))


def kill_at(monkeypatch, target, name, when):
    """Replaces `target.name` by a function that raises KeyboardInterrupt when
    `when(call number, *args)` holds, and otherwise calls the original."""
    original = getattr(target, name)
    calls = {"count": 0}

    def interrupted(*args, **kwargs):
        calls["count"] += 1
        if when(calls["count"], *args):
            raise KeyboardInterrupt(f"killed in {name}")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, interrupted)


def on_call(number):
    return lambda count, *args: count == number


@pytest.mark.parametrize("point", ["saving the weights", "renaming the weights", "writing the record"])
def test_a_kill_between_a_checkpoints_writes_resumes_to_the_uninterrupted_weights(
    tiny_mnist, tmp_path, monkeypatch, straight, point
):
    from kd_gan.training import callbacks

    run = tmp_path / "run"
    if point == "saving the weights":  # A partial file of epoch 2 left behind.
        original = keras.Model.save_weights
        calls = {"count": 0}

        def partial(model, path, *args, **kwargs):
            calls["count"] += 1
            if calls["count"] == 2:
                open(path, "wb").write(b"\x89HDF\r\n")
                raise KeyboardInterrupt
            return original(model, path, *args, **kwargs)

        monkeypatch.setattr(keras.Model, "save_weights", partial)
    elif point == "renaming the weights":
        kill_at(monkeypatch, os, "replace", lambda count, source, *rest: str(source).endswith("epoch-2.partial.weights.h5"))
    else:
        kill_at(monkeypatch, callbacks, "write_json", on_call(2))
    with pytest.raises(KeyboardInterrupt):
        experiment.run(three_epochs(tiny_mnist, run))
    monkeypatch.undo()
    checkpoint = run / "teachers" / "d2" / "checkpoint"
    assert json.loads((checkpoint / "training_metadata.json").read_text())["epoch"] == 1
    experiment.run(three_epochs(tiny_mnist, run))
    assert_same_teacher(run, straight)


@pytest.mark.parametrize("damage", ["truncated weights", "empty record", "weights of another epoch"])
def test_a_damaged_checkpoint_is_discarded_with_a_warning_and_the_stage_trained_again(
    tiny_mnist, tmp_path, monkeypatch, straight, caplog, damage
):
    from kd_gan.training import callbacks

    run = tmp_path / "run"
    kill_at(monkeypatch, callbacks, "write_json", on_call(3))  # Killed at epoch 3: epochs 1 and 2 checkpointed.
    with pytest.raises(KeyboardInterrupt):
        experiment.run(three_epochs(tiny_mnist, run))
    monkeypatch.undo()
    checkpoint = run / "teachers" / "d2" / "checkpoint"
    weights = checkpoint / "epoch-2.weights.h5"
    if damage == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "empty record":
        (checkpoint / "training_metadata.json").write_text("")
    else:  # The record of epoch 2 naming a file of epoch 3 (its sha256 differs).
        (checkpoint / "epoch-3.weights.h5").rename(weights)
    caplog.set_level("WARNING")
    experiment.run(three_epochs(tiny_mnist, run))
    assert "cannot be resumed" in caplog.text and "starts again" in caplog.text
    assert_same_teacher(run, straight)


def test_a_checkpoint_of_keras_backup_whose_step_disagrees_with_its_epoch_is_refused(tiny_mnist, tmp_path, monkeypatch):
    from kd_gan.training import callbacks

    run = tmp_path / "run"
    kill_at(monkeypatch, callbacks, "write_json", on_call(3))
    with pytest.raises(KeyboardInterrupt):
        experiment.run(three_epochs(tiny_mnist, run))
    monkeypatch.undo()
    checkpoint = run / "teachers" / "d2" / "checkpoint"
    # The layout of Keras' BackupAndRestore: epoch-2 weights under epoch-1 metadata.
    (checkpoint / "epoch-2.weights.h5").rename(checkpoint / "latest.weights.h5")
    (checkpoint / "training_metadata.json").write_text(json.dumps({"epoch": 1, "batch": 0}))
    with pytest.raises(InputError, match=r"says epoch 1 \(3 steps\) but its optimizer has taken 6 steps.*Delete"):
        experiment.run(three_epochs(tiny_mnist, run))


def test_errors_of_the_machine_are_one_line_naming_the_path_and_other_os_errors_are_not_hidden():
    import errno

    from kd_gan.errors import machine_error_message

    full = OSError(errno.ENOSPC, "No space left on device", "/runs/x/latest.weights.h5")
    assert machine_error_message(full) == (
        "No space left on device: /runs/x/latest.weights.h5. Free some space and rerun: the run resumes."
    )
    assert machine_error_message(OSError(errno.EROFS, "Read-only file system", "/runs")) == "Read-only file system: /runs."
    assert machine_error_message(OSError(errno.EIO, "Input/output error")) is None
    assert machine_error_message(ValueError("a bug")) is None


def test_the_cli_answers_an_unusable_output_folder_in_one_line(tiny_mnist, tmp_path):
    below_a_file = tmp_path / "file"
    below_a_file.write_text("")
    command = [sys.executable, "run_experiment.py", f"--data_dir={tiny_mnist[0]}", f"--output_dir={below_a_file / 'run'}",
               "--teacher_depths=2", "--student_depths=1", "--latent_dim=8", "--eval_samples=0", "--preset=none"]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode != 0
    assert "Error: Cannot write the run folder" in completed.stderr and "Traceback" not in completed.stderr


def test_a_checkpoint_carries_the_seconds_trained_and_an_unrecorded_time_stays_unknown(tmp_path):
    from kd_gan._io import read_json, write_json
    from kd_gan.training.callbacks import TrainingCheckpoint

    backup = str(tmp_path / "checkpoint")
    metadata = os.path.join(backup, TrainingCheckpoint.METADATA)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    x, y = np.ones((4, 2), "float32"), np.ones((4, 1), "float32")

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt  # After the epoch's checkpoint.

    def one_epoch(seconds_before_fit):
        callbacks = [TrainingCheckpoint(backup, 1, started=time.time() - seconds_before_fit), Interrupt()]
        with pytest.raises(KeyboardInterrupt):
            model.fit(x, y, batch_size=4, epochs=5, verbose=0, callbacks=callbacks)
        return TrainingCheckpoint.resume_state(backup)

    assert TrainingCheckpoint.resume_state(backup) == (0, 0.0)
    epoch, first = one_epoch(100.0)
    assert epoch == 1 and 100.0 <= first < 160.0
    epoch, second = one_epoch(50.0)  # Resumed: the earlier invocation's seconds carry over.
    assert epoch == 2 and second >= first + 50.0
    assert TrainingCheckpoint.resume_epoch(backup) == 2
    # A checkpoint written before it recorded the seconds: unknown, and still unknown a checkpoint later.
    state = read_json(metadata)
    del state["train_seconds"]
    write_json(metadata, state)
    assert TrainingCheckpoint.resume_state(backup) == (2, None)
    assert one_epoch(10.0) == (3, None)
    for bad in ("soon", -1.0, True):
        write_json(metadata, {**read_json(metadata), "train_seconds": bad})
        assert TrainingCheckpoint.resume_state(backup) == (3, None), bad
