"""Precision/recall's k-nearest-neighbour passes: the package's against numpy's, side by side.

Each model a run scored cost four passes over an `N x N` distance matrix
(the reference's radii, the generated set's radii, two coverages) in numpy
with `np.partition`: the baseline here. The package computes them in
float64 TensorFlow blocks with top-k, both coverages from one pass over the
generated-to-reference distances, and the reference's radii once per run
(`kd_gan.evaluation.formulas`): three passes for a run's first model, two
after. Rows: per feature dimension
(128: the MNIST classifier's; 2048: the FID Inception's), the seconds of one
model's precision/recall for each implementation (median of interleaved
rounds), the package's with the reference's radii given (as a run reuses
them for every model), the ratios, and whether the results agree. Random
Gaussian activations. Prints a table, names the CPU, writes JSON; asserts nothing.

    python benchmarks/bench_precision_recall.py --rows=10000 --dimensions=128,2048
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from timing import write_results  # noqa: E402  (benchmarks/timing.py)
from kd_gan.evaluation import formulas  # noqa: E402
from kd_gan.models import precision  # noqa: E402

flags.DEFINE_integer("rows", 10_000, "Activations per set (a run compares 10,000 against 10,000).")
flags.DEFINE_list("dimensions", ["128", "2048"], "Feature dimensions.")
flags.DEFINE_integer("rounds", 3, "Interleaved rounds; the median is reported.", lower_bound=1)
flags.DEFINE_string("output", "benchmarks/results/precision_recall.json", "JSON output path.")
FLAGS = flags.FLAGS

K, CHUNK = 3, 1000


def _numpy_distances(rows, columns):
    return np.maximum((rows**2).sum(1)[:, None] + (columns**2).sum(1)[None, :] - 2.0 * rows @ columns.T, 0.0)


def numpy_precision_recall(reference, generated):
    """The baseline: float64 numpy blocks, the k-th neighbour by `np.partition`."""

    def radii(points):
        blocks = range(0, len(points), CHUNK)
        return np.concatenate([np.partition(_numpy_distances(points[s : s + CHUNK], points), K, axis=1)[:, K] for s in blocks])

    def coverage(points, manifold, manifold_radii):
        blocks = range(0, len(points), CHUNK)
        inside = sum(int(np.any(_numpy_distances(points[s : s + CHUNK], manifold) <= manifold_radii[None], axis=1).sum()) for s in blocks)
        return inside / len(points)

    return coverage(generated, reference, radii(reference)), coverage(reference, generated, radii(generated))


def _seconds(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def main(argv):
    del argv
    cpu = precision.cpu_record()
    rows = []
    for dimension in map(int, FLAGS.dimensions):
        rng = np.random.default_rng(dimension)
        reference = rng.standard_normal((FLAGS.rows, dimension))
        generated = 1.1 * rng.standard_normal((FLAGS.rows, dimension)) + 0.05
        radii = formulas.manifold_radii(reference, K)  # Also compiles the blocks' functions.
        passes = {
            "numpy (before)": lambda: numpy_precision_recall(reference, generated),
            "package": lambda: formulas.precision_recall(reference, generated, K),
            "package, reference radii given": lambda: formulas.precision_recall(reference, generated, K, reference_radii=radii),
        }
        times, results = {name: [] for name in passes}, {}
        for _ in range(FLAGS.rounds):
            for name, run in passes.items():
                seconds, results[name] = _seconds(run)
                times[name].append(seconds)
        baseline = statistics.median(times["numpy (before)"])
        for name in passes:
            median = statistics.median(times[name])
            rows.append({
                "dimension": dimension, "rows": FLAGS.rows, "implementation": name, "seconds_median": round(median, 3),
                "seconds_all": [round(t, 3) for t in times[name]], "speedup_vs_numpy": round(baseline / median, 2),
                "precision": results[name][0], "recall": results[name][1],
                "same_as_numpy": results[name] == results["numpy (before)"],
            })
            print(rows[-1], flush=True)
    print(f"\nPrecision/recall (k={K}) of {FLAGS.rows:,} against {FLAGS.rows:,} activations on {precision.cpu_label(cpu)}; "
          f"median of {FLAGS.rounds} interleaved rounds")
    print("| features | implementation | s per model | x numpy | same result |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['dimension']} | {row['implementation']} | {row['seconds_median']} | {row['speedup_vs_numpy']} | {row['same_as_numpy']} |")
    settings = {name: FLAGS[name].value for name in ("rows", "dimensions", "rounds")}
    write_results(FLAGS.output, settings, rows, cpu=cpu)


if __name__ == "__main__":
    app.run(main)
