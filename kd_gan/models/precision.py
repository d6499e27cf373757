"""Training precision: Keras mixed-precision policies by name, the hardware
check, and float32 copies of models trained in lower precision.

`precision="bfloat16"` trains with Keras' "mixed_bfloat16" policy: variables,
losses, batch-norm statistics and optimizer state stay float32, the layers
compute in bfloat16 (fast on CPUs with AMX or AVX512-BF16 and on recent GPUs).
`"float16"` ("mixed_float16") is for GPUs; its optimizers are wrapped in a
`keras.optimizers.LossScaleOptimizer` so small gradients do not underflow.

From user code, give the policy to the models you build:

```python
generator = Generator(128, (64, 64, 3), depth=32, dtype=policy("bfloat16"))
```

and save `float32_copy(generator)`, which ships and exports like any
float32 model.
"""

import functools

import keras
import tensorflow as tf
from absl import logging

from kd_gan import _compat
from kd_gan.errors import InputError

PRECISIONS = ("float32", "bfloat16", "float16")
_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
# CPU features with bfloat16 arithmetic (Linux /proc/cpuinfo flag names).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


TRAINING_PRECISIONS = ("auto",) + PRECISIONS  # What a run may ask for: "auto" is `resolve`d on the machine.


def resolve(precision, flags=None, has_gpu=None):
    """`precision`, with "auto" read as this machine's fast choice: bfloat16
    on a GPU or on a CPU with bfloat16 units (`BF16_CPU_FLAGS`: AMX-BF16,
    AVX512-BF16), float32 on other CPUs (which emulate bfloat16, slower than
    float32). Small steps still train in float32 on CPUs (`step_precision`)."""
    if precision != "auto":
        policy(precision)
        return precision
    if has_gpu is None:
        has_gpu = gpu_available()
    flags = cpu_flags() if flags is None else flags
    return "bfloat16" if has_gpu or has_bfloat16_units(flags) else "float32"


def has_bfloat16_units(flags):
    """Whether CPU `flags` include bfloat16 arithmetic (`BF16_CPU_FLAGS`)."""
    return bool(set(BF16_CPU_FLAGS) & set(flags))


def policy(precision):
    """The Keras dtype policy name of `precision` ("float32", "bfloat16", "float16")."""
    if precision not in _POLICIES:
        raise InputError(f"Unknown precision {precision!r}; choose one of {PRECISIONS}.")
    return _POLICIES[precision]


def output_dtype(dtype_policy):
    """The dtype of a model's last layer: float32 under a mixed policy (Keras'
    advice: the output, and the loss computed from it, stay float32)."""
    return keras.dtype_policies.get(dtype_policy).variable_dtype


