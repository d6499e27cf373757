"""Pixel terms that filter images, against their first, convolutional form.

`PixelSSIM` (`--term=ssim`) filters four maps per scale with the 11x11 Gaussian window;
`tf.image.ssim` does it with 11x11 depthwise convolutions, the package with two matrix
products per map (the Gaussian is separable). `PixelLaplacianL1` (`--term=lap1`) low-passes
each pyramid level with a 5-tap binomial filter; its first form took the pyramids of both
images with 5x1 and 1x5 depthwise convolutions, the package takes one pyramid, of their
difference (the pyramid is linear), with two matrix products per map. Rows: per image size,
the seconds of one training step's term (forward and backward, every scale or level the term
uses, one batch) for each implementation (median of interleaved rounds, each first in turn),
the ratio to the first form, and the largest difference of the losses and of their
gradients. Random images. Prints a table, names the CPU (with the cores this process may use
and the load average, for runs pinned beside others), writes JSON; asserts nothing.

    python benchmarks/bench_pixel_terms.py --term=ssim --batch_size=64 --sizes=64,32
    python benchmarks/bench_pixel_terms.py --term=lap1 --output=benchmarks/results/lap1.json
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from timing import write_results  # noqa: E402  (benchmarks/timing.py)
from kd_gan.distillation.pyramid import BINOMIAL_TAPS, PAD, PixelLaplacianL1  # noqa: E402
from kd_gan.distillation.structural import PixelSSIM  # noqa: E402
from kd_gan.models import precision  # noqa: E402

flags.DEFINE_enum("term", "ssim", ["ssim", "lap1"], "The pixel term: PixelSSIM or PixelLaplacianL1.")
flags.DEFINE_integer("batch_size", 64, "Images per batch (the students' batch).", lower_bound=1)
flags.DEFINE_list("sizes", ["64", "32"], "Image sides (CelebA 64, CIFAR-10 32); 3 channels.")
flags.DEFINE_integer("steps", 5, "Steps timed per round.", lower_bound=1)
flags.DEFINE_integer("rounds", 3, "Interleaved rounds; the median is reported.", lower_bound=1)
flags.DEFINE_string("output", None, "JSON output path (default benchmarks/results/<term>.json).")
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


class ConvolutionLaplacianL1(PixelLaplacianL1):
    """The first form: both images' pyramids, each low-pass a reflected pad and 5x1, 1x5 depthwise convolutions."""

    def compute_loss(self, teacher_outputs, student_outputs):
        levels = self.levels_for(teacher_outputs[0].shape)
        taps = tf.constant(BINOMIAL_TAPS, tf.float32)

        def pyramid(images):
            current, bands = tf.cast(images, tf.float32), []
            kernel = tf.reshape(taps, [-1, 1, 1, 1]) * tf.ones([1, 1, current.shape[-1], 1])
            for _ in range(levels):
                padded = tf.pad(current, [[0, 0], [PAD, PAD], [PAD, PAD], [0, 0]], mode="REFLECT")
                smooth = tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")
                smooth = tf.nn.depthwise_conv2d(smooth, tf.transpose(kernel, [1, 0, 2, 3]), [1, 1, 1, 1], "VALID")
                bands.append(current - smooth)
                current = tf.nn.avg_pool2d(smooth, 2, 2, "VALID")
            return bands + [current]

        pairs = zip(pyramid(teacher_outputs[0]), pyramid(student_outputs[0]))
        terms = [tf.reduce_mean(tf.abs(student - teacher), axis=[1, 2, 3]) for teacher, student in pairs]
        return tf.add_n(terms) / float(len(terms))


# Per term: its first form (the baseline), the package's, and what counts its scales or levels.
TERMS = {
    "ssim": ("tf.image.ssim (before)", lambda: TensorFlowSSIM(scales=None), lambda: PixelSSIM(scales=None), "scales_for"),
    "lap1": ("depthwise convolutions (before)", lambda: ConvolutionLaplacianL1(), lambda: PixelLaplacianL1(), "levels_for"),
}


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
    baseline, make_baseline, make_package, counting = TERMS[FLAGS.term]
    rows = []
    for size in map(int, FLAGS.sizes):
        shape = (FLAGS.batch_size, size, size, 3)
        teacher_images = tf.random.stateless_uniform(shape, seed=(size, 0), minval=-1.0, maxval=1.0)
        student_images = tf.Variable(tf.clip_by_value(
            teacher_images + tf.random.stateless_normal(shape, seed=(size, 1), stddev=0.3), -1.0, 1.0))
        package = make_package()
        steps = {baseline: _step(make_baseline(), teacher_images, student_images),
                 "package": _step(package, teacher_images, student_images)}
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
        baseline_value, baseline_gradient = results[baseline]
        for name in steps:
            median = statistics.median(times[name])
            value, gradient = results[name]
            rows.append({
                "term": FLAGS.term, "size": size, "batch_size": FLAGS.batch_size, "scales": getattr(package, counting)(shape),
                "implementation": name, "seconds_per_step_median": round(median, 4),
                "seconds_all": [round(t, 4) for t in times[name]],
                "speedup_vs_first_form": round(statistics.median(times[baseline]) / median, 2),
                "loss": float(value), "loss_difference": float(abs(value - baseline_value)),
                "gradient_max_difference": float(tf.reduce_max(tf.abs(gradient - baseline_gradient))),
                "gradient_max": float(tf.reduce_max(tf.abs(baseline_gradient))),
            })
            print(rows[-1], flush=True)
    print(f"\n{type(package).__name__}, forward and backward, batch {FLAGS.batch_size}, on {precision.cpu_label(cpu)} "
          f"({len(os.sched_getaffinity(0))} usable); "
          f"median of {FLAGS.rounds} interleaved rounds of {FLAGS.steps} steps")
    print("| image | scales or levels | implementation | s per step | x first form | loss difference | largest gradient difference (of largest) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['size']}x{row['size']}x3 | {row['scales']} | {row['implementation']} | {row['seconds_per_step_median']} | "
              f"{row['speedup_vs_first_form']} | {row['loss_difference']:.1e} | "
              f"{row['gradient_max_difference']:.1e} ({row['gradient_max']:.1e}) |")
    settings = {name: FLAGS[name].value for name in ("term", "batch_size", "sizes", "steps", "rounds")}
    write_results(FLAGS.output or f"benchmarks/results/{FLAGS.term}.json", settings, rows, cpu=cpu,
                  cores_usable=len(os.sched_getaffinity(0)), load_average=os.getloadavg())


if __name__ == "__main__":
    app.run(main)
