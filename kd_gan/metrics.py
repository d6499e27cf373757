"""Image-quality metrics: Inception Score, FID, sharpness, and latent fidelity.

The numbers are the standard ones computed the standard way:

* **Inception Score** `exp(E_x KL(p(y|x) || p(y)))` from a classifier's logits
  (tf-gan's `classifier_score_from_logits`). With the MNIST classifier it is
  the "MNIST score" (at most 10, the number of classes).
* **FID** `||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))` between the
  classifier activations of two image sets (tf-gan's
  `frechet_classifier_distance_from_activations`, in float64). FID is biased by
  the sample count: compare FIDs only at equal counts; every result carries it.
* **Variance of Laplacian** (VoL, the paper's sharpness measure): the variance
  of the 3x3 Laplacian of each grey image in [0, 255], averaged over images.
  Blurrier images score lower.
* **Latent fidelity**: student-vs-teacher MSE and PSNR on held-out z, along
  linear interpolations between latent pairs, and FID(student, teacher) on the
  same z.

Classifiers: MNIST uses a small CNN trained here on MNIST (`MnistClassifier`:
logits for the score, penultimate activations for FID, as tf-gan's MNIST
example does); CIFAR-10 and CelebA use the standard FID Inception (`pool_3`
activations; logits when the network has them), from TF-Hub or a local
SavedModel (`--inception_path` / `KD_GAN_INCEPTION`).
"""

import hashlib
import json
import math
import os
import sys

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kd_gan import data, tfgan

INCEPTION_TFHUB = "https://tfhub.dev/tensorflow/tfgan/eval/inception/1"
INCEPTION_SIZE = 299
NO_LOGITS_NOTE = (
    "not computed: the classifier {name} has no logits (a pool_3-only FID network); "
    "the Inception Score needs the full Inception's logits (TF-Hub tfgan/eval/inception/1)"
)


# ---------------------------------------------------------------- metric math


def inception_score(logits):
    """Inception Score from logits `[N, classes]` (tf-gan)."""
    return float(tfgan.classifier_score_from_logits(tf.convert_to_tensor(logits, tf.float64)))


def frechet_distance(activations1, activations2):
    """FID from two activation sets `[N, D]`, in float64 (tf-gan)."""
    return float(
        tfgan.frechet_classifier_distance_from_activations(
            tf.convert_to_tensor(activations1, tf.float64), tf.convert_to_tensor(activations2, tf.float64)
        )
    )


_LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32).reshape(3, 3, 1, 1)


def variance_of_laplacian(images):
    """Mean over images of the variance of the Laplacian of the grey image.

    Args:
        images: `[N, H, W, C]` in [-1, 1].
    """
    grey = tf.reduce_mean((tf.convert_to_tensor(images, tf.float32) + 1.0) * 127.5, axis=-1, keepdims=True)
    laplacian = tf.nn.conv2d(grey, _LAPLACIAN, strides=1, padding="VALID")
    return float(tf.reduce_mean(tf.math.reduce_variance(laplacian, axis=[1, 2, 3])))


def psnr(mse, peak_to_peak=2.0):
    """PSNR in dB of a mean squared error on images spanning `peak_to_peak` ([-1, 1]: 2)."""
    return float("inf") if mse == 0 else float(10 * math.log10(peak_to_peak**2 / mse))


# ---------------------------------------------------------------- classifiers


def preprocess_for_inception(images):
    """[-1, 1] images -> the FID graph's input: RGB 299x299, `(x - 128) / 128` of pixels x.

    Bilinear resize with `tf.compat.v1.image.resize_bilinear(align_corners=False)`,
    the graph's own op (TF2's `tf.image.resize` uses half-pixel centres and
    gives slightly different FIDs). Grey images are repeated to 3 channels.
    """
    pixels = (tf.convert_to_tensor(images, tf.float32) + 1.0) * 127.5
    if pixels.shape[-1] == 1:
        pixels = tf.repeat(pixels, 3, axis=-1)
    pixels = tf.compat.v1.image.resize_bilinear(pixels, [INCEPTION_SIZE, INCEPTION_SIZE], align_corners=False)
    return (pixels - 128.0) / 128.0


