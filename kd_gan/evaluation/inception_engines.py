"""What runs the FID Inception: TensorFlow, or OpenVINO where it is installed,
each in float32 or bfloat16, picked per machine by `choose`.

Measured by `benchmarks/bench_inception.py` (docs/EVALUATION.md has the table
and the CPUs): OpenVINO's bfloat16 pass runs the network on a CPU's AMX tiles,
several times TensorFlow's float32 rate there, at an FID on the shared CIFAR-10
reference pair within 0.5% of float32's; TensorFlow's own bfloat16 is a
Grappler rewrite that leaves most of the graph in float32. On CPUs without
bfloat16 units `auto` stays in float32 (bfloat16 is emulated there).

Every engine computes the same preprocessing (`classifiers.preprocess_for_inception`,
in TensorFlow) and the same network, so their features agree to rounding; the
engine and precision are still part of the classifier's name, so statistics of
different passes are never compared unnoticed.
"""

import importlib.util
import os

import numpy as np
from absl import logging

from kd_gan.errors import InputError
from kd_gan.models import precision as precision_lib

ENGINES = ("auto", "tensorflow", "openvino")
PRECISIONS = ("auto", "float32", "bfloat16")
# `auto` scores in bfloat16 on CPUs with bfloat16 units (`precision_lib.has_bfloat16_units`).
# Measured with OpenVINO: 5.8x TensorFlow's float32 pass on AMX, 2.1x on AVX512-BF16
# without AMX, each with the FID 0.36% from float32's (docs/EVALUATION.md).
# Without them bfloat16 is emulated (slower), so `auto` stays in float32 there.
_OPENVINO_PRECISION = {"float32": "f32", "bfloat16": "bf16"}
# What "auto" means where these are set: a machine's (or a test suite's) fixed pass.
ENGINE_VARIABLE, PRECISION_VARIABLE = "KD_GAN_INCEPTION_ENGINE", "KD_GAN_INCEPTION_PRECISION"


def openvino_installed():
    """Whether the `openvino` package can be imported."""
    return importlib.util.find_spec("openvino") is not None


def choose(engine="auto", precision="auto", has_gpu=None, flags=None, openvino=None, environment=None):
    """The `(engine, precision)` a pass runs with, from what was asked and the machine.

    `engine="auto"`: `$KD_GAN_INCEPTION_ENGINE` where set; else TensorFlow
    where it sees a GPU (fast there, and the bfloat16 rewrite is CPU-only),
    else OpenVINO when installed, else TensorFlow. `precision="auto"`:
    `$KD_GAN_INCEPTION_PRECISION` where set; else bfloat16 on a CPU with
    bfloat16 units (`precision_lib.has_bfloat16_units`) and no GPU, else float32.

    Raises:
        InputError: an unknown name, OpenVINO asked for but not installed, or
            bfloat16 asked for on a GPU.
    """
    environment = os.environ if environment is None else environment
    engine = environment.get(ENGINE_VARIABLE) or engine if engine == "auto" else engine
    precision = environment.get(PRECISION_VARIABLE) or precision if precision == "auto" else precision
    if engine not in ENGINES:
        raise InputError(f"Unknown Inception engine {engine!r}; choose one of {ENGINES}.")
    if precision not in PRECISIONS:
        raise InputError(f"Unknown Inception precision {precision!r}; choose one of {PRECISIONS}.")
    has_gpu = precision_lib.gpu_available() if has_gpu is None else has_gpu
    openvino = openvino_installed() if openvino is None else openvino
    flags = precision_lib.cpu_flags() if flags is None else flags
    if engine == "openvino" and not openvino:
        raise InputError("inception_engine='openvino' needs the openvino package: `pip install openvino`.")
    if engine == "auto":
        engine = "openvino" if openvino and not has_gpu else "tensorflow"
    if precision == "auto":
        precision = "bfloat16" if not has_gpu and precision_lib.has_bfloat16_units(flags) else "float32"
    if precision == "bfloat16" and has_gpu and engine == "tensorflow":
        raise InputError(
            "The bfloat16 Inception pass is for CPUs (TensorFlow's oneDNN rewrite, or OpenVINO); "
            "on a GPU use precision='float32'."
        )
    return engine, precision


def network_name(base, engine, precision):
    """The classifier's name: `base` (the network's content) with the pass that computes it.

    TensorFlow float32 keeps the bare name (statistics cached before engines
    existed stay valid); TensorFlow bfloat16 `base-bfloat16`, as before;
    OpenVINO `base-openvino-<precision>`.
    """
    if engine == "openvino":
        return f"{base}-openvino-{precision}"
    return base if precision == "float32" else f"{base}-{precision}"


class OpenVinoInception:
    """The Inception SavedModel at `saved_model_dir`, converted and compiled by OpenVINO for the CPU.

    Called on preprocessed `[N, 299, 299, 3]` float32 arrays, it returns
    `{output name: array}` like the TensorFlow network's dict (`pool_3`, and
    `logits` where the graph has them).

    Raises:
        RuntimeError: OpenVINO cannot convert the SavedModel (the caller falls
            back to TensorFlow where the engine was not asked for by name).
    """

    def __init__(self, saved_model_dir, precision="float32"):
        import openvino

        if precision not in _OPENVINO_PRECISION:
            raise InputError(f"OpenVINO runs the Inception in {tuple(_OPENVINO_PRECISION)}; got {precision!r}.")
        if not os.path.isfile(os.path.join(saved_model_dir, "saved_model.pb")):
            raise FileNotFoundError(f"No SavedModel at {saved_model_dir!r} for OpenVINO to convert.")
        try:
            model = openvino.convert_model(saved_model_dir)
        except Exception as error:  # OpenVINO's conversion errors have no common type.
            raise RuntimeError(f"OpenVINO could not convert the Inception at {saved_model_dir}: {error}") from error
        # One stream on all cores: each call is one batch, run as fast as one batch can be.
        config = {"INFERENCE_PRECISION_HINT": _OPENVINO_PRECISION[precision], "PERFORMANCE_HINT": "LATENCY"}
        self._compiled = openvino.Core().compile_model(model, "CPU", config)
        self._outputs = {name: output for output in self._compiled.outputs for name in output.get_names()}
        if "pool_3" not in self._outputs:
            raise RuntimeError(f"OpenVINO's conversion of {saved_model_dir} has outputs {sorted(self._outputs)}, no 'pool_3'")
        logging.info("FID Inception compiled by OpenVINO %s (%s)", openvino.__version__, precision)

    def __call__(self, images):
        results = self._compiled(np.ascontiguousarray(images, np.float32))
        return {name: np.asarray(results[output]) for name, output in self._outputs.items()}
