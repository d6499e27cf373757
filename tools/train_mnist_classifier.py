"""Trains the MNIST classifier the package ships (`kd_gan/evaluation/assets/`).

    python tools/train_mnist_classifier.py --data_dir=../shared/data [--output=PATH.keras]

Writes the `.keras` file and its record (`.json` beside it: test accuracy on
MNIST test, sha256 of the file, settings).
"""

import json
import os

import keras
import tensorflow as tf
from absl import app, flags, logging

from kd_gan._io import file_digest, write_json
from kd_gan.data import from_uint8
from kd_gan.data.loading import get_builder
from kd_gan.evaluation.classifiers import MNIST_CLASSIFIER_PATH, MNIST_CLASSIFIER_VERSION

MNIST_TRAINING = {"epochs": 6, "batch_size": 128, "seed": 0, "learning_rate": 1e-3}


def build_mnist_classifier():
    """A small CNN for 28x28x1 images in [-1, 1]; its `activations` layer feeds FID."""
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(32, 3, activation="relu")(inputs)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Dropout(0.25)(x)
    x = keras.layers.Flatten()(x)
    activations = keras.layers.Dense(128, activation="relu", name="activations")(x)
    x = keras.layers.Dropout(0.5)(activations)
    logits = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, logits, name="mnist_classifier")


def train_mnist_classifier(data_dir=None, output=MNIST_CLASSIFIER_PATH, cache_dir=None):
    """Trains the MNIST classifier with the fixed settings of `MNIST_TRAINING` and saves it.

    Writes `output` and its record (`.json` beside it: test accuracy on MNIST
    test, sha256 of the file, settings). Returns the record.
    """

    settings = MNIST_TRAINING
    keras.utils.set_random_seed(settings["seed"])
    builder = get_builder("mnist", data_dir, cache_dir)

    def labelled(split, shuffle):
        dataset = builder.as_dataset(split=split, shuffle_files=False)
        dataset = dataset.map(lambda e: (from_uint8(e["image"]), e["label"])).cache()
        if shuffle:
            dataset = dataset.shuffle(60_000, seed=settings["seed"])
        return dataset.batch(settings["batch_size"]).prefetch(tf.data.AUTOTUNE)

    model = build_mnist_classifier()
    model.compile(
        optimizer=keras.optimizers.Adam(settings["learning_rate"]),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(labelled("train", True), epochs=settings["epochs"], verbose=2)
    _, accuracy = model.evaluate(labelled("test", False), verbose=0)
    logging.info("MNIST classifier test accuracy: %.4f", accuracy)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    # Ship the network without its optimizer state (a third of the file).
    shipped = build_mnist_classifier()
    shipped.set_weights(model.get_weights())
    shipped.save(output)
    record = {
        "version": MNIST_CLASSIFIER_VERSION,
        "test_accuracy": float(accuracy),
        "sha256": file_digest(output),
        "training": settings,
        "data": "MNIST train (60,000), accuracy on MNIST test (10,000)",
    }
    write_json(os.path.splitext(output)[0] + ".json", record)
    return record


def main(argv):
    del argv
    record = train_mnist_classifier(flags.FLAGS.data_dir, flags.FLAGS.output)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    flags.DEFINE_string("data_dir", None, "MNIST files or tfds data dir (default: $KD_GAN_DATA_DIR, else tfds).")
    flags.DEFINE_string("output", MNIST_CLASSIFIER_PATH, "Where to write the classifier (.keras).")
    app.run(main)
