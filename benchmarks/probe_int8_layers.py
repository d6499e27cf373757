"""Probe: where an int8 `.tflite` generator spends its time, layer by layer, on this CPU.

Two measurements, each through both LiteRT engines (XNNPACK and the built-in
kernels), batch 1, one thread, best of `--rounds` interleaved rounds' medians:

- **convolutions**: one 3x3 convolution (+ bias, ReLU) at each pixel size and
  channel count of `--sizes` x `--channels` (input c, output 2c; 4 for c=1),
  converted to float32 and to int8; the int8 file's QUANTIZE of its input is
  timed apart and subtracted, so the column is the convolution's own cost.
  This is the measurement behind `kd_gan.export.tflite_graph.keeps_float_weights`.
- **ops of a file** (`--files`, `--mnist_depths`): each file cut after each of its ops (the op's
  outputs as the graph's outputs), so the difference between consecutive cuts
  is what that op adds. A delegate's fixed cost lands on the first op.

Prints the tables and writes JSON with the CPU (model, vendor, AMX/AVX512
flags) the numbers were measured on.

    python benchmarks/probe_int8_layers.py --output=benchmarks/results/int8_layers.json
    python benchmarks/probe_int8_layers.py --sizes= --mnist_depths=2 --output=benchmarks/results/int8_layers_mnist_d2.json
"""

import copy
import json
import os
import tempfile
import time

import numpy as np
from absl import app, flags

flags.DEFINE_list("sizes", ["7", "14", "16", "32"], "Pixel sizes (square) of the single convolutions; empty: none.")
flags.DEFINE_list("channels", ["1", "2", "4", "8", "16", "32"], "Input channels c of the single convolutions (output 2c).")
flags.DEFINE_list("files", [], ".tflite files to time op by op.")
flags.DEFINE_list("mnist_depths", [], "Also export a random-weight MNIST Generator (latent 128) of each d as float32, "
                  "int8 and int8 with every layer in int8 (float_small_layers=False), and time them op by op.")
flags.DEFINE_integer("calls", 300, "Timed calls per model, engine and round.", lower_bound=1)
flags.DEFINE_integer("rounds", 3, "Interleaved rounds; each model's time is the best round's median.", lower_bound=1)
flags.DEFINE_string("output", "benchmarks/results/int8_layers.json", "JSON output path.")
FLAGS = flags.FLAGS

ENGINES = ("xnnpack", "builtin")


def _microseconds(content, engine, calls):
    """Median microseconds of `invoke` for a model's bytes on `engine`, one thread."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = {"xnnpack": OpResolverType.AUTO, "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}[engine]
    interpreter = Interpreter(model_content=content, num_threads=1, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        value = np.random.default_rng(0).standard_normal(detail["shape"]).astype(detail["dtype"])
        interpreter.set_tensor(detail["index"], value)
    for _ in range(20):
        interpreter.invoke()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return 1e6 * float(np.median(times))


def _best_times(contents, calls, rounds):
    """Per engine, each model's best median (us) over `rounds` interleaved rounds."""
    best = {engine: [np.inf] * len(contents) for engine in ENGINES}
    for _ in range(rounds):
        for engine in ENGINES:
            for index, content in enumerate(contents):
                best[engine][index] = min(best[engine][index], _microseconds(content, engine, calls))
    return best


def cuts(content):
    """(op names, the model's bytes cut after each op): the op-by-op prefixes of a file."""
    from ai_edge_litert.interpreter import Interpreter

    from kd_gan import _compat

    flatbuffer_utils = _compat.tflite_flatbuffer_utils()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    names = [op["op_name"] for op in Interpreter(model_content=content)._get_ops_details()]
    prefixes = []
    for count in range(1, len(model.subgraphs[0].operators) + 1):
        cut = copy.deepcopy(model)
        graph = cut.subgraphs[0]
        graph.operators = graph.operators[:count]
        graph.outputs = np.array(list(graph.operators[-1].outputs), np.int32)
        cut.signatureDefs = []
        prefixes.append(bytes(flatbuffer_utils.convert_object_to_bytearray(cut)))
    return names, prefixes


