"""Throughput of the FID Inception pass (resize to 299x299 + network) on this machine.

    python benchmarks/bench_inception.py --inception_path=../shared/data/inception/fid_inception_v3 --images=500
"""

import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_string("inception_path", None, "Local FID Inception SavedModel (default: $KD_GAN_INCEPTION, else TF-Hub).")
flags.DEFINE_integer("images", 500, "Images timed (after one warm-up batch).")
flags.DEFINE_integer("batch_size", 100, "Images per call.")
flags.DEFINE_string("output", "benchmarks/results/inception.json", "JSON output path.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from kd_gan.evaluation import classifiers

    classifier = classifiers.InceptionClassifier(FLAGS.inception_path)
    batch = np.random.default_rng(0).uniform(-1, 1, (FLAGS.batch_size, 32, 32, 3)).astype(np.float32)
    classifier(batch)  # Warm-up: tracing.
    start = time.perf_counter()
    for _ in range(FLAGS.images // FLAGS.batch_size):
        classifier(batch)
    seconds = time.perf_counter() - start
    count = FLAGS.images // FLAGS.batch_size * FLAGS.batch_size
    result = {"images": count, "batch_size": FLAGS.batch_size, "seconds": round(seconds, 2),
              "images_per_s": round(count / seconds, 1), "cpu_count": os.cpu_count(), "classifier": classifier.name}
    print(f"Inception pass: {result['images_per_s']} images/s ({count} 32x32 images, batch {FLAGS.batch_size}, "
          f"{os.cpu_count()} CPU cores); 10,000 images take {10_000 / result['images_per_s'] / 60:.1f} min")
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output, "w") as file:
        json.dump(result, file, indent=2)


if __name__ == "__main__":
    app.run(main)