class InceptionClassifier:
    """The standard FID Inception, loaded once; `__call__` gives activations (and logits).

    Args:
        path: a local SavedModel mapping `[N, 299, 299, 3]` to a dict with
            `pool_3` (and `logits` if it has them). None: `$KD_GAN_INCEPTION`,
            else tf-gan's TF-Hub module (needs the network).
    """

    def __init__(self, path=None):
        path = path or os.environ.get("KD_GAN_INCEPTION")
        if path:
            if not os.path.isfile(os.path.join(path, "saved_model.pb")):
                raise FileNotFoundError(
                    f"No Inception SavedModel at {path!r} (expected saved_model.pb in it); "
                    "pass --inception_path / KD_GAN_INCEPTION pointing at one."
                )
            self.network = tf.saved_model.load(path)
            self.name = f"inception:{os.path.abspath(path)}"
        else:
            try:
                import tensorflow_hub as hub

                self.network = hub.load(INCEPTION_TFHUB)
            except Exception as error:
                raise FileNotFoundError(
                    f"Could not load the FID Inception from TF-Hub ({INCEPTION_TFHUB}): {error}. "
                    "Offline, pass --inception_path / set KD_GAN_INCEPTION to a local SavedModel."
                ) from error
            self.name = "inception:tfhub"
        self._call = self.network if callable(self.network) else self.network.signatures["default"]
        probe = self._call(tf.zeros((1, INCEPTION_SIZE, INCEPTION_SIZE, 3)))
        if "pool_3" not in probe:
            raise ValueError(f"The Inception network returns {sorted(probe)}; it must return 'pool_3'.")
        self.has_logits = "logits" in probe

    @tf.function(reduce_retracing=True)
    def _run(self, images):
        outputs = self._call(preprocess_for_inception(images))
        activations = tf.reshape(outputs["pool_3"], [tf.shape(images)[0], -1])
        logits = outputs["logits"] if self.has_logits else tf.zeros([tf.shape(images)[0], 0])
        return activations, logits

    def __call__(self, images):
        """`(activations [N, 2048], logits [N, 1008] or None)` for images in [-1, 1]."""
        activations, logits = self._run(tf.convert_to_tensor(images, tf.float32))
        return activations.numpy(), (logits.numpy() if self.has_logits else None)


MNIST_CLASSIFIER_VERSION = "mnist_cnn-v1"


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


class MnistClassifier:
    """The MNIST classifier, trained once on MNIST train and cached on disk.

    The cache file is named by a fingerprint of the architecture version, the
    training settings and the data it was trained on, so a change to any of
    them trains a new one. `test_accuracy` is measured on MNIST test after
    training and stored beside the model.
    """

    EPOCHS, BATCH_SIZE, SEED = 6, 128, 0  # 3 epochs gave 98.9% test accuracy; 6 pass 99%.

    def __init__(self, data_dir=None, cache_dir=None):
        builder = data.get_builder("mnist", data_dir, cache_dir)
        fingerprint = hashlib.sha256(
            json.dumps(
                [MNIST_CLASSIFIER_VERSION, self.EPOCHS, self.BATCH_SIZE, self.SEED, str(builder.data_dir)]
            ).encode()
        ).hexdigest()[:12]
        folder = os.path.join(data.cache_root(cache_dir), "classifiers")
        path = os.path.join(folder, f"{MNIST_CLASSIFIER_VERSION}-{fingerprint}.keras")
        if os.path.isfile(path):
            model = keras.saving.load_model(path, safe_mode=True)
            with open(f"{path}.json") as file:
                self.test_accuracy = json.load(file)["test_accuracy"]
        else:
            model, self.test_accuracy = self._train(data_dir, cache_dir)
            os.makedirs(folder, exist_ok=True)
            model.save(path)
            with open(f"{path}.json", "w") as file:
                json.dump({"test_accuracy": self.test_accuracy}, file)
        self.path = path
        self.name = f"{MNIST_CLASSIFIER_VERSION}-{fingerprint}"
        self.has_logits = True
        self._features = keras.Model(model.inputs, [model.get_layer("activations").output, model.output])
        self._run = tf.function(lambda images: self._features(images, training=False), reduce_retracing=True)

    def _train(self, data_dir, cache_dir):
        logging.info("Training the MNIST classifier (once; cached afterwards).")
        keras.utils.set_random_seed(self.SEED)

        def labelled(split, shuffle):
            builder = data.get_builder("mnist", data_dir, cache_dir)
            dataset = builder.as_dataset(split=split, shuffle_files=False)
            dataset = dataset.map(lambda e: (tf.cast(e["image"], tf.float32) / 127.5 - 1.0, e["label"])).cache()
            if shuffle:
                dataset = dataset.shuffle(60_000, seed=self.SEED)
            return dataset.batch(self.BATCH_SIZE).prefetch(tf.data.AUTOTUNE)

        model = build_mnist_classifier()
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        model.fit(labelled("train", True), epochs=self.EPOCHS, verbose=2)
        _, accuracy = model.evaluate(labelled("test", False), verbose=0)
        logging.info("MNIST classifier test accuracy: %.4f", accuracy)
        return model, float(accuracy)

    def __call__(self, images):
        activations, logits = self._run(tf.convert_to_tensor(images, tf.float32))
        return activations.numpy(), logits.numpy()


