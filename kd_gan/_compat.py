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


def tflite_quantize_calibrated(calibrated_model, denylisted_nodes, per_tensor_dense_layers):
    """An int8 model from a calibrated float one, the `denylisted_nodes` kept in float.

    TensorFlow's MLIR quantizer (`tensorflow.lite.python.convert.mlir_quantize`,
    outside its public namespace), which the public `QuantizationDebugger`
    calls without the per-tensor option for dense layers.
    """
    from tensorflow.lite.python import convert

    return convert.mlir_quantize(
        calibrated_model,
        denylisted_nodes=list(denylisted_nodes),
        disable_per_channel_for_dense_layers=per_tensor_dense_layers,
    )
