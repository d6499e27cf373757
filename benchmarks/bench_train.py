"""Training and scoring speed by precision and by teacher-output caching, in one process.

Rows, each timed in interleaved rounds (median steps/s, batch 64):

* GAN step at CelebA 64x64, d=32: float32 and bfloat16 (Keras' mixed_bfloat16).
* The MNIST 1,696:1 pair (latent 32, teacher d=128, student d=1):
  a plain `tf.function` MSE loop (the baseline), `keras.distillation.Distiller`,
  and kd_gan's Distiller, MSE and joint, on fresh z (the teacher runs every
  step) and on cached (z, teacher(z)) pairs, each in float32 and bfloat16.
* The FID Inception: images/s of the network in float32 and bfloat16 (the
  oneDNN rewrite), and of `scoring.generator_statistics` end to end
  (generator, network, statistics) in float32. Needs the shared network
  (`--inception_path` or `$KD_GAN_INCEPTION`); skipped without it.

Ratios are within this run (these machines are noisy): each row against its
float32 twin and against the plain loop.

    python benchmarks/bench_train.py --inception_path=../shared/data/inception/fid_inception_v3
"""

import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import timing  # noqa: E402  (benchmarks/timing.py)
from kd_gan import GAN, Discriminator, Distiller, Generator, latent_dataset
from kd_gan.evaluation import classifiers
from kd_gan.models import precision
from kd_gan.evaluation import scoring
from kd_gan.distillation.teacher_cache import TeacherCache  # noqa: E402

flags.DEFINE_integer("rounds", 3, "Interleaved rounds; the median is reported.")
flags.DEFINE_integer("batch_size", 64, "Batch size of every training step.")
flags.DEFINE_float("seconds", 4.0, "Rough seconds per timed measurement (steps are set from a first probe).")
flags.DEFINE_integer("cache_pairs", 4096, "Pairs in the benchmark's teacher cache.")
flags.DEFINE_string("inception_path", None, "FID Inception SavedModel (default $KD_GAN_INCEPTION; none: no Inception rows).")
flags.DEFINE_integer("inception_images", 200, "Images per Inception measurement.")
flags.DEFINE_string("output", "benchmarks/results/train.json", "JSON output path.")
FLAGS = flags.FLAGS

CELEBA, MNIST = (64, 64, 3), (28, 28, 1)
MNIST_LATENT, TEACHER_DEPTH, STUDENT_DEPTH = 32, 128, 1
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
BASELINE = "MSE, plain tf.function loop, fresh z"


def real_images(shape):
    images = np.random.default_rng(0).uniform(-1, 1, (FLAGS.batch_size * 8, *shape)).astype("float32")
    return tf.data.Dataset.from_tensor_slices(images).batch(FLAGS.batch_size, drop_remainder=True).cache().repeat()


def mnist_pair(policy):
    keras.utils.set_random_seed(0)
    teacher = Generator(MNIST_LATENT, MNIST, TEACHER_DEPTH, dtype=policy)
    return teacher, Generator(MNIST_LATENT, MNIST, STUDENT_DEPTH, dtype=policy)


def gan_step(shape, depth, policy):
    model = GAN(Generator(128, shape, depth, dtype=policy), Discriminator(shape, depth, dtype=policy))
    model.compile()
    return timing.fit_runner(model, real_images(shape))


def distiller_runner(loss, policy, cache=None):
    teacher, student = mnist_pair(policy)
    discriminator = Discriminator(MNIST, STUDENT_DEPTH, dtype=policy) if loss == "joint" else None
    distiller = Distiller(teacher, student, loss=loss, discriminator=discriminator)
    distiller.compile()
    if cache is None:
        dataset = real_images(MNIST) if loss == "joint" else latent_dataset(FLAGS.batch_size, MNIST_LATENT)
    else:
        dataset = cache.dataset(FLAGS.batch_size)
        if loss == "joint":
            dataset = tf.data.Dataset.zip(real_images(MNIST), dataset).map(lambda real, pair: {**pair, "image": real})
    return timing.fit_runner(distiller, dataset)


def training_rows(cache):
    runners = {
        "GAN step, CelebA 64x64 d=32, float32": gan_step(CELEBA, 32, "float32"),
        "GAN step, CelebA 64x64 d=32, bfloat16": gan_step(CELEBA, 32, "mixed_bfloat16"),
        BASELINE: timing.plain_loop(*mnist_pair("float32"), FLAGS.batch_size, MNIST_LATENT),
        "MSE, keras.distillation.Distiller, fresh z": timing.keras_distiller(
            *mnist_pair("float32"), latent_dataset(FLAGS.batch_size, MNIST_LATENT), MNIST_LATENT, steps_per_execution=10
        ),
    }
    for loss in ("mse", "joint"):
        for source in ("fresh z", "cached"):
            for name, policy in POLICIES.items():
                runners[f"{loss.upper() if loss == 'mse' else 'joint'}, kd_gan Distiller, {source}, {name}"] = (
                    distiller_runner(loss, policy, cache if source == "cached" else None)
                )
    # Steps per measurement: about FLAGS.seconds each, from a probe, in whole
    # executions of fit's 10 steps per call (no retracing between measurements).
    steps = {}
    for name, run in runners.items():
        run(10)  # Tracing and first allocations.
        rate = 10 / run(10)
        steps[name] = 10 * max(1, round(rate * FLAGS.seconds / 10))
    return timing.interleaved_rates(runners, steps, FLAGS.rounds, warmup=10), steps