def classifier_for(dataset, inception_path=None, data_dir=None, cache_dir=None):
    """The classifier a dataset is scored with: the MNIST CNN, or the FID Inception."""
    if dataset == "mnist":
        return MnistClassifier(data_dir, cache_dir)
    return InceptionClassifier(inception_path)


# ---------------------------------------------------------------- evaluation


def generator_batches(generator, num_samples, batch_size=100, seed=0):
    """Batches of generated images for `num_samples` z drawn from (seed)."""
    from kd_gan.distill import generate, latent_size

    latent_dim = latent_size(generator)
    for start in range(0, num_samples, batch_size):
        count = min(batch_size, num_samples - start)
        z = tf.random.stateless_normal((count, latent_dim), seed=(seed, start))
        yield np.asarray(generate(generator, z))


def real_batches(dataset, split, num_samples, batch_size=100, data_dir=None, cache_dir=None):
    """The first `num_samples` real images of a split (files' order), in batches."""
    images = data.load_dataset(
        dataset, split, batch_size, data_dir=data_dir, shuffle=False, drop_remainder=False, cache_dir=cache_dir
    )
    taken = 0
    for batch in images:
        batch = batch.numpy()[: num_samples - taken]
        taken += len(batch)
        yield batch
        if taken >= num_samples:
            return
    if taken < num_samples:
        raise ValueError(f"{dataset} {split} has only {taken} images; asked for num_samples={num_samples}.")


def run_classifier(classifier, batches, num_samples, description="images"):
    """Activations, logits (or None) and VoL of all batches, with a progress bar."""
    # A live bar on a terminal; one line at the end in logs.
    progress = keras.utils.Progbar(num_samples, unit_name=description, verbose=1 if sys.stdout.isatty() else 2)
    activations, logits, sharpness = [], [], []
    for batch in batches:
        batch_activations, batch_logits = classifier(batch)
        activations.append(batch_activations)
        if batch_logits is not None:
            logits.append(batch_logits)
        sharpness.append(variance_of_laplacian(batch) * len(batch))
        progress.add(len(batch))
    count = sum(len(a) for a in activations)
    return np.concatenate(activations), (np.concatenate(logits) if logits else None), sum(sharpness) / count


def real_activations(classifier, dataset, split, num_samples, data_dir=None, cache_dir=None):
    """Real-data activations (and logits), cached as .npz by data set, split, classifier and count."""
    key = hashlib.sha256(json.dumps([dataset, split, classifier.name, num_samples]).encode()).hexdigest()[:16]
    path = os.path.join(data.cache_root(cache_dir), "stats", f"{dataset}-{split.replace('/', '_')}-{num_samples}-{key}.npz")
    if os.path.isfile(path):
        cached = np.load(path)
        return cached["activations"], (cached["logits"] if cached["logits"].size else None), float(cached["vol"])
    logging.info("Computing real-data statistics of %s %s (%d images), cached at %s", dataset, split, num_samples, path)
    batches = real_batches(dataset, split, num_samples, data_dir=data_dir, cache_dir=cache_dir)
    activations, logits, vol = run_classifier(classifier, batches, num_samples, "real images")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, activations=activations, logits=logits if logits is not None else np.zeros(0), vol=vol)
    return activations, logits, vol


