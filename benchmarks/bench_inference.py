"""Batch-1 inference latency of teachers and students: Keras and LiteRT (.tflite).

For each dataset shape and depth: the Keras generator (a compiled
`tf.function`, `training=False`) and the student's `.tflite` files (fp32,
float16, dynamic int8, int8) run one latent vector per call on a fixed number
of threads. The teacher (`--teacher_depth`, by default the largest of
`--depths`) is also exported to float32 and int8 `.tflite` and run by the same
LiteRT interpreter on the same threads: the baseline a student on a phone is
compared with. Weights are random: latency does not depend on them.

Prints one markdown table (p50: the best of --rounds interleaved rounds' medians; p95 over all calls;
images/s = 1 / mean latency over all calls; every .tflite file on each LiteRT
engine (XNNPACK, built-in kernels), the row's p50 the faster one's; students'
files in both forms of the transposed convolutions (sub-pixel, as shipped, and
TRANSPOSE_CONV, as converted before); file
bytes, multiply-accumulates per image, speed-up over the teacher's float32 and
int8 `.tflite`, bytes of activation tensors), the int8 / float32 size and time
ratios per student depth, and a few checks as measured facts (yes/no with the
numbers; nothing is asserted). Writes the same as JSON, with the CPU
(model, vendor, AMX/AVX512 flags) the numbers were measured on.

    python benchmarks/bench_inference.py --dataset=mnist --depths=1,2,4,8,64 --calls=200 --rounds=3
"""

import math
import os
import tempfile
import time
from importlib import metadata

from absl import app, flags

flags.DEFINE_enum("dataset", "mnist", ["mnist", "cifar10", "celeb_a"], "Image shape to benchmark.")
flags.DEFINE_list("depths", ["1", "2", "4", "8", "32", "64"], "Depth scale factors d.")
flags.DEFINE_list("tflite_depths", ["1", "2", "4", "8"], "Depths (students) also timed as .tflite.")
flags.DEFINE_list("quantizations", ["none", "float16", "dynamic_int8", "int8"], "TFLite variants.")
flags.DEFINE_integer(
    "teacher_depth", None, "Depth of the teacher timed as float32 and int8 .tflite; default: the largest of --depths "
    "(64 with the default --depths).", lower_bound=1
)
flags.DEFINE_integer("calls", 300, "Timed batch-1 calls per model and round.")
flags.DEFINE_integer("rounds", 3, "Rounds over all models, interleaved, so that a slow spell of a shared machine "
                     "falls on every model alike; p50: the best round's median, p95 over all calls.", lower_bound=1)
flags.DEFINE_integer("threads", 1, "Threads for TensorFlow and LiteRT.")
flags.DEFINE_list("engines", ["xnnpack", "builtin"], "LiteRT engines every file is timed on; a row's p50 is the "
                  "fastest one's (what `TFLiteGenerator(engine='auto')` and the run's latency pick).")
flags.DEFINE_list("forms", ["sub_pixel", "transposed"], "How the students' transposed convolutions are written in "
                  "the file: sub_pixel (what kd_gan ships) and/or transposed (TRANSPOSE_CONV ops, as before).")
flags.DEFINE_string("output", "benchmarks/results/inference.json", "JSON output path.")
FLAGS = flags.FLAGS

TEACHER_QUANTIZATIONS = ("none", "int8")  # The teacher's files: the baselines of the speed-up columns.
# Thresholds of the summary checks (the issue on on-device students): reported, never asserted.
MAX_INT8_BYTES_RATIO = 0.3
MIN_SPEEDUP_VS_TEACHER = 50.0


def _time_calls(call, calls):
    for _ in range(20):  # Warm-up.
        call()
    latencies = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - start)
    return latencies


def _time_interleaved(functions, calls, rounds):
    """Per function, the latencies of each round: `rounds` passes over all functions in turn."""
    latencies = [[] for _ in functions]
    for _ in range(rounds):
        for index, function in enumerate(functions):
            latencies[index].append(_time_calls(function, calls))
    return latencies


