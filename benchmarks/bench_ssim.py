"""The SSIM distillation term: the package's separable filtering against `tf.image.ssim`.

`PixelSSIM` filters four maps per scale (the local means, the second moments) with the
11x11 Gaussian window; `tf.image.ssim` does it with 11x11 depthwise convolutions, the
package with two matrix products per map (the Gaussian is separable). Rows: per image
size, the seconds of one training step's SSIM term (forward and backward, all of
`PixelSSIM`'s scales, one batch) for each implementation (median of interleaved rounds,
each first in turn), the ratio to `tf.image.ssim`, and the largest difference of the
losses and of their gradients. Random
images. Prints a table, names the CPU (with the cores this process may use and the load
average, for runs pinned beside others), writes JSON; asserts nothing.

    python benchmarks/bench_ssim.py --batch_size=64 --sizes=64,32
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from timing import write_results  # noqa: E402  (benchmarks/timing.py)
from kd_gan.distillation.structural import PixelSSIM  # noqa: E402
from kd_gan.models import precision  # noqa: E402

flags.DEFINE_integer("batch_size", 64, "Images per batch (the students' batch).", lower_bound=1)
flags.DEFINE_list("sizes", ["64", "32"], "Image sides (CelebA 64, CIFAR-10 32); 3 channels.")
flags.DEFINE_integer("steps", 5, "Steps timed per round.", lower_bound=1)
flags.DEFINE_integer("rounds", 3, "Interleaved rounds; the median is reported.", lower_bound=1)
flags.DEFINE_string("output", "benchmarks/results/ssim.json", "JSON output path.")
FLAGS = flags.FLAGS


class TensorFlowSSIM(PixelSSIM):
    """The baseline: `PixelSSIM` with each scale's SSIM from `tf.image.ssim`."""

    def compute_loss(self, teacher_outputs, student_outputs):
        target = (tf.cast(teacher_outputs[0], tf.float32) + 1.0) / 2.0
        images = (tf.cast(student_outputs[0], tf.float32) + 1.0) / 2.0
        terms, scales = [], self.scales_for(target.shape)
        for scale in range(scales):
            if scale:
                target, images = (tf.nn.avg_pool2d(x, 2, 2, "VALID") for x in (target, images))
            terms.append(1.0 - tf.image.ssim(images, target, max_val=1.0))
        return tf.add_n(terms) / float(scales)


def _step(loss, teacher_images, student_images):
    """A compiled forward and backward pass of `loss` with respect to the student's images."""

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            value = tf.reduce_mean(loss.compute_loss([teacher_images], [student_images]))
        return value, tape.gradient(value, student_images)

    return step


def main(argv):
    del argv
    cpu = precision.cpu_record()
    rows = []
    for size in map(int, FLAGS.sizes):
        shape = (FLAGS.batch_size, size, size, 3)
        teacher_images = tf.random.stateless_uniform(shape, seed=(size, 0), minval=-1.0, maxval=1.0)
        student_images = tf.Variable(tf.clip_by_value(
            teacher_images + tf.random.stateless_normal(shape, seed=(size, 1), stddev=0.3), -1.0, 1.0))
        steps = {"tf.image.ssim (before)": _step(TensorFlowSSIM(scales=None), teacher_images, student_images),
                 "package": _step(PixelSSIM(scales=None), teacher_images, student_images)}
        results = {name: step() for name, step in steps.items()}  # Compiles both.
        times = {name: [] for name in steps}
        for round_index in range(FLAGS.rounds):
            order = list(steps.items())
            for name, step in order[::-1] if round_index % 2 else order:  # Each goes first in turn.
                start = time.perf_counter()
                for _ in range(FLAGS.steps):
                    value, gradient = step()
                float(value)
                times[name].append((time.perf_counter() - start) / FLAGS.steps)
        baseline_value, baseline_gradient = results["tf.image.ssim (before)"]
        for name in steps:
            median = statistics.median(times[name])
            value, gradient = results[name]
            rows.append({
                "size": size, "batch_size": FLAGS.batch_size, "scales": PixelSSIM(scales=None).scales_for(shape),
                "implementation": name, "seconds_per_step_median": round(median, 4),
                "seconds_all": [round(t, 4) for t in times[name]],
                "speedup_vs_tf_image_ssim": round(statistics.median(times["tf.image.ssim (before)"]) / median, 2),
                "loss": float(value), "loss_difference": float(abs(value - baseline_value)),
                "gradient_max_difference": float(tf.reduce_max(tf.abs(gradient - baseline_gradient))),
                "gradient_max": float(tf.reduce_max(tf.abs(baseline_gradient))),
            })
            print(rows[-1], flush=True)
    print(f"\nPixelSSIM, forward and backward, batch {FLAGS.batch_size}, on {precision.cpu_label(cpu)} "
          f"({len(os.sched_getaffinity(0))} usable); "
          f"median of {FLAGS.rounds} interleaved rounds of {FLAGS.steps} steps")
    print("| image | scales | implementation | s per step | x tf.image.ssim | loss difference | largest gradient difference (of largest) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['size']}x{row['size']}x3 | {row['scales']} | {row['implementation']} | {row['seconds_per_step_median']} | "
              f"{row['speedup_vs_tf_image_ssim']} | {row['loss_difference']:.1e} | "
              f"{row['gradient_max_difference']:.1e} ({row['gradient_max']:.1e}) |")
    settings = {name: FLAGS[name].value for name in ("batch_size", "sizes", "steps", "rounds")}
    write_results(FLAGS.output, settings, rows, cpu=cpu, cores_usable=len(os.sched_getaffinity(0)),
                  load_average=os.getloadavg())


if __name__ == "__main__":
    app.run(main)
