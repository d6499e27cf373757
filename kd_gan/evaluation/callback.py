"""Scores during training: a generator scored every few epochs, to TensorBoard."""

import keras
import tensorflow as tf
from absl import logging

from kd_gan.evaluation import scoring


class EvaluationCallback(keras.callbacks.Callback):
    """Scores a generator every `every_n_epochs` epochs and logs it to TensorBoard.

    Args:
        generator: the generator being trained (e.g. a Distiller's student).
        classifier: a classifier from `classifiers.classifier_for`; for
            monitoring on a CPU with bfloat16 units,
            `classifier_for(dataset, path, precision="bfloat16")`, with a
            reference computed by that same classifier.
        reference: the real data's `ImageStatistics` (`scoring.dataset_statistics`).
        num_samples: generated images per evaluation (state it with the FID).
        log_dir: TensorBoard folder; scalars are named `eval/<metric>`.
        every_n_epochs: evaluation period.
        seed: seed of the latent vectors (the same z at every evaluation).

    Example:

    ```python
    classifier = classifiers.classifier_for("mnist")
    reference = scoring.dataset_statistics(classifier, "mnist", "test", data_dir="../shared/data")
    distiller.fit(..., callbacks=[EvaluationCallback(student, classifier, reference, 1000, "logs/eval")])
    ```
    """

    def __init__(self, generator, classifier, reference, num_samples, log_dir, every_n_epochs=1, seed=0):
        super().__init__()
        self.generator = generator
        self.classifier = classifier
        self.reference = reference
        self.num_samples = num_samples
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.writer = tf.summary.create_file_writer(log_dir)
        self.history = []

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        record = scoring.evaluate_generator(self.generator, self.classifier, self.reference, self.num_samples, self.seed)
        record["epoch"] = epoch + 1
        self.history.append(record)
        with self.writer.as_default():
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "num_samples", "reference_count"):
                    tf.summary.scalar(f"eval/{key}", value, step=epoch + 1)
        self.writer.flush()
        logging.info("Epoch %d evaluation (%d samples): %s", epoch + 1, self.num_samples, record)