def _summary(name, depth, parameters, multiply_accumulates, model_bytes, rounds):
    """A table row; `rounds`: the call latencies (s) of each round."""
    import numpy as np

    latencies_ms = np.concatenate(rounds) * 1000
    return {
        "model": name,
        "depth": depth,
        "parameters": parameters,
        "multiply_accumulates_per_image": multiply_accumulates,
        "bytes": model_bytes,
        # 0.1 us: the students' p50 is ~20 us, and speed-ups are ratios of these numbers.
        # The best round's median: a shared 2-core machine has slow spells that
        # move a 20 us median by up to 1.7x from one round to the next (measured).
        "p50_ms": round(float(min(np.median(r) for r in rounds)) * 1000, 4),
        "p95_ms": round(float(np.percentile(latencies_ms, 95)), 4),
        "images_per_s": round(float(1000 / latencies_ms.mean()), 1),
    }


def _activation_bytes(interpreter, path, signature):
    """Bytes of the non-constant tensors of `signature`'s subgraph, summed.

    Shapes and types come from the interpreter's tensor details; a tensor is
    constant (weights, quantisation parameters, shapes) when the file stores
    data for it, read from the flatbuffer. LiteRT's arena reuses the memory of
    tensors that are no longer needed, so the sum is an upper bound of the
    arena's share for them. Unnamed kernel scratch tensors are not in the
    details, so not in the sum.
    """
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    with open(path, "rb") as file:
        model = schema.Model.GetRootAs(file.read())
    signature_defs = [model.SignatureDefs(i) for i in range(model.SignatureDefsLength())]
    subgraph_index = next(s.SubgraphIndex() for s in signature_defs if s.SignatureKey().decode() == signature)
    subgraph = model.Subgraphs(subgraph_index)
    constant = set()
    for index in range(subgraph.TensorsLength()):
        buffer = model.Buffers(subgraph.Tensors(index).Buffer())
        if buffer.DataLength() > 0 or buffer.Offset() > 1:  # Offset: data kept outside the flatbuffer (> 2 GB files).
            constant.add(index)
    return sum(
        math.prod(int(size) for size in details["shape"]) * np.dtype(details["dtype"]).itemsize
        for details in interpreter.get_tensor_details(subgraph_index)
        if details["index"] not in constant
    )


def _display_name(quantization):
    return "TFLite float32" if quantization == "none" else f"TFLite {quantization}"


def _speedup(baseline_ms, row_ms):
    return round(baseline_ms / row_ms, 1)


def _format(value, spec, suffix=""):
    return "" if value is None else format(value, spec) + suffix


