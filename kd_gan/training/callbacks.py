"""Callbacks for any generator's training: a stop at the first non-finite
loss that names the step, and sample images to TensorBoard."""

import math

import keras
import numpy as np
import tensorflow as tf

from kd_gan.models.any_generator import generate


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops a stage at the first NaN or infinite loss, naming stage and step."""

    def __init__(self, stage):
        super().__init__()
        self.stage = stage
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        for key, value in (logs or {}).items():
            if not math.isfinite(float(np.mean(value))):
                raise FloatingPointError(
                    f"Stage {self.stage!r}: {key} became {float(np.mean(value))} at epoch {self.epoch + 1}, "
                    f"step {batch + 1}. Lower the learning rate or check the data."
                )


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
