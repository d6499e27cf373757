"""Distil your own Keras generator into one about a hundred times smaller.

Your generator is any Keras model from z (float32 `[batch, latent_dim]`) to
28x28x1 images in [-1, 1] (the joint scheme trains on MNIST; for other data,
swap `load_dataset`'s name and the student's layout). Without `--teacher`,
this script first trains a plain Keras DCGAN on MNIST to stand for it. The
students are the same architecture at a fraction of its width, trained with
`model.fit`:

1. the paper's MSE scheme: match the teacher's image for each z (no real
   data);
2. the joint scheme: a GAN loss against a small discriminator on real images,
   plus the MSE to the teacher.

Each student is saved as a `.keras` file, with its held-out MSE to the teacher
before and after distillation in `summary.json`.

    python examples/distil_your_generator.py --data_dir=../shared/data
    python examples/distil_your_generator.py --teacher=my_generator.keras --data_dir=../shared/data
    python examples/distil_your_generator.py --tiny --data_dir=../shared/data   # seconds
"""

import json
import os

import keras
import numpy as np
from absl import app, flags

import kd_gan
from kd_gan.data import load_dataset
from kd_gan.evaluation import latent_fidelity
from kd_gan.models import check_generator, latent_size

flags.DEFINE_string("teacher", None, "Your generator (.keras or SavedModel folder); default: train a plain Keras DCGAN.")
flags.DEFINE_string("data_dir", None, "MNIST files or a tfds data dir (default: $KD_GAN_DATA_DIR, else tfds).")
flags.DEFINE_string("output_dir", "runs/distil_your_generator", "Where the students and summary.json go.")
flags.DEFINE_integer("student_width", 1, "Student width: filters of its last hidden layer (the teacher's: 64; 1 makes a student ~95x smaller).")
flags.DEFINE_integer("epochs", 5, "Epochs of each stage.")
flags.DEFINE_integer("steps_per_epoch", 900, "Steps per epoch.")
flags.DEFINE_boolean("tiny", False, "Tiny models and a few steps (what the tests run).")
flags.DEFINE_integer("seed", 0, "Seed of the weights, the latent draws and the data order.")
FLAGS = flags.FLAGS

LATENT_DIM = 64
BATCH_SIZE = 64


def dcgan_generator(width, latent_dim=LATENT_DIM, name="generator"):
    """A plain Keras DCGAN generator of 28x28x1 images in [-1, 1]: what "your generator" stands for."""
    return keras.Sequential(
        [
            keras.Input((latent_dim,)),
            keras.layers.Dense(7 * 7 * 2 * width, use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Reshape((7, 7, 2 * width)),
            keras.layers.Conv2DTranspose(width, 5, strides=2, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Conv2DTranspose(1, 5, strides=2, padding="same", activation="tanh"),
        ],
        name=name,
    )


def heldout_mse(teacher, student, latent_dim, samples=256):
    """Mean squared difference of student and teacher on z the students never train on."""
    z = np.random.default_rng(1234).standard_normal((samples, latent_dim)).astype("float32")
    return latent_fidelity(student, teacher, z=z)["mse"]


def main(argv):
    del argv
    seed = FLAGS.seed
    keras.utils.set_random_seed(seed)
    epochs, steps = (1, 20) if FLAGS.tiny else (FLAGS.epochs, FLAGS.steps_per_epoch)
    batch_size = 4 if FLAGS.tiny else BATCH_SIZE
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    # Endless: epochs of `steps` batches each, whatever the split's size.
    images = load_dataset("mnist", "train", batch_size=batch_size, data_dir=FLAGS.data_dir, seed=seed).repeat()

    if FLAGS.teacher:
        teacher = kd_gan.load_generator(FLAGS.teacher)
        check_generator(teacher, latent_size(teacher), (28, 28, 1), source=f"--teacher={FLAGS.teacher}")
    else:
        # Stand-in for your generator: a plain Keras model, trained as a GAN.
        teacher = dcgan_generator(width=8 if FLAGS.tiny else 64, name="teacher")
        gan = kd_gan.GAN(teacher, kd_gan.Discriminator((28, 28, 1), depth=2 if FLAGS.tiny else 32), seed=seed)
        gan.compile()
        gan.fit(images, epochs=epochs, steps_per_epoch=steps, verbose=2)
        teacher.save(os.path.join(FLAGS.output_dir, "teacher.keras"))
    latent_dim = latent_size(teacher)
    summary = {}

    # 1. MSE: fresh z every step, no real data (the paper's Section 3.1).
    student = dcgan_generator(FLAGS.student_width, latent_dim, name="student_mse")
    before = heldout_mse(teacher, student, latent_dim)
    distiller = kd_gan.Distiller(teacher, student, loss="mse", seed=seed)
    distiller.compile(student_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5))
    distiller.fit(kd_gan.latent_dataset(batch_size, latent_dim, seed=seed), epochs=epochs, steps_per_epoch=steps, verbose=2)
    student.save(os.path.join(FLAGS.output_dir, "student_mse.keras"))
    summary["mse"] = {"mse_to_teacher_before": before, "mse_to_teacher_after": heldout_mse(teacher, student, latent_dim)}

    # 2. Joint: GAN loss on real images + MSE to the teacher (Section 3.2).
    student = dcgan_generator(FLAGS.student_width, latent_dim, name="student_joint")
    before = heldout_mse(teacher, student, latent_dim)
    distiller = kd_gan.Distiller(
        teacher, student, loss="joint", discriminator=kd_gan.Discriminator((28, 28, 1), depth=1), mse_weight=1.0, seed=seed
    )
    distiller.compile()
    distiller.fit(images, epochs=epochs, steps_per_epoch=steps, verbose=2)
    student.save(os.path.join(FLAGS.output_dir, "student_joint.keras"))
    summary["joint"] = {"mse_to_teacher_before": before, "mse_to_teacher_after": heldout_mse(teacher, student, latent_dim)}

    summary.update(
        teacher_parameters=kd_gan.count_parameters(teacher), student_parameters=kd_gan.count_parameters(student),
        compression_ratio=kd_gan.compression_ratio(teacher, student),
    )
    with open(os.path.join(FLAGS.output_dir, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    print(f"Teacher {summary['teacher_parameters']:,} parameters, students {summary['student_parameters']:,} "
          f"({summary['compression_ratio']:.0f}:1)")
    for scheme in ("mse", "joint"):
        record = summary[scheme]
        print(f"{scheme:>5} student: MSE to the teacher {record['mse_to_teacher_before']:.4f} -> "
              f"{record['mse_to_teacher_after']:.4f}, saved as {FLAGS.output_dir}/student_{scheme}.keras")


if __name__ == "__main__":
    app.run(main)
