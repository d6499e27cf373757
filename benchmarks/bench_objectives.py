"""Which adversarial objective gives the best teacher per CPU minute, and what
the generator's weight average (EMA) adds.

Each objective trains the same DCGAN pair for the same wall-clock budget, in
one process, one after another (the same data order and seed); then its
averaged generator (what the experiment saves with `--ema_decay`, batch-norm
statistics recomputed for it) and its raw generator (the weights the
optimizer steps, their own statistics) are scored on the same z against
the full training split's statistics. FIDs are comparable only at equal
sample counts: the table is a ranking, not the 10,000-sample protocol.

    python benchmarks/bench_objectives.py --data_dir=../shared/data \\
        --inception_path=../shared/data/inception/fid_inception_v3 --minutes=10

Writes the table, per-objective generators (`<objective>_ema.keras`,
`<objective>_raw.keras`) and `objectives.json` under `--output_dir`.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from absl import app, flags, logging  # noqa: E402

import timing  # noqa: E402  (benchmarks/timing.py)
from kd_gan import GAN, Discriminator, Generator
from kd_gan.evaluation import classifiers
from kd_gan.data import loading as data
from kd_gan.training import objectives
from kd_gan.training import optimizers
from kd_gan.models import precision
from kd_gan.evaluation import scoring
from kd_gan.experiment.evaluator import REFERENCE_SPLITS  # noqa: E402

flags.DEFINE_enum("dataset", "cifar10", ["cifar10", "celeb_a"], "Colour data set.")
flags.DEFINE_string("data_dir", None, "Local data (default $KD_GAN_DATA_DIR).")
flags.DEFINE_string("inception_path", None, "FID Inception SavedModel (default $KD_GAN_INCEPTION).")
flags.DEFINE_list("objectives", list(objectives.OBJECTIVES), "Objectives to compare.")
flags.DEFINE_integer("depth", 32, "Depth scale factor d of generator and discriminator.")
flags.DEFINE_float("minutes", 10.0, "Training wall time per objective.")
flags.DEFINE_float("ema_decay", 0.999, "Momentum of the generator's weight average.")
flags.DEFINE_enum("precision", "bfloat16", list(precision.PRECISIONS), "Training precision.")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_integer("eval_samples", 2000, "Generated images scored per generator.")
flags.DEFINE_integer("seed", 0, "Seed of weights, data order and z.")
flags.DEFINE_string("output_dir", "runs/objectives_cifar10", "Where the table, JSON and generators go.")
FLAGS = flags.FLAGS

LATENT_DIM = 128
STEPS_PER_EPOCH = 100  # Granularity of the time budget.


class TimeBudget(keras.callbacks.Callback):
    """Stops `fit` once `seconds` have passed, keeping the raw generator's weights
    (Keras writes the averages into the generator when fit ends)."""

    def __init__(self, seconds, generator):
        super().__init__()
        self.seconds, self.generator = seconds, generator
        self.raw_weights = None

    def on_train_begin(self, logs=None):
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        self.epochs, self.logs = epoch + 1, dict(logs or {})
        if time.time() - self.start >= self.seconds:
            self.model.stop_training = True
        if self.model.stop_training:
            self.raw_weights = self.generator.get_weights()


def train(objective, policy):
    keras.utils.set_random_seed(FLAGS.seed)
    shape = data.image_shape(FLAGS.dataset)
    generator = Generator(LATENT_DIM, shape, FLAGS.depth, dtype=policy)
    model = GAN(generator, Discriminator(shape, FLAGS.depth, dtype=policy), seed=FLAGS.seed, objective=objective)
    model.compile(
        g_optimizer=optimizers.objective_optimizer(objective, ema_decay=FLAGS.ema_decay),
        d_optimizer=optimizers.objective_optimizer(objective),
    )
    images = data.load_dataset(FLAGS.dataset, "train", FLAGS.batch_size, data_dir=FLAGS.data_dir, seed=FLAGS.seed)
    budget = TimeBudget(FLAGS.minutes * 60, generator)
    start = time.time()
    model.fit(images.repeat(), epochs=10**6, steps_per_epoch=STEPS_PER_EPOCH, verbose=0, callbacks=[budget])
    seconds = time.time() - start
    averaged = precision.float32_copy(generator)
    raw = type(averaged).from_config(averaged.get_config())  # A copy of its own, whatever the precision.
    raw.set_weights(budget.raw_weights)
    steps = budget.epochs * STEPS_PER_EPOCH
    logging.info("%s: %d generator steps in %.0f s, losses %s", objective, steps, seconds, budget.logs)
    return {"ema": averaged, "raw": raw}, {
        "generator_steps": steps, "critic_steps": model.critic_steps, "wall_time_s": round(seconds, 1),
        "steps_per_s": round(steps / seconds, 2), "final_losses": {k: float(v) for k, v in budget.logs.items()},
    }


def main(argv):
    del argv
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    classifier = classifiers.classifier_for(FLAGS.dataset, FLAGS.inception_path)
    reference = scoring.dataset_statistics(classifier, FLAGS.dataset, REFERENCE_SPLITS[FLAGS.dataset], data_dir=FLAGS.data_dir)
    policy = precision.policy(FLAGS.precision)
    rows = []
    for objective in FLAGS.objectives:
        generators, record = train(objectives.check_objective(objective), policy)
        for weights, generator in generators.items():
            generator.save(os.path.join(FLAGS.output_dir, f"{objective}_{weights}.keras"))
            quality = scoring.evaluate_generator(generator, classifier, reference, FLAGS.eval_samples, seed=FLAGS.seed + 1)
            rows.append({"objective": objective, "weights": weights, **record, "quality": quality})
            print(f"{objective:8s} {weights:4s} steps {record['generator_steps']:6d} in {record['wall_time_s']:6.0f} s  "
                  f"FID {quality['fid']:7.2f}  KID {quality['kid']:.4f}", flush=True)
    settings = {key: FLAGS[key].value for key in ("dataset", "depth", "minutes", "ema_decay", "precision", "batch_size", "eval_samples", "seed")}
    timing.write_results(os.path.join(FLAGS.output_dir, "objectives.json"), settings, rows, reference=reference.source)
    best = min(rows, key=lambda row: row["quality"]["fid"])
    print(f"Best per {FLAGS.minutes:g} CPU minutes: {best['objective']} ({best['weights']} weights), FID {best['quality']['fid']:.2f} "
          f"at {FLAGS.eval_samples} samples against {reference.source}")


if __name__ == "__main__":
    app.run(main)