def single_convolution(size, channels, outputs, quantization):
    """A .tflite file of one 3x3 convolution (+ bias, ReLU) on a size x size x channels input."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    kernel = tf.constant(0.3 * rng.standard_normal((3, 3, channels, outputs)).astype(np.float32))
    bias = tf.constant(0.1 * rng.standard_normal(outputs).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec((1, size, size, channels), tf.float32)])
    def convolution(x):
        return tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "SAME"), bias))

    converter = tf.lite.TFLiteConverter.from_concrete_functions([convolution.get_concrete_function()], convolution)
    if quantization == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = lambda: (
            [rng.standard_normal((1, size, size, channels)).astype(np.float32)] for _ in range(20)
        )
    return converter.convert()


def _convolution_cost(content):
    """The model's CONV_2D's own cost per engine (us): its cut minus the cut before it."""
    names, prefixes = cuts(content)
    index = names.index("CONV_2D")
    times = _best_times(prefixes[: index + 1], FLAGS.calls, FLAGS.rounds)
    return {engine: times[engine][index] - (times[engine][index - 1] if index else 0.0) for engine in ENGINES}


def probe_convolutions():
    rows = []
    print("| pixels | in -> out channels | weights | float32 us | int8 us | int8 / float32 | builtin float32 us | builtin int8 us |")
    print("|---|---|---|---|---|---|---|---|")
    for size in map(int, FLAGS.sizes):
        for channels in map(int, FLAGS.channels):
            outputs = 2 * channels if channels > 1 else 4
            cost = {quantization: _convolution_cost(single_convolution(size, channels, outputs, quantization))
                    for quantization in ("none", "int8")}
            row = dict(size=size, channels=channels, outputs=outputs, weights=9 * channels * outputs,
                       float32_us=cost["none"], int8_us=cost["int8"])
            rows.append(row)
            print(f"| {size}x{size} | {channels} -> {outputs} | {row['weights']:,} | {cost['none']['xnnpack']:.2f} | "
                  f"{cost['int8']['xnnpack']:.2f} | {cost['int8']['xnnpack'] / cost['none']['xnnpack']:.2f} | "
                  f"{cost['none']['builtin']:.2f} | {cost['int8']['builtin']:.2f} |", flush=True)
    return rows


def probe_file(path):
    with open(path, "rb") as file:
        names, prefixes = cuts(file.read())
    times = _best_times(prefixes, FLAGS.calls, FLAGS.rounds)
    print(f"\n{path}\n\n| op | name | " + " | ".join(f"{engine} us (added)" for engine in ENGINES) + " |")
    print("|---|---|" + "---|" * len(ENGINES))
    rows = []
    for index, name in enumerate(names):
        added = {engine: times[engine][index] - (times[engine][index - 1] if index else 0.0) for engine in ENGINES}
        rows.append(dict(op=index, name=name, cumulative_us={e: times[e][index] for e in ENGINES}, added_us=added))
        print(f"| {index} | {name} | " + " | ".join(f"{times[e][index]:.2f} (+{added[e]:.2f})" for e in ENGINES) + " |")
    return rows


def _export_mnist(depth, folder):
    from kd_gan import Generator
    from kd_gan.export import export_tflite

    generator = Generator(128, (28, 28, 1), depth=depth)
    forms = {"float32": dict(quantization="none"), "int8": dict(quantization="int8"),
             "int8_all_layers": dict(quantization="int8", float_small_layers=False)}
    paths = []
    for form, options in forms.items():
        paths.append(os.path.join(folder, f"mnist_d{depth}_{form}.tflite"))
        export_tflite(generator, paths[-1], verify=False, **options)
    return paths


def main(argv):
    del argv
    from importlib import metadata

    from kd_gan.models.precision import cpu_record

    cpu = cpu_record()
    print(f"CPU: {cpu['model']} ({cpu['vendor']}, {cpu['cores']} cores, flags {' '.join(cpu['flags']) or 'none'}); "
          f"LiteRT {metadata.version('ai-edge-litert')}\n")
    record = dict(cpu=cpu, litert=metadata.version("ai-edge-litert"), calls=FLAGS.calls, rounds=FLAGS.rounds)
    record["convolutions"] = probe_convolutions() if FLAGS.sizes else []
    with tempfile.TemporaryDirectory() as folder:
        files = list(FLAGS.files) + [path for depth in FLAGS.mnist_depths for path in _export_mnist(int(depth), folder)]
        record["files"] = {os.path.basename(path) if path.startswith(folder) else path: probe_file(path) for path in files}
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output, "w") as file:
        json.dump(record, file, indent=1)
    print(f"\nWrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