def quality(activations, logits, vol, classifier, reference_activations, num_samples):
    """The metric record of one image set against reference (real) activations.

    With `reference_activations=None` the set is the reference itself: its FID
    is 0 by definition and is not computed.
    """
    score_name = "mnist_score" if isinstance(classifier, MnistClassifier) else "inception_score"
    record = {
        "num_samples": num_samples,
        "classifier": classifier.name,
        "fid": 0.0 if reference_activations is None else frechet_distance(reference_activations, activations),
        "vol": vol,
        score_name: inception_score(logits) if logits is not None else None,
    }
    if logits is None:
        record[f"{score_name}_note"] = NO_LOGITS_NOTE.format(name=classifier.name)
    return record


def evaluate_generator(generator, classifier, reference_activations, num_samples, seed=0):
    """Score, FID against the reference activations, and VoL of a generator."""
    activations, logits, vol = run_classifier(
        classifier, generator_batches(generator, num_samples, seed=seed), num_samples, "samples"
    )
    return quality(activations, logits, vol, classifier, reference_activations, num_samples), activations


def latent_fidelity(
    student, teacher, num_samples=1000, interpolation_pairs=50, interpolation_steps=8, seed=1, z=None
):
    """How closely the student reproduces the teacher on held-out z.

    Returns MSE and PSNR over `num_samples` z (seeded apart from training's
    draws, or the given `z`), and along `interpolation_pairs` straight lines
    between latent pairs at `interpolation_steps` points each.
    """
    from kd_gan.distill import generate, latent_size

    latent_dim = latent_size(student)
    if z is None:
        # The same seed gives both generators the same z, batch by batch.
        pairs = zip(generator_batches(student, num_samples, seed=seed), generator_batches(teacher, num_samples, seed=seed))
    else:
        num_samples = len(z)
        batches = [z[start : start + 100] for start in range(0, num_samples, 100)]
        pairs = ((np.asarray(generate(student, b)), np.asarray(generate(teacher, b))) for b in batches)
    squared_errors = [
        np.mean((student_images - teacher_images) ** 2, axis=(1, 2, 3)) for student_images, teacher_images in pairs
    ]
    mse = float(np.mean(np.concatenate(squared_errors)))
    ends = tf.random.stateless_normal((2, interpolation_pairs, latent_dim), seed=(seed, -1))
    weights = tf.reshape(tf.linspace(0.0, 1.0, interpolation_steps), (-1, 1, 1))
    path = tf.reshape((1 - weights) * ends[0] + weights * ends[1], (-1, latent_dim))
    path_mse = float(np.mean((np.asarray(generate(student, path)) - np.asarray(generate(teacher, path))) ** 2))
    return {
        "num_samples": num_samples,
        "mse": mse,
        "psnr_db": psnr(mse),
        "interpolation": {"pairs": interpolation_pairs, "steps": interpolation_steps, "mse": path_mse, "psnr_db": psnr(path_mse)},
    }


class EvaluationCallback(keras.callbacks.Callback):
    """Scores a generator every `every_n_epochs` epochs and logs it to TensorBoard.

    Args:
        generator: the generator being trained (e.g. a Distiller's student).
        classifier: a classifier from `classifier_for`.
        reference_activations: real-data activations (`real_activations`).
        num_samples: generated images per evaluation (state it with the FID).
        log_dir: TensorBoard folder; scalars are named `eval/<metric>`.
        every_n_epochs: evaluation period.
        seed: seed of the latent vectors (the same z at every evaluation).

    Example:

    ```python
    classifier = classifier_for("mnist", data_dir="../shared/data")
    reference, _, _ = real_activations(classifier, "mnist", "test", 1000, "../shared/data")
    distiller.fit(..., callbacks=[EvaluationCallback(student, classifier, reference, 1000, "logs/eval")])
    ```
    """

    def __init__(self, generator, classifier, reference_activations, num_samples, log_dir, every_n_epochs=1, seed=0):
        super().__init__()
        self.generator = generator
        self.classifier = classifier
        self.reference_activations = reference_activations
        self.num_samples = num_samples
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.writer = tf.summary.create_file_writer(log_dir)
        self.history = []

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        record, _ = evaluate_generator(self.generator, self.classifier, self.reference_activations, self.num_samples, self.seed)
        record["epoch"] = epoch + 1
        self.history.append(record)
        with self.writer.as_default():
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "num_samples"):
                    tf.summary.scalar(f"eval/{key}", value, step=epoch + 1)
        self.writer.flush()
        logging.info("Epoch %d evaluation (%d samples): %s", epoch + 1, self.num_samples, record)
