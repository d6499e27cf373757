"""Running `.tflite` generators with LiteRT: the files `kd_gan.export` writes.

Their signatures (`generate`, `generate_uint8`) take `z` and return `image`.

LiteRT runs a file through one of two CPU engines: XNNPACK (its default
delegate) or its built-in kernels (`BUILTIN_WITHOUT_DEFAULT_DELEGATES`). Which
is faster depends on the file and the CPU: on an Intel Xeon with AMX,
XNNPACK's int8 kernels for layers with few channels ran slower than the
built-in ones, while it runs float32 files fastest everywhere measured
(`benchmarks/bench_inference.py`, docs/DEPLOYMENT.md). `engine="auto"`
times both on the file and keeps the faster; `measure_latency` reports both,
with the CPU they ran on.
"""

import functools
import os
import time

import numpy as np

from kd_gan.errors import InputError

SIGNATURE = "generate"
UINT8_SIGNATURE = "generate_uint8"
INPUT_NAME = "z"
OUTPUT_NAME = "image"
ENGINES = ("auto", "xnnpack", "builtin")
LATENCY_CALLS = 200  # Timed batch-1 calls per engine in `measure_latency`.
WARMUP_CALLS = 20
CHOICE_CALLS = 60  # Timed calls per engine when `engine="auto"` picks one.


def interpreter(path, num_threads=None, engine="xnnpack"):
    """A LiteRT `Interpreter` for `path` on `engine` ("xnnpack": LiteRT's default; "builtin": its own kernels)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType  # LiteRT: tf.lite.Interpreter is deprecated.

    resolvers = {"xnnpack": OpResolverType.AUTO, "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    if engine not in resolvers:
        raise InputError(f"Unknown LiteRT engine {engine!r}; choose one of {tuple(resolvers)} (or 'auto' where offered).")
    return Interpreter(model_path=path, num_threads=num_threads, experimental_op_resolver_type=resolvers[engine])


def _call_times(runner, calls, warmup=WARMUP_CALLS):
    """Seconds of each of `calls` calls of `runner` on one fixed z (after `warmup` calls)."""
    shape = runner.get_input_details()[INPUT_NAME]["shape"]
    z = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(warmup):
        runner(**{INPUT_NAME: z})
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        runner(**{INPUT_NAME: z})
        times.append(time.perf_counter() - start)
    return np.asarray(times)


def _runners(path, num_threads):
    return {engine: interpreter(path, num_threads, engine).get_signature_runner(SIGNATURE) for engine in ENGINES[1:]}


def _interleaved_medians(runners, calls, rounds):
    """Per engine, the best of `rounds` interleaved rounds' median call times (s)."""
    best = {engine: np.inf for engine in runners}
    for _ in range(rounds):
        for engine, runner in runners.items():
            best[engine] = min(best[engine], float(np.median(_call_times(runner, calls))))
    return best


@functools.lru_cache(maxsize=64)
def _fastest(path, num_threads, size, modified):
    del size, modified  # Part of the cache key: a rewritten file is timed again.
    medians = _interleaved_medians(_runners(path, num_threads), CHOICE_CALLS, rounds=2)
    return min(medians, key=medians.get)


def fastest_engine(path, num_threads=None):
    """The LiteRT engine ("xnnpack" or "builtin") that runs `path` fastest here (timed once per file and process)."""
    status = os.stat(path)
    return _fastest(os.path.realpath(path), num_threads, status.st_size, status.st_mtime_ns)


def measure_latency(path, calls=LATENCY_CALLS, num_threads=1, rounds=2):
    """Batch-1 latency of the file's `generate` signature on each LiteRT engine.

    Returns:
        `{"latency_ms": the faster engine's, "latency_engine": its name,
        "latency_ms_by_engine": {engine: ms}, "cpu": the CPU's record}`: per
        engine, the best of `rounds` interleaved rounds' medians of `calls`
        calls (after warm-up), with `num_threads` LiteRT threads.
    """
    from kd_gan.models.precision import cpu_record

    medians = _interleaved_medians(_runners(path, num_threads), calls, rounds)
    by_engine = {engine: round(1000 * seconds, 4) for engine, seconds in medians.items()}
    engine = min(by_engine, key=by_engine.get)
    return {"latency_ms": by_engine[engine], "latency_engine": engine, "latency_ms_by_engine": by_engine, "cpu": cpu_record()}


def run_tflite(path, z, signature=SIGNATURE, num_threads=None, engine="xnnpack"):
    """Images of a `.tflite` generator for `z`, one file-sized batch at a time."""
    runner = interpreter(path, num_threads, engine).get_signature_runner(signature)
    batch_size = runner.get_input_details()[INPUT_NAME]["shape"][0]
    z = np.asarray(z, np.float32)
    if len(z) % batch_size:
        raise InputError(f"The number of latent vectors ({len(z)}) must be a multiple of the file's batch {batch_size}.")
    return np.concatenate([runner(**{INPUT_NAME: z[i : i + batch_size]})[OUTPUT_NAME] for i in range(0, len(z), batch_size)])


class TFLiteGenerator:
    """A `.tflite` generator as a callable `z -> images`, run by LiteRT.

    Scores the file that ships to phones, not the Keras model it came from:
    `scoring.evaluate_generator(TFLiteGenerator("student_int8.tflite"), ...)`.
    Any number of z; they are run in batches of the file's fixed batch size
    (the last one padded).

    Args:
        path: a `.tflite` file with the `generate` signature (`export_tflite`).
        num_threads: LiteRT threads (None: its default).
        engine: "auto" (the faster of the two on this file and CPU,
            `fastest_engine`), "xnnpack" or "builtin". Both compute the same
            images to rounding; the choice is `self.engine`.
    """

    def __init__(self, path, num_threads=None, engine="auto"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No .tflite generator file at {path!r}.")
        if engine not in ENGINES:
            raise InputError(f"Unknown LiteRT engine {engine!r}; choose one of {ENGINES}.")
        self.path = path
        self.name = os.path.basename(path)
        self.engine = fastest_engine(path, num_threads) if engine == "auto" else engine
        self._runner = interpreter(path, num_threads, self.engine).get_signature_runner(SIGNATURE)
        shape = self._runner.get_input_details()[INPUT_NAME]["shape"]
        self.batch_size, self.latent_dim = int(shape[0]), int(shape[-1])

    def __call__(self, z):
        z = np.asarray(z, np.float32)
        count = len(z)
        padding = -count % self.batch_size
        if padding:
            z = np.concatenate([z, np.zeros((padding, self.latent_dim), np.float32)])
        outputs = [self._runner(**{INPUT_NAME: z[i : i + self.batch_size]})[OUTPUT_NAME] for i in range(0, len(z), self.batch_size)]
        return np.concatenate(outputs)[:count]