def _checks(ratios, tflite_rows, teacher_depth, teacher_float32_ms):
    """The summary lines: each a statement, the measured numbers, and whether it holds."""
    checks = []
    for ratio in ratios:
        if ratio["depth"] < 2:
            continue
        depth = ratio["depth"]
        checks.append({
            "check": f"d={depth}: int8 p50 <= float32 p50",
            "measured": f"{ratio['int8_p50_ms']:.4f} ms vs {ratio['float32_p50_ms']:.4f} ms",
            "holds": ratio["int8_p50_ms"] <= ratio["float32_p50_ms"],
        })
        checks.append({
            "check": f"d={depth}: int8 uint8 p50 <= float32 uint8 p50 (generate_uint8)",
            "measured": f"{ratio['int8_uint8_p50_ms']:.4f} ms vs {ratio['float32_uint8_p50_ms']:.4f} ms",
            "holds": ratio["int8_uint8_p50_ms"] <= ratio["float32_uint8_p50_ms"],
        })
        checks.append({
            "check": f"d={depth}: int8 bytes / float32 bytes <= {MAX_INT8_BYTES_RATIO}",
            "measured": f"{ratio['bytes_ratio']:.3f} ({ratio['int8_bytes']:,} / {ratio['float32_bytes']:,})",
            "holds": ratio["bytes_ratio"] <= MAX_INT8_BYTES_RATIO,
        })
    for depth in (1, 2):
        for quantization in TEACHER_QUANTIZATIONS:
            row = tflite_rows.get((depth, quantization))
            if row is None or depth == teacher_depth:
                continue
            speedup = teacher_float32_ms / row["p50_ms"]
            checks.append({
                "check": f"d={depth} {_display_name(quantization)} speed-up vs the teacher's (d={teacher_depth}) "
                f"float32 .tflite >= {MIN_SPEEDUP_VS_TEACHER:.0f}x",
                "measured": f"{speedup:.1f}x ({teacher_float32_ms:.4f} ms / {row['p50_ms']:.4f} ms)",
                "holds": speedup >= MIN_SPEEDUP_VS_TEACHER,
            })
    return checks


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
    import keras

    from kd_gan import Generator, count_parameters
    from kd_gan.export import converters as export
    from kd_gan.data.loading import IMAGE_SHAPES
    from kd_gan._io import write_json
    from kd_gan.models import precision, tflite_generator
    from kd_gan.models.counting import count_multiply_accumulates

    keras.utils.set_random_seed(0)
    latent_dim, shape = 128, IMAGE_SHAPES[FLAGS.dataset]
    depths = [int(depth) for depth in FLAGS.depths]
    tflite_depths = {int(depth) for depth in FLAGS.tflite_depths}
    teacher_depth = FLAGS.teacher_depth or max(depths)
    z = np.random.default_rng(0).standard_normal((1, latent_dim)).astype(np.float32)
    entries = []  # One per timed model, in table order; timed together below.
    with tempfile.TemporaryDirectory() as folder:
        for depth in depths + ([teacher_depth] if teacher_depth not in depths else []):
            generator = Generator(latent_dim, shape, depth)
            parameters = count_parameters(generator)
            multiply_accumulates = count_multiply_accumulates(generator)
            if depth in depths:
                keras_path = os.path.join(folder, f"d{depth}.keras")
                generator.save(keras_path)
                generate = tf.function(lambda z, g=generator: g(z, training=False))
                entries.append(dict(
                    name="Keras", depth=depth, parameters=parameters, multiply_accumulates=multiply_accumulates,
                    bytes=os.path.getsize(keras_path), call=lambda generate=generate: generate(z).numpy(),
                ))
            quantizations = list(FLAGS.quantizations) if depth in tflite_depths else []
            if depth == teacher_depth:
                quantizations += [q for q in TEACHER_QUANTIZATIONS if q not in quantizations]
            forms = list(FLAGS.forms) if depth != teacher_depth else ["sub_pixel"]
            for quantization in quantizations:
                for form in forms:
                    path = os.path.join(folder, f"d{depth}_{quantization}_{form}.tflite")
                    export.export_tflite(generator, path, quantization=quantization, verify=False, sub_pixel=form == "sub_pixel")
                    for engine in FLAGS.engines:
                        interpreter = tflite_generator.interpreter(path, FLAGS.threads, engine)
                        runner = interpreter.get_signature_runner(export.SIGNATURE)
                        uint8_runner = interpreter.get_signature_runner(export.UINT8_SIGNATURE)
                        entries.append(dict(
                            name=_display_name(quantization) + ("" if form == "sub_pixel" else " (TRANSPOSE_CONV)"),
                            depth=depth, parameters=parameters, form=form, engine=engine,
                            multiply_accumulates=multiply_accumulates, bytes=os.path.getsize(path),
                            call=lambda runner=runner: runner(z=z), quantization=quantization,
                            uint8_call=lambda runner=uint8_runner: runner(z=z),
                            activation_bytes=_activation_bytes(interpreter, path, export.SIGNATURE),
                        ))
        # The `generate` signature of every model, then `generate_uint8` (what
        # the Android snippet calls) of every file, all interleaved.
        uint8_entries = [entry for entry in entries if "uint8_call" in entry]
        functions = [entry["call"] for entry in entries] + [entry["uint8_call"] for entry in uint8_entries]
        latencies = _time_interleaved(functions, FLAGS.calls, FLAGS.rounds)
        for entry, entry_latencies in zip(uint8_entries, latencies[len(entries):]):
            entry["uint8_p50_ms"] = round(float(min(np.median(r) for r in entry_latencies)) * 1000, 4)
    rows, tflite_rows = [], {}  # tflite_rows: (depth, quantization) -> row of the shipped (sub-pixel) file.
    by_file = {}  # (depth, quantization, form) -> the file's row (its fastest engine's numbers).
    for entry, entry_latencies in zip(entries, latencies):
        row = _summary(
            entry["name"], entry["depth"], entry["parameters"], entry["multiply_accumulates"], entry["bytes"],
            entry_latencies,
        )
        if "quantization" not in entry:
            rows.append(row)
            continue
        row.update(quantization=entry["quantization"], form=entry["form"], engine=entry["engine"],
                   activation_bytes_upper_bound=entry["activation_bytes"], uint8_p50_ms=entry["uint8_p50_ms"])
        key = (entry["depth"], entry["quantization"], entry["form"])
        engines = by_file.setdefault(key, {})
        engines[entry["engine"]] = row
    files = {}  # (depth, quantization, form) -> the file's row.
    for key, engines in by_file.items():
        row = files[key] = dict(min(engines.values(), key=lambda r: r["p50_ms"]))
        row["p50_ms_by_engine"] = {engine: r["p50_ms"] for engine, r in engines.items()}
        row["uint8_p50_ms"] = min(r["uint8_p50_ms"] for r in engines.values())
        rows.append(row)
        if key[2] == "sub_pixel":
            tflite_rows[key[0], key[1]] = row

    teacher_ms = {q: tflite_rows[teacher_depth, q]["p50_ms"] for q in TEACHER_QUANTIZATIONS}
    for row in rows:
        row["role"] = "teacher" if row["depth"] == teacher_depth else "student"
        quantization = row.get("quantization")
        tflite = quantization is not None
        row["speedup_vs_teacher_tflite_float32"] = _speedup(teacher_ms["none"], row["p50_ms"]) if tflite else None
        row["speedup_vs_teacher_tflite_int8"] = (
            _speedup(teacher_ms["int8"], row["p50_ms"]) if quantization == "int8" else None
        )
    ratios = []
    for depth in sorted(tflite_depths - {teacher_depth}):
        if (depth, "none") in tflite_rows and (depth, "int8") in tflite_rows:
            float32, int8 = tflite_rows[depth, "none"], tflite_rows[depth, "int8"]
            ratios.append({
                "depth": depth,
                "float32_bytes": float32["bytes"],
                "int8_bytes": int8["bytes"],
                "bytes_ratio": round(int8["bytes"] / float32["bytes"], 3),
                "float32_p50_ms": float32["p50_ms"],
                "int8_p50_ms": int8["p50_ms"],
                "p50_ratio": round(int8["p50_ms"] / float32["p50_ms"], 3),
                "float32_uint8_p50_ms": float32["uint8_p50_ms"],
                "int8_uint8_p50_ms": int8["uint8_p50_ms"],
                "float32_engine": float32["engine"],
                "int8_engine": int8["engine"],
                "int8_p50_ms_by_engine": int8["p50_ms_by_engine"],
                "float32_p50_ms_by_engine": float32["p50_ms_by_engine"],
            })
            transposed = files.get((depth, "int8", "transposed"))
            if transposed is not None:
                ratios[-1]["int8_transposed_p50_ms_by_engine"] = transposed["p50_ms_by_engine"]
    checks = _checks(ratios, tflite_rows, teacher_depth, teacher_ms["none"])

    litert_version = metadata.version("ai-edge-litert")
    cpu = precision.cpu_record()
    print(
        f"{precision.cpu_label(cpu)}\n{FLAGS.dataset} {shape}, batch 1, {FLAGS.threads} thread(s), {FLAGS.calls} calls x {FLAGS.rounds} interleaved rounds, TF {tf.__version__}, "
        f"LiteRT {litert_version}, teacher d={teacher_depth}"
    )
    print(
        "\nMACs: multiply-accumulates per image (kd_gan.models.count_multiply_accumulates). "
        "p50 and p95: the `generate` signature (float32 image); uint8 p50: the `generate_uint8` signature "
        "(uint8 image, what the Android snippet calls). "
        "vs teacher fp32: the teacher's float32 .tflite p50 / this row's p50; vs teacher int8: the teacher's int8 "
        ".tflite p50 / this int8 row's p50. Activations: bytes of the non-constant tensors of the `generate` "
        "subgraph, an upper bound of LiteRT's activation arena (which reuses memory).\n"
    )
    print("| model | role | d | parameters | MACs | bytes | p50 ms | engine | p50 ms per engine | p95 ms | images/s | uint8 p50 ms | "
          "vs teacher fp32 | vs teacher int8 | activations (upper bound) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        speedup_float32 = _format(row["speedup_vs_teacher_tflite_float32"], ",.1f", "x")
        speedup_int8 = _format(row["speedup_vs_teacher_tflite_int8"], ",.1f", "x")
        print(
            f"| {row['model']} | {row['role']} | {row['depth']} | {row['parameters']:,} | "
            f"{row['multiply_accumulates_per_image']:,} | {row['bytes']:,} | {row['p50_ms']:.4f} | {row.get('engine', 'Keras')} | "
            f"{' / '.join(f'{e} {v:.4f}' for e, v in row.get('p50_ms_by_engine', {}).items())} | {row['p95_ms']:.4f} | {row['images_per_s']:,.0f} | {_format(row.get('uint8_p50_ms'), '.4f')} | {speedup_float32} | {speedup_int8} | {_format(row.get('activation_bytes_upper_bound'), ',')} |"
        )
    print("\nStudents, int8 .tflite / float32 .tflite:\n")
    print("| d | float32 bytes | int8 bytes | int8 / float32 bytes | float32 p50 ms (engine) | int8 p50 ms (engine) | "
          "int8 / float32 p50 | int8 with TRANSPOSE_CONV, per engine |")
    print("|---|---|---|---|---|---|---|---|")
    for ratio in ratios:
        before = ratio.get("int8_transposed_p50_ms_by_engine", {})
        print(
            f"| {ratio['depth']} | {ratio['float32_bytes']:,} | {ratio['int8_bytes']:,} | {ratio['bytes_ratio']:.3f} | "
            f"{ratio['float32_p50_ms']:.4f} ({ratio['float32_engine']}) | {ratio['int8_p50_ms']:.4f} ({ratio['int8_engine']}) | "
            f"{ratio['p50_ratio']:.3f} | {' / '.join(f'{e} {v:.4f}' for e, v in before.items())} |"
        )
    print("\nMeasured (not asserted):\n")
    print("| check | measured | holds |")
    print("|---|---|---|")
    for check in checks:
        print(f"| {check['check']} | {check['measured']} | {'yes' if check['holds'] else 'no'} |")

    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    settings = {
        k: FLAGS[k].value for k in ("dataset", "depths", "tflite_depths", "quantizations", "calls", "rounds", "threads")
    }
    settings["teacher_depth"] = teacher_depth
    write_json(FLAGS.output, {
        "settings": settings,
        "tensorflow": tf.__version__,
        "litert": litert_version,
        "cpu": cpu,
        "results": rows,
        "int8_vs_float32": ratios,
        "checks": checks,
    })
    print(f"\nWrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
