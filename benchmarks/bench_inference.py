"""Batch-1 inference latency of teachers and students: Keras and LiteRT (.tflite).

For each dataset shape and depth: the Keras generator (a compiled
`tf.function`, `training=False`) and the student's `.tflite` files (fp32,
float16, dynamic int8, int8) run one latent vector per call on a fixed number
of threads. Prints p50/p95 latency, images/s (1 / mean latency) and model
bytes, and writes JSON. Weights are random: latency does not depend on them.

    python benchmarks/bench_inference.py --dataset=mnist --depths=1,2,4,8,32,64 --calls=300
"""

import json
import os
import tempfile
import time

from absl import app, flags

flags.DEFINE_enum("dataset", "mnist", ["mnist", "cifar10", "celeb_a"], "Image shape to benchmark.")
flags.DEFINE_list("depths", ["1", "2", "4", "8", "32", "64"], "Depth scale factors d.")
flags.DEFINE_list("tflite_depths", ["1", "2", "4", "8"], "Depths (students) also timed as .tflite.")
flags.DEFINE_list("quantizations", ["none", "float16", "dynamic_int8", "int8"], "TFLite variants.")
flags.DEFINE_integer("calls", 300, "Timed batch-1 calls per model.")
flags.DEFINE_integer("threads", 1, "Threads for TensorFlow and LiteRT.")
flags.DEFINE_string("output", "benchmarks/results/inference.json", "JSON output path.")
FLAGS = flags.FLAGS


def _time_calls(call, calls):
    for _ in range(20):  # Warm-up.
        call()
    latencies = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - start)
    return latencies


def _summary(name, depth, parameters, model_bytes, latencies):
    import numpy as np

    latencies_ms = np.asarray(latencies) * 1000
    return {
        "model": name,
        "depth": depth,
        "parameters": parameters,
        "bytes": model_bytes,
        "p50_ms": round(float(np.percentile(latencies_ms, 50)), 3),
        "p95_ms": round(float(np.percentile(latencies_ms, 95)), 3),
        "images_per_s": round(float(1000 / latencies_ms.mean()), 1),
    }


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
    import keras
    from ai_edge_litert.interpreter import Interpreter

    from kd_gan import Generator, count_parameters, export
    from kd_gan.data import IMAGE_SHAPES

    keras.utils.set_random_seed(0)
    latent_dim, shape = 128, IMAGE_SHAPES[FLAGS.dataset]
    z = np.random.default_rng(0).standard_normal((1, latent_dim)).astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for depth in map(int, FLAGS.depths):
            generator = Generator(latent_dim, shape, depth)
            parameters = count_parameters(generator)
            keras_path = os.path.join(folder, f"d{depth}.keras")
            generator.save(keras_path)
            generate = tf.function(lambda z, g=generator: g(z, training=False))
            latencies = _time_calls(lambda: generate(z).numpy(), FLAGS.calls)
            rows.append(_summary("Keras", depth, parameters, os.path.getsize(keras_path), latencies))
            if str(depth) not in FLAGS.tflite_depths:
                continue
            for quantization in FLAGS.quantizations:
                path = os.path.join(folder, f"d{depth}_{quantization}.tflite")
                export.export_tflite(generator, path, quantization=quantization, verify=False)
                runner = Interpreter(model_path=path, num_threads=FLAGS.threads).get_signature_runner(export.SIGNATURE)
                latencies = _time_calls(lambda: runner(z=z), FLAGS.calls)
                rows.append(_summary(f"TFLite {quantization}", depth, parameters, os.path.getsize(path), latencies))
    print(f"{FLAGS.dataset} {shape}, batch 1, {FLAGS.threads} thread(s), {FLAGS.calls} calls, TF {tf.__version__}")
    print("| model | d | parameters | bytes | p50 ms | p95 ms | images/s |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['model']} | {row['depth']} | {row['parameters']:,} | {row['bytes']:,} | "
            f"{row['p50_ms']:.3f} | {row['p95_ms']:.3f} | {row['images_per_s']:,.0f} |"
        )
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output, "w") as file:
        settings = {k: FLAGS[k].value for k in ("dataset", "depths", "tflite_depths", "quantizations", "calls", "threads")}
        json.dump({"settings": settings, "tensorflow": tf.__version__, "results": rows}, file, indent=2)
    print(f"Wrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
