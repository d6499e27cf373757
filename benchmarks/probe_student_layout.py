"""Probe: a CelebA student of the d=1 budget laid out for the image, not the projection.

A DCGAN d=1 student (18,052 parameters at 64x64x3) spends 16,384 of them (91%)
on the projection from z to a 4x4x8 map and draws the image through 4, 2 and
1 channels. This probe trains a student of the same budget that projects to
4x4x`w0` and keeps `w1, w2, ...` channels on the way up, with what the MSE
students of a run used: the run's teacher and its teacher cache, pixel MSE,
Adam 1e-3 (beta 0.5) with the weight average (0.999), bfloat16, 100 epochs of
150 steps. Writes `<run>/probe_layout/w<widths>.keras` and its JSON; score it
with `python -m kd_gan.evaluate --dataset=celeb_a --generator=<that file>
--num_samples=10000 --inception_precision=bfloat16 --seed=1`.

    python benchmarks/probe_student_layout.py runs/celeb_a_t150 4,12,12,12
"""

import json
import os
import sys
import time

import keras

from kd_gan import Distiller, count_parameters
from kd_gan.training import objectives
from kd_gan.training import optimizers
from kd_gan.models import precision
from kd_gan.models.any_generator import load_generator
from kd_gan.distillation.teacher_cache import TeacherCache


def probe_student(widths, latent_dim=128):
    """z -> 4x4xwidths[0] -> one stride-2 5x5 transposed conv per width -> 64x64x3 (tanh)."""
    layers = keras.layers
    network = [keras.Input((latent_dim,)), layers.Dense(16 * widths[0], use_bias=False), layers.BatchNormalization(),
               layers.ReLU(), layers.Reshape((4, 4, widths[0]))]
    for width in widths[1:]:
        network += [layers.Conv2DTranspose(width, 5, strides=2, padding="same", use_bias=False),
                    layers.BatchNormalization(), layers.ReLU()]
    network += [layers.Conv2DTranspose(3, 5, strides=2, padding="same"), layers.Activation("tanh", dtype="float32")]
    return keras.Sequential(network, name="probe_student")


def main(run, widths):
    teacher = load_generator(os.path.join(run, "teachers", "d32", "generator.keras"))
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    student = probe_student(widths)
    keras.mixed_precision.set_global_policy("float32")
    parameters = count_parameters(student)
    print(f"parameters {parameters:,}, compression {count_parameters(teacher) / parameters:.1f}:1", flush=True)
    distiller = Distiller(precision.with_policy(teacher, precision.policy("bfloat16")), student, loss="mse", seed=0)
    distiller.compile(student_optimizer=optimizers.objective_optimizer(objectives.NON_SATURATING, 1e-3, 0.999))
    cache = TeacherCache(os.path.join(run, "teacher_cache"), teacher, size=10000)
    cache.fill()
    start = time.time()
    distiller.fit(cache.dataset(batch_size=64), epochs=100, steps_per_epoch=150, verbose=2)
    folder = os.path.join(run, "probe_layout")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "w" + "-".join(map(str, widths)) + ".keras")
    precision.float32_copy(student).save(path)
    record = {"widths": widths, "parameters": parameters, "train_s": round(time.time() - start, 1), "path": path}
    with open(path + ".json", "w") as file:
        json.dump(record, file, indent=2)
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], [int(width) for width in sys.argv[2].split(",")])