def inception_rows(inception_path):
    # TensorFlow's two passes (benchmarks/bench_inception.py compares the engines).
    standard = classifiers.InceptionClassifier(inception_path, "float32", "tensorflow")
    fast = classifiers.InceptionClassifier(inception_path, "bfloat16", "tensorflow")
    images = np.random.default_rng(0).uniform(-1, 1, (100, 32, 32, 3)).astype(np.float32)
    keras.utils.set_random_seed(0)
    generator = Generator(128, (32, 32, 3), 4)

    def network(classifier):
        def run(count):
            start = time.perf_counter()
            for _ in range(count // len(images)):
                classifier(images)
            return time.perf_counter() - start

        return run

    def end_to_end(count):
        start = time.perf_counter()
        scoring.generator_statistics(generator, standard, count)
        return time.perf_counter() - start

    runners = {
        "Inception network, float32 (images/s)": network(standard),
        "Inception network, bfloat16 (images/s)": network(fast),
        "generator_statistics end to end, float32 (images/s)": end_to_end,
    }
    steps = dict.fromkeys(runners, FLAGS.inception_images)
    return timing.interleaved_rates(runners, steps, FLAGS.rounds, warmup=len(images)), steps


def twin(name):
    """The float32 row a bfloat16 row is compared with."""
    return name.replace("bfloat16", "float32") if "bfloat16" in name else None


def main(argv):
    del argv
    inception_path = FLAGS.inception_path or os.environ.get("KD_GAN_INCEPTION")
    with tempfile.TemporaryDirectory() as folder:
        teacher, _ = mnist_pair("float32")
        cache = TeacherCache(folder, teacher, FLAGS.cache_pairs, seed=0)
        start = time.perf_counter()
        cache.fill(verbose=0)
        fill_rate = FLAGS.cache_pairs / (time.perf_counter() - start)
        rates, steps = training_rows(cache)
    if inception_path:
        inception_rates, inception_steps = inception_rows(inception_path)
        rates.update(inception_rates)
        steps.update(inception_steps)
    baseline = timing.median(rates[BASELINE])
    fresh_float32 = timing.median(rates["MSE, kd_gan Distiller, fresh z, float32"])
    rows = []
    for name, values in rates.items():
        rate = timing.median(values)
        row = {"row": name, "per_s": round(rate, 2), "all_rounds": [round(v, 2) for v in values], "steps": steps[name]}
        if twin(name) in rates:
            row["vs_float32"] = round(rate / timing.median(rates[twin(name)]), 2)
        if "MNIST" in name or name.startswith(("MSE", "joint")):
            row["vs_plain_loop"] = round(rate / baseline, 2)
        if name.startswith("MSE, kd_gan Distiller, cached"):
            row["vs_fresh_z_float32"] = round(rate / fresh_float32, 2)
        rows.append(row)
    cpu = sorted(precision.cpu_flags() & {"amx_bf16", "avx512_bf16", "amx_int8", "avx512f"})
    print(f"batch {FLAGS.batch_size}, median of {FLAGS.rounds} interleaved rounds, {os.cpu_count()} CPU cores "
          f"({platform.processor() or platform.machine()}; flags {', '.join(cpu) or 'unknown'}); "
          f"MNIST pair: latent {MNIST_LATENT}, teacher d={TEACHER_DEPTH}, student d={STUDENT_DEPTH} (1,696:1); "
          f"cache filled at {fill_rate:.0f} pairs/s (float32 teacher)")
    print(f"| {'row':<55} | per s | vs float32 | vs plain loop | cached vs fresh f32 |")
    print(f"|{'-' * 57}|-------|------------|---------------|---------------------|")
    for row in rows:
        cells = [row.get(key) for key in ("vs_float32", "vs_plain_loop", "vs_fresh_z_float32")]
        cells = [f"{value:.2f}" if value is not None else "" for value in cells]
        print(f"| {row['row']:<55} | {row['per_s']:5.1f} | {cells[0]:>10} | {cells[1]:>13} | {cells[2]:>19} |")
    timing.write_results(
        FLAGS.output,
        {k: FLAGS[k].value for k in ("rounds", "batch_size", "seconds", "cache_pairs", "inception_images")},
        rows,
        cpu_flags=cpu,
        cache_fill_pairs_per_s=round(fill_rate, 1),
    )


if __name__ == "__main__":
    app.run(main)