@functools.lru_cache(maxsize=None)
def cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags (empty where they cannot be read, e.g. not Linux)."""
    try:
        with open(path) as file:
            for line in file:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


# The CPU features a speed record names: what decides which kernels run fast.
SPEED_CPU_FLAGS = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx512f", "avx2", "avx_vnni")


@functools.lru_cache(maxsize=None)
def cpu_record(path="/proc/cpuinfo"):
    """The CPU a measurement ran on: `{"vendor", "model", "flags", "cores"}`.

    `flags` lists the `SPEED_CPU_FLAGS` the CPU has (AMX, AVX512 and VNNI
    units); every speed record carries it, since the same file or pass runs
    at different relative speeds on CPUs with and without them.
    """
    import os

    fields = {}
    try:
        with open(path) as file:
            for line in file:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = cpu_flags(path)
    return {
        "vendor": fields.get("vendor_id", "unknown"),
        "model": fields.get("model name", "unknown"),
        "flags": [flag for flag in SPEED_CPU_FLAGS if flag in flags],
        "cores": os.cpu_count(),
    }


def cpu_label(record=None):
    """`cpu_record()` in one line, e.g. "Intel(R) Xeon(R) Processor (GenuineIntel; amx_bf16 ...; 2 cores)"."""
    record = record or cpu_record()
    return f"{record['model']} ({record['vendor']}; {' '.join(record['flags']) or 'no AMX/AVX512'}; {record['cores']} cores)"


# Training steps smaller than this (multiply-accumulates per step, batch
# included) gain nothing from bfloat16 on CPUs, or lose: the casts around each
# op cost what the faster arithmetic saves. Measured on a 2-core Xeon with AMX
# (benchmarks/bench_stage_precision.py, docs/RESULTS.md): CelebA steps of
# 2.5e7-2.6e8 MACs ran 0.94x-1.11x in bfloat16, every step from 7.8e8 up
# 1.24x-2.1x (a d=32 GAN step 2.1x). Without bfloat16 units (an AMD EPYC
# with AVX2 only) every step was slower in bfloat16, 0.78x at 1e8 MACs down to
# 0.11x for the d=32 GAN step, so `step_precision` keeps those CPUs in float32.
BFLOAT16_MIN_STEP_MACS = 5e8


def step_precision(requested, step_macs, has_gpu=None, minimum=None, flags=None):
    """The precision a training step of `step_macs` multiply-accumulates runs in.

    `requested`, except that a bfloat16 step runs in float32 on a CPU where it
    would be slower: a CPU without bfloat16 units (`has_bfloat16_units`, from
    `flags`; TensorFlow emulates bfloat16 there), or a step below `minimum`
    (the casts around each op cost what the faster arithmetic saves:
    `BFLOAT16_MIN_STEP_MACS`). A CPU whose flags cannot be read keeps the rule by size.
    """
    return step_precision_and_reason(requested, step_macs, has_gpu, minimum, flags)[0]


def step_precision_and_reason(requested, step_macs, has_gpu=None, minimum=None, flags=None):
    """`step_precision`'s choice and, where it is not `requested`, why (a clause
    for a log line: "its steps (...) are too small ..."); None where it is."""
    policy(requested)
    has_gpu = gpu_available() if has_gpu is None else has_gpu
    minimum = BFLOAT16_MIN_STEP_MACS if minimum is None else minimum
    if requested != "bfloat16" or has_gpu:
        return requested, None
    flags = cpu_flags() if flags is None else flags
    if step_macs < minimum:
        return "float32", f"its steps ({step_macs:.2g} multiply-accumulates) are too small to gain from bfloat16"
    if flags and not has_bfloat16_units(flags):
        return "float32", "this CPU has no bfloat16 units and emulates bfloat16 (slower)"
    return requested, None


def gpu_available():
    """Whether TensorFlow sees a GPU."""
    return bool(tf.config.list_logical_devices("GPU"))


def check_hardware(precision, flags=None, has_gpu=None):
    """Warns (never fails) when `precision` is slow on this machine; returns the warning.

    bfloat16 is fast on GPUs and on CPUs with AMX-BF16 or AVX512-BF16
    (elsewhere TensorFlow emulates it, slower than float32); float16 is for
    GPUs (CPUs emulate it).
    """
    policy(precision)
    if has_gpu is None:
        has_gpu = gpu_available()
    flags = cpu_flags() if flags is None else flags
    message = None
    if precision == "bfloat16" and not has_gpu and flags and not has_bfloat16_units(flags):
        message = (
            f"precision='bfloat16' on a CPU without {' or '.join(BF16_CPU_FLAGS)}: TensorFlow emulates "
            "bfloat16 here, which is slower than float32."
        )
    elif precision == "float16" and not has_gpu:
        message = "precision='float16' without a GPU: CPUs emulate float16 (slow); use 'bfloat16' on CPUs."
    if message:
        logging.warning(message)
    return message


def float32_copy(model):
    """`model` with float32 layers and the same weights (itself when already float32).

    Mixed-precision variables are float32 already, so the copy is exact; it
    saves, loads and exports like a model built in float32. Handles kd_gan's
    models and any Keras model whose `get_config` carries its `dtype`
    (functional and Sequential models layer by layer).
    """
    return with_policy(model, "float32")


def with_policy(model, dtype_policy):
    """A copy of Keras `model` computing under `dtype_policy` (same weights);
    `model` itself when it already does, or when it is not a Keras model (a
    SavedModel signature, a `.tflite` interpreter)."""
    name = keras.dtype_policies.get(dtype_policy).name
    if not isinstance(model, keras.Model) or _policy_names(model) == {name}:
        return model
    if _compat.is_graph_network(model):
        copy = keras.models.clone_model(
            model, clone_function=lambda layer: layer.__class__.from_config({**layer.get_config(), "dtype": name})
        )
    else:
        copy = model.__class__.from_config({**model.get_config(), "dtype": name})
    copy.set_weights(model.get_weights())
    if _policy_names(copy) != {name}:
        raise InputError(
            f"{type(model).__name__} does not pass its dtype policy to its layers (got "
            f"{sorted(_policy_names(copy))}, wanted {name!r}): build its layers with dtype=self.dtype_policy."
        )
    return copy


def _policy_names(model):
    """Policies the layers compute under, as one name when they agree.

    Under a mixed policy only the last layer may be float32 (`output_dtype`);
    anything else is reported as found, e.g. layers that ignored `dtype`.
    """
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if not layers:
        return {model.dtype_policy.name}
    names = [layer.dtype_policy.name for layer in layers]
    wanted = model.dtype_policy.name
    if all(name == wanted for name in names[:-1]) and names[-1] in (wanted, output_dtype(wanted)):
        return {wanted}
    return set(names)
