"""Training speed of the Distiller against a plain `tf.function` loop and Keras' own Distiller.

MSE distillation of a DCGAN pair (MNIST shapes by default): each method runs
the same number of steps on the same models, in interleaved rounds within one
process, and the table reports steps/s and the ratio to the plain loop (the
baseline of this run). Also times the joint loss and a GAN step, which have no
Keras counterpart.

`fit` is timed from its first step to its last (`timing.StepClock`).

    python benchmarks/bench_distill.py --steps=300 --rounds=5 --output=benchmarks/results/distill.json
"""

import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import timing  # noqa: E402  (benchmarks/timing.py)
from kd_gan import GAN, Discriminator, Distiller, Generator, latent_dataset

flags.DEFINE_integer("steps", 300, "Timed steps per method and round.")
flags.DEFINE_integer("rounds", 5, "Interleaved rounds; the median is reported.")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_integer("teacher_depth", 32, "Teacher depth d.")
flags.DEFINE_integer("student_depth", 2, "Student depth d.")
flags.DEFINE_string("output", "benchmarks/results/distill.json", "JSON output path.")
FLAGS = flags.FLAGS
LATENT, SHAPE = 128, (28, 28, 1)


def kd_gan_mse(teacher, student, steps_per_execution=None, jit_compile=False):
    distiller = Distiller(teacher, student, loss="mse")
    distiller.compile(steps_per_execution=steps_per_execution, jit_compile=jit_compile)
    return timing.fit_runner(distiller, latent_dataset(FLAGS.batch_size, LATENT))


def keras_distiller(teacher, student, steps_per_execution=1):
    return timing.keras_distiller(teacher, student, latent_dataset(FLAGS.batch_size, LATENT), LATENT, steps_per_execution)


def real_images():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (FLAGS.batch_size * 16, *SHAPE)).astype("float32")
    return tf.data.Dataset.from_tensor_slices(images).batch(FLAGS.batch_size, drop_remainder=True).cache().repeat()


def kd_gan_joint(teacher, student):
    distiller = Distiller(teacher, student, loss="joint", discriminator=Discriminator(SHAPE, FLAGS.student_depth))
    distiller.compile()
    return timing.fit_runner(distiller, real_images())


def kd_gan_scratch_gan(teacher, student):
    del teacher
    model = GAN(student, Discriminator(SHAPE, FLAGS.student_depth))
    model.compile()
    return timing.fit_runner(model, real_images())


METHODS = {
    "plain tf.function loop (MSE)": lambda t, s: timing.plain_loop(t, s, FLAGS.batch_size, LATENT),
    "kd_gan Distiller.fit (mse, default)": kd_gan_mse,
    "kd_gan Distiller.fit (mse, 1 step/call)": lambda t, s: kd_gan_mse(t, s, steps_per_execution=1),
    "kd_gan Distiller.fit (mse, jit_compile)": lambda t, s: kd_gan_mse(t, s, jit_compile=True),
    "keras Distiller.fit (MSE, default)": keras_distiller,
    "keras Distiller.fit (MSE, 10 steps/call)": lambda t, s: keras_distiller(t, s, steps_per_execution=10),
    "kd_gan Distiller.fit (joint)": kd_gan_joint,
    "kd_gan GAN.fit (student size)": kd_gan_scratch_gan,
}
BASELINE = "plain tf.function loop (MSE)"


def main(argv):
    del argv
    keras.utils.set_random_seed(0)
    runners = {}
    for name, make in METHODS.items():
        runners[name] = make(Generator(LATENT, SHAPE, FLAGS.teacher_depth), Generator(LATENT, SHAPE, FLAGS.student_depth))
        runners[name](20)  # Warm-up: tracing and first allocations.
    rates = {name: [] for name in METHODS}
    for _ in range(FLAGS.rounds):
        for name, run in runners.items():
            rates[name].append(FLAGS.steps / run(FLAGS.steps))
    baseline = statistics.median(rates[BASELINE])
    rows = [
        {
            "method": name,
            "steps_per_s": round(statistics.median(values), 1),
            "ratio_to_plain_loop": round(statistics.median(values) / baseline, 3),
            "all_rounds": [round(v, 1) for v in values],
        }
        for name, values in rates.items()
    ]
    print(f"MNIST DCGAN, teacher d={FLAGS.teacher_depth}, student d={FLAGS.student_depth}, "
          f"batch {FLAGS.batch_size}, {FLAGS.steps} steps x {FLAGS.rounds} rounds (median), "
          f"{os.cpu_count()} CPU cores")
    print(f"| {'method':<40} | steps/s | vs plain loop |")
    print(f"|{'-' * 42}|---------|---------------|")
    for row in rows:
        print(f"| {row['method']:<40} | {row['steps_per_s']:7.1f} | {row['ratio_to_plain_loop']:13.2f} |")
    timing.write_results(
        FLAGS.output, {k: FLAGS[k].value for k in ("steps", "rounds", "batch_size", "teacher_depth", "student_depth")}, rows
    )


if __name__ == "__main__":
    app.run(main)
