"""Callbacks for any generator's training: a stop at the first non-finite
loss that names the step, sample images to TensorBoard, and a checkpoint of
the training state that a kill at any instant leaves consistent."""

import glob
import math
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kd_gan._io import file_digest, read_json, write_json
from kd_gan.errors import InputError

from kd_gan.models.any_generator import generate


def _iterations(optimizer):
    """The optimizer's step count as an int (None without one); under a
    distribution strategy the variable is a mirrored one, read as a tensor."""
    return None if optimizer is None else int(keras.ops.convert_to_numpy(optimizer.iterations.value))


def _seconds(value):
    """A recorded count of seconds as a float; None when absent or not a finite count."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops a stage at the first NaN or infinite loss, naming stage and step.

    With `steps_per_execution` > 1 Keras calls back once per block of steps,
    and a loss is the epoch's running mean: the first bad step is then known
    only to lie after the last call that saw finite losses, so the message
    names that range of steps.
    """

    def __init__(self, stage):
        super().__init__()
        self.stage = stage
        self.epoch = 0
        self._finite_through = 0  # Steps of this epoch known to have finite losses.

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self._finite_through = 0

    def on_train_batch_end(self, batch, logs=None):
        for key, value in (logs or {}).items():
            if not math.isfinite(float(np.mean(value))):
                first, last = self._finite_through + 1, batch + 1
                steps = f"step {last}" if first == last else f"one of steps {first}-{last}"
                raise FloatingPointError(
                    f"Stage {self.stage!r}: {key} became {float(np.mean(value))} at epoch {self.epoch + 1}, "
                    f"{steps}. Lower the learning rate or check the data."
                )
        self._finite_through = batch + 1


class SampleImages(keras.callbacks.Callback):
    """Writes the generator's images for fixed z to TensorBoard after each epoch."""

    def __init__(self, generator, z, log_dir):
        super().__init__()
        self.generator = generator
        self.z = z
        self.log_dir = log_dir

    def on_epoch_end(self, epoch, logs=None):
        images = (np.asarray(generate(self.generator, self.z)) + 1.0) / 2.0
        writer = tf.summary.create_file_writer(self.log_dir)
        with writer.as_default():
            tf.summary.image("samples", np.clip(images, 0.0, 1.0), step=epoch + 1, max_outputs=len(images))
        writer.close()


class TrainingCheckpoint(keras.callbacks.Callback):
    """Backs up the training state after every epoch and restores it when a
    stopped fit starts again (Keras' `BackupAndRestore`, kill-safe).

    After each epoch the model's and its optimizers' variables go to a file of
    their own, `epoch-<n>.weights.h5`; then `training_metadata.json`, written
    atomically, names that file with its sha256, the epoch and the optimizer's
    step count, and the seconds the fit has trained up to that epoch over
    every invocation (`resume_state`), so a resumed stage's time is whole.
    The metadata is the commit point: a kill before it leaves the
    previous epoch's checkpoint in force, a kill after it the new one. A
    checkpoint that cannot be read or whose file does not match its record is
    discarded with a warning (`resume_epoch`), so the stage starts again; one
    whose optimizer step disagrees with its epoch is refused.

    Args:
        backup_dir: the checkpoint's folder (deleted when the fit finishes).
        steps_per_epoch: steps of one epoch (the restored optimizer's step
            count must be `epoch * steps_per_epoch`).
        name: what trains, for messages.
    """

    METADATA = "training_metadata.json"
    LEGACY_WEIGHTS = "latest.weights.h5"  # Keras' BackupAndRestore file, of folders written before.

    def __init__(self, backup_dir, steps_per_epoch, name="the model", started=None):
        super().__init__()
        self.backup_dir = backup_dir
        self.steps_per_epoch = int(steps_per_epoch)
        self.name = name
        self.started = started  # `time.time()` this invocation's time counts from (default: the fit's start).

    @classmethod
    def resume_epoch(cls, backup_dir, name="the model"):
        """Epochs finished in `backup_dir`'s checkpoint: 0 without one, and
        0 (the checkpoint discarded, with a warning) when it is unreadable or
        its weights do not match their record."""
        return cls.resume_state(backup_dir, name)[0]

    @classmethod
    def resume_state(cls, backup_dir, name="the model"):
        """`(epochs, seconds)` of `backup_dir`'s checkpoint, read once: the
        epochs finished (as `resume_epoch`) and the seconds trained up to
        them over every invocation; `(0, 0.0)` without a checkpoint, seconds
        None where it did not record them (written before it did)."""
        state = cls._state(backup_dir, name)
        return (state["epoch"], _seconds(state.get("train_seconds"))) if state else (0, 0.0)

    @classmethod
    def _state(cls, backup_dir, name):
        path = os.path.join(backup_dir, cls.METADATA)
        if not os.path.isfile(path):
            return None
        try:
            state = read_json(path)
            epoch = state["epoch"]
            if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
                raise ValueError(f"epoch {epoch!r} is not a count of epochs")
            weights = os.path.join(backup_dir, state.get("weights", cls.LEGACY_WEIGHTS))
            if "sha256" in state:
                if file_digest(weights) != state["sha256"]:
                    raise ValueError(f"{weights} is not the file its record names (sha256 differs)")
            else:  # A checkpoint of Keras' BackupAndRestore: a readable HDF5 file at least.
                import h5py

                with h5py.File(weights, "r") as file:
                    file.visit(lambda item: None)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            logging.warning(
                "The checkpoint of %s in %s cannot be resumed (%s): discarded; %s starts again.",
                name, backup_dir, error, name,
            )
            shutil.rmtree(backup_dir, ignore_errors=True)
            return None
        return {**state, "weights_path": weights}

    def on_train_begin(self, logs=None):
        self._started = time.time() if self.started is None else self.started
        state = self._state(self.backup_dir, self.name)
        # Unknown (None) stays unknown through later checkpoints of the stage.
        self._carried = _seconds(state.get("train_seconds")) if state else 0.0
        if not state:
            return
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self.model.load_weights(state["weights_path"])
        epoch = state["epoch"]
        steps = _iterations(optimizer)
        expected = state.get("iterations")
        expected = epoch * self.steps_per_epoch if expected is None else expected
        if steps is not None and steps != expected:
            raise InputError(
                f"The checkpoint of {self.name} in {self.backup_dir} says epoch {epoch} ({expected} steps) but its "
                f"optimizer has taken {steps} steps: it mixes files of different epochs. Delete {self.backup_dir} "
                "to train the stage again."
            )
        self.model._initial_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch-{epoch + 1}.weights.h5"
        temporary = os.path.join(self.backup_dir, f"epoch-{epoch + 1}.partial.weights.h5")
        self.model.save_weights(temporary, overwrite=True)
        os.replace(temporary, os.path.join(self.backup_dir, name))
        optimizer = self.model.optimizer
        write_json(os.path.join(self.backup_dir, self.METADATA), {
            "epoch": epoch + 1,
            "batch": 0,
            "weights": name,
            "sha256": file_digest(os.path.join(self.backup_dir, name)),
            "iterations": _iterations(optimizer),
            "train_seconds": None if self._carried is None else round(self._carried + time.time() - self._started, 2),
        })
        # The record now names the new file: the older ones (and Keras' legacy file) can go.
        for path in glob.glob(os.path.join(self.backup_dir, "*.weights.h5")):
            if os.path.basename(path) != name:
                os.remove(path)

    def on_train_end(self, logs=None):
        shutil.rmtree(self.backup_dir, ignore_errors=True)
