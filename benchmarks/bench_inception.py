"""The FID Inception pass (resize to 299x299 + network) per engine and precision, side by side.

For each pass the machine can run (TensorFlow float32, the standard; TensorFlow's
oneDNN bfloat16 rewrite on CPUs with bfloat16 units; OpenVINO float32 and
bfloat16 where `openvino` is installed): images/s over interleaved rounds of
random 32x32 batches (the best round's rate and the median), the ratio to
TensorFlow float32 in the same run, and, with `--data_dir`, the FID each pass
gives on the shared CIFAR-10 reference pair (set A's even- against odd-indexed
5,000 images, FID 9.976 in the shared data's README) with its difference from
TensorFlow float32's. Prints a table, names the CPU, writes JSON; asserts
nothing.

    python benchmarks/bench_inception.py --inception_path=../shared/data/inception/fid_inception_v3 \\
        --data_dir=../shared/data --output=benchmarks/results/inception.json
"""

import io
import os
import tarfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_string("inception_path", None, "Local FID Inception SavedModel (default: $KD_GAN_INCEPTION, else TF-Hub).")
flags.DEFINE_string("data_dir", None, "Shared data folder with cifar10/cifar10-train-png.tar.gz: adds the reference pair's FID per pass.")
flags.DEFINE_integer("images", 300, "Images timed per pass and round (after one warm-up batch).")
flags.DEFINE_integer("rounds", 3, "Interleaved rounds over the passes.", lower_bound=1)
flags.DEFINE_integer("batch_size", 50, "Images per call.")
flags.DEFINE_integer("pair_images", 10_000, "Images of the reference pair scored (even/odd halves); 10,000: all of set A.")
flags.DEFINE_string("output", "benchmarks/results/inception.json", "JSON output path.")
FLAGS = flags.FLAGS

PAIR_FID = 9.976  # FID(set A even, set A odd), shared data README.
PAIR_PER_CLASS = 1000


def passes():
    """The (engine, precision) pairs this machine can run."""
    from kd_gan.evaluation import inception_engines
    from kd_gan.models import precision

    found = [("tensorflow", "float32")]
    if precision.has_bfloat16_units(precision.cpu_flags()) and not precision.gpu_available():
        found.append(("tensorflow", "bfloat16"))
    if inception_engines.openvino_installed():
        found += [("openvino", "float32"), ("openvino", "bfloat16")]
    return found


def reference_pair(data_dir, count):
    """Set A of the shared README (first 1,000 files per class by path) in [-1, 1], and its even/odd masks."""
    from PIL import Image

    from kd_gan.data.local_files import CIFAR10_CLASSES

    with tarfile.open(os.path.join(data_dir, "cifar10", "cifar10-train-png.tar.gz")) as archive:
        members = sorted((m for m in archive.getmembers() if m.name.endswith(".png")), key=lambda m: m.name)
        by_class = {name: [m for m in members if m.name.split("/")[-2] == name][:PAIR_PER_CLASS] for name in CIFAR10_CLASSES}
        set_a = [member for name in CIFAR10_CLASSES for member in by_class[name]][:count]
        images = np.stack([np.asarray(Image.open(io.BytesIO(archive.extractfile(m).read())).convert("RGB")) for m in set_a])
    return images.astype(np.float32) / 127.5 - 1.0


def features(classifier, images, batch_size):
    return np.concatenate([classifier(images[i : i + batch_size])[0] for i in range(0, len(images), batch_size)])


def main(argv):
    del argv
    from timing import write_results  # benchmarks/timing.py
    from kd_gan.evaluation import classifiers, formulas
    from kd_gan.models import precision

    cpu = precision.cpu_record()
    batch = np.random.default_rng(0).uniform(-1, 1, (FLAGS.batch_size, 32, 32, 3)).astype(np.float32)
    runs = {}
    for engine, pass_precision in passes():
        classifier = classifiers.InceptionClassifier(FLAGS.inception_path, pass_precision, engine)
        classifier(batch)  # Warm-up: tracing, compilation.
        runs[(engine, pass_precision)] = classifier
    calls = max(1, FLAGS.images // FLAGS.batch_size)
    rates = {key: [] for key in runs}
    for _ in range(FLAGS.rounds):
        for key, classifier in runs.items():
            start = time.perf_counter()
            for _ in range(calls):
                classifier(batch)
            rates[key].append(calls * FLAGS.batch_size / (time.perf_counter() - start))
    pair = reference_pair(FLAGS.data_dir, FLAGS.pair_images) if FLAGS.data_dir else None
    baseline_key = ("tensorflow", "float32")
    rows, baseline_features = [], None
    for key, classifier in runs.items():
        row = {"engine": key[0], "precision": key[1], "network": classifier.name,
               "images_per_s_best": round(max(rates[key]), 1), "images_per_s_median": round(float(np.median(rates[key])), 1)}
        if pair is not None:
            start = time.perf_counter()
            pair_features = features(classifier, pair, FLAGS.batch_size)
            row["pair_images_per_s"] = round(len(pair) / (time.perf_counter() - start), 1)
            row["pair_fid"] = float(formulas.frechet_distance(pair_features[0::2], pair_features[1::2]))
            if key == baseline_key:
                baseline_features = pair_features
            row["max_abs_feature_difference"] = float(np.abs(pair_features - baseline_features).max())
        rows.append(row)
        print(f"{key[0]} {key[1]}: {row}", flush=True)
    baseline = next(row for row in rows if (row["engine"], row["precision"]) == baseline_key)
    for row in rows:
        row["speedup_vs_tensorflow_float32"] = round(row["images_per_s_median"] / baseline["images_per_s_median"], 2)
        if pair is not None:
            row["pair_fid_difference_percent"] = round(100 * (row["pair_fid"] / baseline["pair_fid"] - 1), 3)

    print(f"\nFID Inception pass on {precision.cpu_label(cpu)}; batch {FLAGS.batch_size}, 32x32 inputs, "
          f"{FLAGS.rounds} interleaved rounds of {calls * FLAGS.batch_size} images")
    header = "| engine | precision | images/s (median) | best | x TF float32 |"
    if pair is not None:
        header += f" reference-pair FID ({len(pair) // 2} vs {len(pair) // 2}; README {PAIR_FID}) | vs TF float32 | max feature diff |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        line = (f"| {row['engine']} | {row['precision']} | {row['images_per_s_median']} | {row['images_per_s_best']} | "
                f"{row['speedup_vs_tensorflow_float32']} |")
        if pair is not None:
            line += f" {row['pair_fid']:.4f} | {row['pair_fid_difference_percent']:+.3f}% | {row['max_abs_feature_difference']:.2g} |"
        print(line)
    settings = {name: FLAGS[name].value for name in ("images", "rounds", "batch_size", "pair_images", "data_dir", "inception_path")}
    write_results(FLAGS.output, settings, rows, cpu=cpu)


if __name__ == "__main__":
    app.run(main)
