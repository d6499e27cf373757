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

`--separable` replaces each transposed conv before the image's by nearest
upsampling and a depthwise-separable 5x5 conv (25 + w_out parameters per input
channel instead of 25 w_out); `--zmap` makes z itself the 4x4 map (no projection: widths
8,... for latent 128); `--mixer` reaches the 4x4x`w0` map from z reshaped to
4x4x(latent / 16) by mixing positions (a 16x16 matrix per z channel) and then channels
(a (latent / 16) x `w0` matrix shared by the positions): every unit of the map sees all of
z, for 4,096 / 2,048 + 8 `w0` parameters instead of the dense projection's 2,048 `w0`
(latent 128); `--image_kernel=4` draws the image by a 4x4 transposed conv instead of
the 5x5 (a kernel the stride divides overlaps evenly: no checkerboard; 1,920 parameters
instead of 3,003 at 40 channels); `--cosine` decays the learning rate from 1e-3 to 0
over the run (cosine); `--loss=mse|l1|ssim_l1` picks the pixel term (`ssim_l1`: 0.84 of
`PixelSSIM` and 0.16 of `PixelL1`, the experiment's `--pixel_loss`; default the paper's MSE);
`--ssim_weight=W` adds `PixelSSIM` with weight W beside the `--loss` terms (e.g. `--loss=l1
--ssim_weight=1`: L1 and 1 - SSIM in equal parts); `--learning_rate=R` trains at R instead of
1e-3 (the peak of `--cosine`); `--cache_size=N` trains on N cached teacher outputs instead of
10,000 (a cache of its own, `<run>/teacher_cache_N`; the steps stay 150 an epoch);
`--epochs=N` trains N epochs instead of 100; `--precision=float32` trains in float32 (TF's
depthwise kernels are slower in bfloat16 on CPU); `--teacher=PATH` reads the
teacher from PATH instead of the run.
"""

import json
import math
import os
import sys
import time

import keras

from kd_gan import Distiller, count_parameters
from kd_gan.experiment.recipes import PIXEL_TERMS, pixel_terms
from kd_gan.distillation.structural import PixelSSIM
from kd_gan.training import objectives
from kd_gan.training import optimizers
from kd_gan.models import precision
from kd_gan.models.any_generator import load_generator
from kd_gan.distillation.teacher_cache import TeacherCache


def _upsample(width, separable, use_bias=False, kernel=5):
    """A stride-2 transposed conv, or nearest upsampling and a depthwise-separable conv (`kernel` square)."""
    layers = keras.layers
    if separable:
        return [layers.UpSampling2D(2), layers.SeparableConv2D(width, kernel, padding="same", use_bias=use_bias)]
    return [layers.Conv2DTranspose(width, kernel, strides=2, padding="same", use_bias=use_bias)]


def _mixer_projection(latent_dim, width):
    """z -> 4x4x`width` through a position mix per z channel and a channel mix per position."""
    layers = keras.layers
    channels = latent_dim // 16
    return [layers.Reshape((16, channels)),
            layers.EinsumDense("bqc,qpc->bpc", output_shape=(16, channels)),  # Positions, per z channel.
            layers.EinsumDense("bpc,cw->bpw", output_shape=(16, width)),  # Channels, shared by the positions.
            layers.Reshape((4, 4, width)), layers.BatchNormalization(), layers.ReLU()]


def probe_student(widths, latent_dim=128, separable=False, zmap=False, mixer=False, image_kernel=5):
    """z -> 4x4xwidths[0] -> one 2x upsampling 5x5 conv per width -> 64x64x3 (tanh; an
    `image_kernel`-square transposed conv).

    With `zmap`, z itself is the 4x4 map (widths[0] = latent_dim / 16): no
    projection, so the first map keeps all of z rather than a projection of it.
    """
    layers = keras.layers
    if mixer:
        if latent_dim % 16:
            raise ValueError(f"mixer needs a latent size divisible by 16; got latent_dim={latent_dim}")
        network = [keras.Input((latent_dim,))] + _mixer_projection(latent_dim, widths[0])
    elif zmap:
        if widths[0] * 16 != latent_dim:
            raise ValueError(f"zmap needs widths[0] = latent_dim / 16 = {latent_dim / 16}; got widths={widths}")
        network = [keras.Input((latent_dim,)), layers.Reshape((4, 4, widths[0]))]
    else:
        network = [keras.Input((latent_dim,)), layers.Dense(16 * widths[0], use_bias=False),
                   layers.BatchNormalization(), layers.ReLU(), layers.Reshape((4, 4, widths[0]))]
    for width in widths[1:]:
        network += _upsample(width, separable) + [layers.BatchNormalization(), layers.ReLU()]
    network += _upsample(3, False, use_bias=True, kernel=image_kernel) + [layers.Activation("tanh", dtype="float32")]
    return keras.Sequential(network, name="probe_student")


STEPS_PER_EPOCH = 150


def main(run, widths, separable=False, teacher_path=None, compute="bfloat16", zmap=False, mixer=False, epochs=100,
         loss="mse", image_kernel=5, cosine=False, ssim_weight=0.0, learning_rate=1e-3,
         cache_size=10000):
    teacher = load_generator(teacher_path or os.path.join(run, "teachers", "d32", "generator.keras"))
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if compute == "bfloat16" else "float32")
    student = probe_student(widths, separable=separable, zmap=zmap, mixer=mixer, image_kernel=image_kernel)
    keras.mixed_precision.set_global_policy("float32")
    parameters = count_parameters(student)
    print(f"parameters {parameters:,}, compression {count_parameters(teacher) / parameters:.1f}:1", flush=True)
    losses, weights = pixel_terms(loss)  # The experiment's --pixel_loss terms and their weights.
    if ssim_weight:
        losses, weights = losses + [PixelSSIM(scales=None)], weights + [ssim_weight]  # As many scales as fit.
    distiller = Distiller(precision.with_policy(teacher, precision.policy(compute)), student, loss="mse", seed=0,
                          distillation_losses=losses, distillation_loss_weights=weights)
    rate = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * STEPS_PER_EPOCH) if cosine else learning_rate
    distiller.compile(student_optimizer=optimizers.objective_optimizer(objectives.NON_SATURATING, rate, 0.999))
    cache_folder = "teacher_cache" + ("" if cache_size == 10000 else f"_{cache_size}")
    cache = TeacherCache(os.path.join(run, cache_folder), teacher, size=cache_size)
    cache.fill()
    start = time.time()
    distiller.fit(cache.dataset(batch_size=64), epochs=epochs, steps_per_epoch=STEPS_PER_EPOCH, verbose=2)
    folder = os.path.join(run, "probe_layout")
    os.makedirs(folder, exist_ok=True)
    name = (("z" if zmap else "") + ("mix" if mixer else "") + ("sep" if separable else "w") + "-".join(map(str, widths))
            + ("" if image_kernel == 5 else f"_k{image_kernel}") + ("_cosine" if cosine else ""))
    path = os.path.join(folder, name + ("" if epochs == 100 else f"_e{epochs}") + ("" if loss == "mse" else f"_{loss}")
                        + (f"_ssim{ssim_weight:g}" if ssim_weight else "") + ("" if learning_rate == 1e-3 else f"_lr{learning_rate:g}")
                        + ("" if cache_size == 10000 else f"_cache{cache_size}")
                        + f"_{compute}.keras")
    precision.float32_copy(student).save(path)
    record = {"widths": widths, "separable": separable, "zmap": zmap, "mixer": mixer, "image_kernel": image_kernel, "cosine": cosine,
              "epochs": epochs, "loss": loss, "ssim_weight": ssim_weight, "learning_rate": learning_rate,
              "cache_size": cache_size,
              "precision": compute, "parameters": parameters, "train_s": round(time.time() - start, 1), "path": path}
    with open(path + ".json", "w") as file:
        json.dump(record, file, indent=2)
    print(json.dumps(record), flush=True)


def _positive(text, zero=False):
    """Whether `text` reads as a finite number above 0 (or at least 0 with `zero`); a bare switch does not."""
    if isinstance(text, bool):
        return False
    try:
        value = float(text)
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and (value >= 0 if zero else value > 0)


if __name__ == "__main__":
    options = dict(argument[2:].split("=", 1) if "=" in argument else (argument[2:], True)
                   for argument in sys.argv[3:])
    switches = ("separable", "zmap", "mixer", "cosine")
    unknown = set(options) - {"epochs", "teacher", "precision", "loss", "image_kernel", "ssim_weight", "learning_rate", "cache_size",
                              *switches}
    if (unknown or options.get("precision", "bfloat16") not in ("bfloat16", "float32")
            or options.get("loss", "mse") not in PIXEL_TERMS or not str(options.get("epochs", 100)).isdigit()
            or not str(options.get("image_kernel", 5)).isdigit() or not str(options.get("cache_size", 1)).isdigit()
            or int(options.get("cache_size", 1)) < 1 or int(options.get("image_kernel", 5)) < 1
            or any(options.get(name, True) is not True for name in switches) or int(options.get("epochs", 100)) < 1
            or not _positive(options.get("ssim_weight", 0), zero=True) or not _positive(options.get("learning_rate", 1e-3))
            or ("ssim_weight" in options and options.get("loss") == "ssim_l1")):
        sys.exit(f"options {sys.argv[3:]}: allowed --separable, --zmap, --mixer (switches: no =value), --epochs=N (>= 1), --image_kernel=K (>= 1), --cosine, --teacher=PATH, "
                 "--ssim_weight=W (>= 0; not with --loss=ssim_l1, which has its SSIM term), --learning_rate=R (> 0), --cache_size=N (>= 1), "
                 f"--loss={'|'.join(PIXEL_TERMS)}, "
                 "--precision=bfloat16|float32")
    main(sys.argv[1], [int(width) for width in sys.argv[2].split(",")], separable=bool(options.get("separable")),
         zmap=bool(options.get("zmap")), mixer=bool(options.get("mixer")), epochs=int(options.get("epochs", 100)),
         teacher_path=options.get("teacher"), compute=options.get("precision", "bfloat16"),
         loss=options.get("loss", "mse"), image_kernel=int(options.get("image_kernel", 5)),
         cosine=bool(options.get("cosine")), ssim_weight=float(options.get("ssim_weight", 0)),
         learning_rate=float(options.get("learning_rate", 1e-3)), cache_size=int(options.get("cache_size", 10000)))
