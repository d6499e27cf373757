"""Probe: how fast an MNIST teacher learns digits, scored after every epoch.

Trains one DCGAN pair on MNIST with the given settings (those of
`run_experiment.py`'s GAN stages: `kd_gan.GAN`, Adam per objective, the
generator's weight average) and after each epoch scores the generator as a
run would save it (the average written in and its batch-norm statistics
recomputed, on a copy: training goes on from the raw weights) with the
shipped MNIST classifier: MNIST score and FID of `--eval_samples` samples
against the 10,000 test images. Prints one row per epoch with the training
seconds so far (scoring excluded) and writes JSON with the CPU it ran on.
What it is for: choosing the main job's teacher recipe by score per CPU
second.

    python benchmarks/probe_mnist_teacher.py --data_dir=../shared/data --depth=32 --epochs=5 \\
        --objective=hinge --ema_decay=0.999 --output=runs/probe_mnist_teacher/d32_hinge.json
"""

import json
import os
import time

import keras
from absl import app, flags

flags.DEFINE_string("data_dir", None, "Folder with the local MNIST files ($KD_GAN_DATA_DIR).")
flags.DEFINE_integer("depth", 32, "Teacher depth d.", lower_bound=1)
flags.DEFINE_integer("discriminator_depth", None, "Discriminator depth (default: the teacher's).", lower_bound=1)
flags.DEFINE_integer("latent_dim", 128, "Size of z.", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Batch size.", lower_bound=1)
flags.DEFINE_integer("epochs", 5, "Epochs (one scoring after each).", lower_bound=1)
flags.DEFINE_string("objective", "ns", "Adversarial objective: ns, hinge or wgan-gp.")
flags.DEFINE_float("learning_rate", None, "Generator learning rate (default: the objective's).")
flags.DEFINE_float("d_learning_rate", None, "Discriminator learning rate (default: --learning_rate).")
flags.DEFINE_float("ema_decay", 0.999, "Weight average of the generator (0: none).")
flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"], "Training precision.")
flags.DEFINE_integer("eval_samples", 10_000, "Samples per scoring.", lower_bound=2)
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_string("output", "runs/probe_mnist_teacher/probe.json", "JSON output path.")
FLAGS = flags.FLAGS


class ScoreEachEpoch(keras.callbacks.Callback):
    """Scores the generator as it would be saved after every epoch, training time apart."""

    def __init__(self, trainer, classifier, reference):
        super().__init__()
        self.trainer, self.classifier, self.reference = trainer, classifier, reference
        self.rows, self.trained = [], 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        from kd_gan.evaluation import scoring
        from kd_gan.training import weight_average

        self.trained += time.perf_counter() - self.start
        generator = self.trainer.generator
        raw = [variable.numpy() for variable in generator.weights]
        weight_average.finalize(generator, self.trainer.g_optimizer, FLAGS.latent_dim, FLAGS.seed)
        record = scoring.evaluate_generator(generator, self.classifier, self.reference, FLAGS.eval_samples, FLAGS.seed)
        for variable, value in zip(generator.weights, raw):
            variable.assign(value)
        row = dict(epoch=epoch + 1, train_seconds=round(self.trained, 1), mnist_score=record.get("mnist_score"),
                   fid=record.get("fid"), d_loss=float(logs.get("d_loss", float("nan"))), g_loss=float(logs.get("g_loss", float("nan"))))
        self.rows.append(row)
        print(f"| {row['epoch']} | {row['train_seconds']} | {row['mnist_score']:.2f} | {row['fid']:.1f} | "
              f"{row['d_loss']:.3f} | {row['g_loss']:.3f} |", flush=True)


def main(argv):
    del argv
    from kd_gan import GAN, Discriminator, Generator, data
    from kd_gan.data import loading
    from kd_gan.evaluation import classifiers, scoring
    from kd_gan.models import precision
    from kd_gan.models.precision import cpu_record
    from kd_gan.training import optimizers

    keras.utils.set_random_seed(FLAGS.seed)
    policy = precision.policy(FLAGS.precision)
    shape = data.image_shape("mnist")
    generator = Generator(FLAGS.latent_dim, shape, FLAGS.depth, dtype=policy)
    discriminator = Discriminator(shape, FLAGS.discriminator_depth or FLAGS.depth, dtype=policy)
    trainer = GAN(generator, discriminator, seed=FLAGS.seed, objective=FLAGS.objective)
    trainer.compile(
        g_optimizer=optimizers.objective_optimizer(FLAGS.objective, FLAGS.learning_rate, FLAGS.ema_decay),
        d_optimizer=optimizers.objective_optimizer(FLAGS.objective, FLAGS.d_learning_rate or FLAGS.learning_rate),
    )
    classifier = classifiers.classifier_for("mnist")
    reference = scoring.dataset_statistics(classifier, "mnist", "test", data_dir=FLAGS.data_dir)
    train = data.load_dataset("mnist", "train", FLAGS.batch_size, data_dir=FLAGS.data_dir, seed=FLAGS.seed)
    steps = loading.split_size("mnist", "train", data_dir=FLAGS.data_dir) // FLAGS.batch_size
    scores = ScoreEachEpoch(trainer, classifier, reference)
    cpu = cpu_record()
    print(f"CPU: {cpu['model']} ({', '.join(cpu['flags']) or 'no AMX/AVX512'}); {steps} steps an epoch\n")
    print("| epoch | train s | MNIST score | FID | d_loss | g_loss |\n|---|---|---|---|---|---|")
    trainer.fit(train.repeat(), epochs=FLAGS.epochs, steps_per_epoch=steps, verbose=0, callbacks=[scores])
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    settings = {name: FLAGS[name].value for name in ("depth", "discriminator_depth", "latent_dim", "batch_size", "epochs",
                                                     "objective", "learning_rate", "d_learning_rate", "ema_decay",
                                                     "precision", "eval_samples", "seed")}
    with open(FLAGS.output, "w") as file:
        json.dump({"settings": settings, "cpu": cpu, "epochs": scores.rows}, file, indent=1)
    print(f"\nWrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
