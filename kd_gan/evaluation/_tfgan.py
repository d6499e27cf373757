"""tf-gan's evaluation functions, importable on current TensorFlow.

`import tensorflow_gan` (2.1.0) fails on TF >= 2.16: its package `__init__`
imports the estimator code, which touches the removed `tf.estimator`. Its
`python/eval/classifier_metrics.py` itself runs fine on TF 2.21. So: use the
plain import where it works; otherwise load `classifier_metrics` (and the
`eval_utils` it imports) straight from tf-gan's files, registering empty
parent packages so its absolute imports resolve without running any
`__init__`.

Exports tf-gan's own functions, unchanged:
`classifier_score_from_logits` (Inception Score from logits),
`frechet_classifier_distance_from_activations` (FID from activations),
`trace_sqrt_product` (FID's `Tr((S_1 S_2)^(1/2))` term, for FID from stored
moments) and `kernel_classifier_distance_and_std_from_activations` (KID).
"""

import importlib
import importlib.util
import os
import sys
import types


def _load_classifier_metrics():
    try:
        import tensorflow_gan

        return tensorflow_gan.eval, "tensorflow_gan"
    except Exception:  # noqa: BLE001 -- any import failure means: load the files directly.
        for name in [n for n in sys.modules if n == "tensorflow_gan" or n.startswith("tensorflow_gan.")]:
            del sys.modules[name]  # Drop what the failed import left half-built.
    spec = importlib.util.find_spec("tensorflow_gan")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("tensorflow-gan is not installed: pip install tensorflow-gan==2.1.0")
    root = list(spec.submodule_search_locations)[0]
    for package, folder in (
        ("tensorflow_gan", root),
        ("tensorflow_gan.python", os.path.join(root, "python")),
        ("tensorflow_gan.python.eval", os.path.join(root, "python", "eval")),
    ):
        module = types.ModuleType(package)
        module.__path__ = [folder]  # A package whose __init__ is never run.
        sys.modules[package] = module
    return importlib.import_module("tensorflow_gan.python.eval.classifier_metrics"), "tensorflow_gan files"


_metrics, SOURCE = _load_classifier_metrics()
classifier_score_from_logits = _metrics.classifier_score_from_logits
frechet_classifier_distance_from_activations = _metrics.frechet_classifier_distance_from_activations
trace_sqrt_product = _metrics.trace_sqrt_product
kernel_classifier_distance_and_std_from_activations = _metrics.kernel_classifier_distance_and_std_from_activations
