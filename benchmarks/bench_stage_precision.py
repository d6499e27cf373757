"""Which training stages bfloat16 speeds up: step time in float32 and bfloat16 against the step's size.

Rows: GAN steps (generator and discriminator of depth d, as a teacher
candidate or a scratch GAN trains) and cached MSE student steps (the student's
forward and backward pass only, as students train on the teacher cache), at
several d, each in float32 and Keras' "mixed_bfloat16", timed in interleaved
rounds (median steps/s, batch 64). A step's size is its multiply-accumulates
(`experiment.progress.gan_step_cost`, 3 passes of the student for MSE). Prints
the table sorted by size, the smallest size from which every larger step ran
faster in bfloat16 (what `kd_gan.models.precision.BFLOAT16_MIN_STEP_MACS`
is set from), and the CPU; writes JSON. Asserts nothing.

    python benchmarks/bench_stage_precision.py --dataset=celeb_a --gan_depths=1,4,16,32 --student_depths=1,4,16
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import timing  # noqa: E402  (benchmarks/timing.py)
from kd_gan import GAN, Discriminator, Distiller, Generator  # noqa: E402
from kd_gan.data.loading import IMAGE_SHAPES  # noqa: E402
from kd_gan.experiment.progress import gan_step_cost  # noqa: E402
from kd_gan.models import precision  # noqa: E402
from kd_gan.models.counting import count_multiply_accumulates  # noqa: E402

flags.DEFINE_enum("dataset", "celeb_a", list(IMAGE_SHAPES), "Image shape of the models.")
flags.DEFINE_list("gan_depths", ["1", "4", "16", "32"], "Depths of the GAN steps (generator and discriminator).")
flags.DEFINE_list("student_depths", ["1", "4", "16"], "Depths of the cached MSE student steps.")
flags.DEFINE_integer("rounds", 2, "Interleaved rounds; the median is reported.", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Batch size of every step.")
flags.DEFINE_float("seconds", 3.0, "Rough seconds per timed measurement.")
flags.DEFINE_string("output", "benchmarks/results/stage_precision.json", "JSON output path.")
FLAGS = flags.FLAGS

LATENT = 128
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def _images(shape):
    images = np.random.default_rng(0).uniform(-1, 1, (FLAGS.batch_size * 4, *shape)).astype("float32")
    return tf.data.Dataset.from_tensor_slices(images).batch(FLAGS.batch_size, drop_remainder=True).cache().repeat()


def gan(shape, depth, policy):
    generator, discriminator = Generator(LATENT, shape, depth, dtype=policy), Discriminator(shape, depth, dtype=policy)
    model = GAN(generator, discriminator)
    model.compile()
    return timing.fit_runner(model, _images(shape)), gan_step_cost(generator, discriminator, FLAGS.batch_size)


def cached_student(shape, depth, policy):
    """An MSE step on stored (z, teacher image) pairs: the teacher never runs."""
    student = Generator(LATENT, shape, depth, dtype=policy)
    distiller = Distiller(Generator(LATENT, shape, 1), student)  # The teacher is not called on cached pairs.
    distiller.compile()
    rng = np.random.default_rng(1)
    pairs = {"z": rng.standard_normal((FLAGS.batch_size * 4, LATENT)).astype("float32"),
             "teacher_images": rng.uniform(-1, 1, (FLAGS.batch_size * 4, *shape)).astype("float32")}
    dataset = tf.data.Dataset.from_tensor_slices(pairs).batch(FLAGS.batch_size, drop_remainder=True).cache().repeat()
    return timing.fit_runner(distiller, dataset), FLAGS.batch_size * 3 * count_multiply_accumulates(student)


def main(argv):
    del argv
    keras.utils.set_random_seed(0)
    shape = IMAGE_SHAPES[FLAGS.dataset]
    runners, costs = {}, {}
    for kind, build, depths in (("GAN", gan, FLAGS.gan_depths), ("cached MSE student", cached_student, FLAGS.student_depths)):
        for depth in map(int, depths):
            for name, policy in POLICIES.items():
                key = (kind, depth, name)
                runners[key], costs[(kind, depth)] = build(shape, depth, policy)
    steps = {}
    for key, run in runners.items():
        run(10)  # Tracing and first allocations.
        steps[key] = 10 * max(1, round(10 / run(10) * FLAGS.seconds / 10))
    rates = timing.interleaved_rates(runners, steps, FLAGS.rounds, warmup=10)
    rows = []
    for (kind, depth), cost in sorted(costs.items(), key=lambda item: item[1]):
        float32, bfloat16 = (timing.median(rates[(kind, depth, name)]) for name in POLICIES)
        rows.append({"step": kind, "depth": depth, "step_macs": int(cost),
                     "float32_ms": round(1000 / float32, 2), "bfloat16_ms": round(1000 / bfloat16, 2),
                     "bfloat16_speedup": round(bfloat16 / float32, 2)})
    # The smallest size from which every larger step gains from bfloat16.
    threshold = None
    for index, row in enumerate(rows):
        if all(later["bfloat16_speedup"] > 1.0 for later in rows[index:]):
            threshold = row["step_macs"]
            break
    cpu = precision.cpu_record()
    print(f"Training steps by precision on {precision.cpu_label(cpu)}; {FLAGS.dataset} {shape}, batch {FLAGS.batch_size}, "
          f"median of {FLAGS.rounds} interleaved rounds\n")
    print("| step | d | MACs per step | float32 ms | bfloat16 ms | bfloat16 speed-up |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['step']} | {row['depth']} | {row['step_macs']:.3g} | {row['float32_ms']} | {row['bfloat16_ms']} | "
              f"{row['bfloat16_speedup']}x |")
    print(f"\nEvery step from {threshold:.3g} MACs up ran faster in bfloat16." if threshold else
          "\nNo size from which every larger step ran faster in bfloat16.")
    settings = {name: FLAGS[name].value for name in ("dataset", "gan_depths", "student_depths", "rounds", "batch_size", "seconds")}
    timing.write_results(FLAGS.output, settings, rows, cpu=cpu, bfloat16_from_step_macs=threshold)


if __name__ == "__main__":
    app.run(main)
