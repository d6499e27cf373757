"""The networks that feed the metrics: the FID Inception and the MNIST classifier.

Each is loaded once and called on batches of images in [-1, 1]; it returns
`(activations, logits or None)` and has a `name` that identifies the network
by its files' content (so cached statistics follow the network, not the folder
it sits in).

* **Inception** (CIFAR-10, CelebA, image folders): the standard FID network's
  `pool_3` (2048-d), from TF-Hub (`tfgan/eval/inception/1`) or a local
  SavedModel (`--inception_path` / `KD_GAN_INCEPTION`); logits when it has them.
* **MNIST** (`mnist`): a small CNN shipped inside the package
  (`kd_gan/evaluation/assets/mnist_classifier.keras`, trained by
  `python tools/train_mnist_classifier.py --data_dir=...` with a fixed seed; its test
  accuracy and sha256 are in `mnist_classifier.json` beside it). Logits give the
  MNIST score, its 128-d penultimate layer the MNIST FID, as tf-gan's MNIST
  example does. Every machine scores MNIST with the same network, offline.
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kd_gan import _compat
from kd_gan.errors import InputError
from kd_gan._io import file_digest
from kd_gan.evaluation import inception_engines

INCEPTION_TFHUB = "https://tfhub.dev/tensorflow/tfgan/eval/inception/1"
INCEPTION_SIZE = 299
ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
MNIST_CLASSIFIER_PATH = os.path.join(ASSETS, "mnist_classifier.keras")


def preprocess_for_inception(images):
    """[-1, 1] images -> the FID graph's input: RGB 299x299, `(x - 128) / 128` of pixels x.

    Bilinear resize with `tf.compat.v1.image.resize_bilinear(align_corners=False)`,
    the graph's own op (TF2's `tf.image.resize` uses half-pixel centres and
    gives slightly different FIDs), from whatever size the images have. Grey
    images are repeated to 3 channels.
    """
    pixels = (tf.convert_to_tensor(images, tf.float32) + 1.0) * 127.5
    if pixels.shape[-1] == 1:
        pixels = tf.repeat(pixels, 3, axis=-1)
    with _compat.silenced_deprecations():  # Deprecated in TF 2 on purpose here: the FID graph's own op.
        pixels = tf.compat.v1.image.resize_bilinear(pixels, [INCEPTION_SIZE, INCEPTION_SIZE], align_corners=False)
    return (pixels - 128.0) / 128.0


INCEPTION_PRECISIONS = inception_engines.PRECISIONS
INCEPTION_ENGINES = inception_engines.ENGINES
# Grappler's oneDNN pass that runs a graph's convolutions and matrix products
# in bfloat16 (CPUs with AVX512-BF16 / AMX): how TensorFlow runs a frozen SavedModel in bfloat16.
_BF16_REWRITE = "auto_mixed_precision_onednn_bfloat16"
_LOADED = {}  # Networks loaded in this process, by folder (or TF-Hub address) and engine.


def _inception_source(path):
    """`(folder or None for TF-Hub, the network's name by content)` of the Inception at `path`."""
    if not path:
        return None, "inception-tfhub-tfgan-eval-1"
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise FileNotFoundError(
            f"No Inception SavedModel at {path!r} (expected saved_model.pb in it); "
            "pass --inception_path / KD_GAN_INCEPTION pointing at one."
        )
    key = ("digest", os.path.realpath(path))
    if key not in _LOADED:
        # Named by content: the same network in another folder shares cached statistics.
        _LOADED[key] = f"inception-{file_digest(os.path.join(path, 'saved_model.pb'), os.path.join(path, 'variables'))[:12]}"
    return path, _LOADED[key]


def _tfhub_error(error):
    return FileNotFoundError(
        f"Could not load the FID Inception from TF-Hub ({INCEPTION_TFHUB}): {error}. "
        "Offline, pass --inception_path / set KD_GAN_INCEPTION to a local SavedModel."
    )


def inception_network(path=None):
    """The FID Inception as a TensorFlow callable (`[N, 299, 299, 3]` -> dict with `pool_3`)
    and its name; loaded once per process.

    What differentiable uses take (the perceptual distillation loss): the
    graph itself, in float32, whatever engine scores. `path`: a local
    SavedModel; None: `$KD_GAN_INCEPTION`, else TF-Hub.
    """
    folder, name = _inception_source(path or os.environ.get("KD_GAN_INCEPTION"))
    key = ("tensorflow", os.path.realpath(folder) if folder else INCEPTION_TFHUB)
    if key not in _LOADED:
        if folder:
            network = tf.saved_model.load(folder)
        else:
            try:
                import tensorflow_hub as hub

                network = hub.load(INCEPTION_TFHUB)
            except Exception as error:
                raise _tfhub_error(error) from error
        _LOADED[key] = network if callable(network) else network.signatures["default"]
    return _LOADED[key], name


def _openvino_network(folder, precision):
    """The Inception compiled by OpenVINO (TF-Hub's module fetched to its cache first); once per process."""
    if folder is None:
        try:
            import tensorflow_hub as hub

            folder = hub.resolve(INCEPTION_TFHUB)
        except Exception as error:
            raise _tfhub_error(error) from error
    key = ("openvino", os.path.realpath(folder), precision)
    if key not in _LOADED:
        _LOADED[key] = inception_engines.OpenVinoInception(folder, precision)
    return _LOADED[key]


class InceptionClassifier:
    """The standard FID Inception, loaded once per process; `__call__` gives activations (and logits).

    Args:
        path: a local SavedModel mapping `[N, 299, 299, 3]` to a dict with
            `pool_3` (and `logits` if it has them). None: `$KD_GAN_INCEPTION`,
            else tf-gan's TF-Hub module (needs the network).
        precision: "auto" (see `inception_engines.choose`: bfloat16 on CPUs
            with bfloat16 units and no GPU, else float32), "float32" (the
            standard) or "bfloat16" (the network's convolutions in bfloat16;
            FID within 0.5% of float32's on the shared reference pair,
            docs/EVALUATION.md).
        engine: "auto" (OpenVINO on a CPU where it is installed, else
            TensorFlow), "tensorflow" or "openvino". An OpenVINO pass that
            cannot convert the network falls back to TensorFlow with a warning
            unless asked for by name.

    Attributes:
        engine, precision: the pass chosen.
        name: the network's content fingerprint with the engine and precision
            (`inception_engines.network_name`): statistics of different passes
            are never mixed.
    """

    def __init__(self, path=None, precision="auto", engine="auto"):
        asked_engine, asked_precision = engine, precision
        engine, precision = inception_engines.choose(engine, precision)
        if precision == "bfloat16":
            from kd_gan.models.precision import check_hardware

            check_hardware("bfloat16")  # Warns where the CPU lacks bfloat16 units (then it is slower).
        self.score_name = score_name("cifar10")
        folder, base = _inception_source(path or os.environ.get("KD_GAN_INCEPTION"))
        self._openvino = None
        if engine == "openvino":
            try:
                self._openvino = _openvino_network(folder, precision)
            except (RuntimeError, ValueError) as error:  # Conversion, or a graph OpenVINO reads otherwise.
                if asked_engine == "openvino":
                    raise InputError(str(error)) from error
                logging.warning("%s; scoring with TensorFlow instead.", error)
                engine, precision = inception_engines.choose("tensorflow", asked_precision)
        if engine == "tensorflow":
            self._call, _ = inception_network(folder)
        self.engine, self.precision = engine, precision
        self.name = inception_engines.network_name(base, engine, precision)
        probe = self._network(tf.zeros((1, INCEPTION_SIZE, INCEPTION_SIZE, 3)))
        if "pool_3" not in probe:
            raise ValueError(f"The Inception network returns {sorted(probe)}; it must return 'pool_3'.")
        self.has_logits = "logits" in probe
        self.dimension = int(np.size(probe["pool_3"]))

    def _network(self, images):
        if self._openvino is not None:
            return self._openvino(np.asarray(images))
        return self._call(images)

    @tf.function(reduce_retracing=True)
    def _run(self, images):
        outputs = self._call(preprocess_for_inception(images))
        activations = tf.reshape(outputs["pool_3"], [tf.shape(images)[0], -1])
        logits = outputs["logits"] if self.has_logits else tf.zeros([tf.shape(images)[0], 0])
        return activations, logits

    @tf.function(reduce_retracing=True)
    def _preprocess(self, images):
        return preprocess_for_inception(images)

    def __call__(self, images):
        """`(activations [N, 2048], logits [N, 1008] or None)` for images in [-1, 1]."""
        images = tf.convert_to_tensor(images, tf.float32)
        if self._openvino is not None:
            outputs = self._openvino(self._preprocess(images).numpy())
            activations = outputs["pool_3"].reshape(len(outputs["pool_3"]), -1)
            return activations, (outputs["logits"] if self.has_logits else None)
        if self.precision == "bfloat16":
            # Graph rewrites apply when a function is first run for a shape: every
            # call runs with the rewrite on, and only this function's graphs get it.
            previous = tf.config.optimizer.get_experimental_options().get(_BF16_REWRITE, False)
            tf.config.optimizer.set_experimental_options({_BF16_REWRITE: True})
            try:
                activations, logits = self._run(images)
            finally:
                tf.config.optimizer.set_experimental_options({_BF16_REWRITE: previous})
        else:
            activations, logits = self._run(images)
        return activations.numpy(), (logits.numpy() if self.has_logits else None)


MNIST_CLASSIFIER_VERSION = "mnist_cnn-v1"
class MnistClassifier:
    """The MNIST classifier shipped with the package (see module doc).

    Args:
        path: a `.keras` file of the shipped network's architecture (its layer
            `activations` feeds FID; `tools/train_mnist_classifier.py` trains it);
            default the packaged one. Its record (`<path minus .keras>.json`,
            test accuracy and sha256) is read when present.

    Raises:
        FileNotFoundError: no file at `path`.
        InputError: the packaged file's sha256 differs from its record.
    """

    def __init__(self, path=None):
        path = path or MNIST_CLASSIFIER_PATH
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"No MNIST classifier at {path!r}: the package ships it as {MNIST_CLASSIFIER_PATH}; "
                "train one with `python tools/train_mnist_classifier.py --data_dir=DIR --output=PATH.keras`."
            )
        sha256 = file_digest(path)
        record_path = os.path.splitext(path)[0] + ".json"
        record = {}
        if os.path.isfile(record_path):
            with open(record_path) as file:
                record = json.load(file)
            if record.get("sha256") not in (None, sha256):
                raise InputError(
                    f"{path} has sha256 {sha256}, not the {record['sha256']} recorded in {record_path}: "
                    "the file was changed or damaged."
                )
        model = keras.saving.load_model(path, safe_mode=True)
        self.path = path
        self.sha256 = sha256
        self.test_accuracy = record.get("test_accuracy")
        self.name = f"{MNIST_CLASSIFIER_VERSION}-{sha256[:12]}"
        self.has_logits = True
        self.score_name = score_name("mnist")
        self.dimension = model.get_layer("activations").output.shape[-1]
        self._features = keras.Model(model.inputs, [model.get_layer("activations").output, model.output])
        self._run = tf.function(lambda images: self._features(images, training=False), reduce_retracing=True)

    def __call__(self, images):
        images = tf.convert_to_tensor(images, tf.float32)
        if images.shape[1:] != (28, 28, 1):
            raise InputError(f"The MNIST classifier takes 28x28x1 images; got shape {tuple(images.shape)}.")
        activations, logits = self._run(images)
        return activations.numpy(), logits.numpy()


def score_name(dataset):
    """The name of the score a data set's classifier gives (the one helper that names it)."""
    return "mnist_score" if dataset == "mnist" else "inception_score"


def classifier_for(dataset, inception_path=None, precision="auto", engine="auto"):
    """The classifier a dataset is scored with: the MNIST CNN, or the FID Inception
    (`precision` and `engine` as `InceptionClassifier`'s)."""
    if dataset == "mnist":
        if precision not in ("auto", "float32"):
            raise InputError(f"MNIST is scored by the shipped float32 CNN; precision={precision!r} is for the Inception only.")
        return MnistClassifier()
    return InceptionClassifier(inception_path, precision, engine)
