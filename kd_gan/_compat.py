"""Every private Keras / TensorFlow API the package touches, in one place, so a
version bump has one file to check."""

import keras
import tensorflow as tf
from tensorflow.python.util import deprecation as _deprecation


def silenced_deprecations():
    """A context in which TensorFlow's deprecation notices stay quiet (ops the
    FID graph uses on purpose)."""
    return _deprecation.silence()


def in_multi_worker_mode(strategy):
    """True for a `MultiWorkerMirroredStrategy` that spans several workers
    (TF exposes this only as a private method of the strategy's extended object)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


def is_graph_network(model):
    """Functional and Sequential models (rebuilt layer by layer); Keras keeps
    `Functional` out of its public namespace."""
    from keras.src.models.functional import Functional

    return isinstance(model, (Functional, keras.Sequential))


def tflite_schema():
    """The `.tflite` flatbuffer schema's Python object API (TensorFlow ships it
    under `tensorflow.lite.python`, outside its public namespace)."""
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def tflite_flatbuffer_utils():
    """TensorFlow's helpers that read and write `.tflite` flatbuffers
    (`tensorflow.lite.tools`, outside its public namespace)."""
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils
