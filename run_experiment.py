"""Compress a GAN generator by knowledge distillation: train (and choose) a
teacher, distil students of several sizes, train equal-size scratch GANs,
evaluate everything and write the report.

Examples:
    python run_experiment.py --dataset=mnist --preset=quick --loss=both --data_dir=../shared/data
    python run_experiment.py --dataset=celeb_a --loss=joint
"""

import dataclasses
import os

# TensorFlow's C++ INFO lines once its logging starts (tf.data buffer sizes, CPU feature notes) stay out of the
# console; its warnings and errors show. A value set by the user is kept.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from absl import app, flags, logging  # noqa: E402 (after TensorFlow's log level)

from kd_gan import experiment
from kd_gan.data import loading as data
from kd_gan.training import objectives
from kd_gan.export import converters as export_lib
from kd_gan.models import precision as precision_lib
from kd_gan._console import quiet_libraries
from kd_gan.errors import InputError, machine_error_message
from kd_gan.experiment.presets import NO_PRESET

_DEFAULTS = experiment.ExperimentConfig()

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", _DEFAULTS.dataset, list(data.DATASETS), "Data set; 'images': your folder or tar of PNG/JPEG given as --data_dir, at --image_size.")
flags.DEFINE_enum("image_size", None, [str(size) for size in data.IMAGE_SIZES], "Image size for --dataset=images (centre crop and resize, RGB).")
flags.DEFINE_list("loss", [_DEFAULTS.loss], f"Student losses, a student of each: mse (pixel MSE to the teacher), joint (plus a GAN loss on real images), adversarial (plus a GAN loss against a discriminator of the teacher's images, no real data), adversarial_z (its discriminator also given each image's z), both (mse,joint), none (no students: teachers and scratch GANs only); any of {list(experiment.LOSS_CHOICES)}.")
flags.DEFINE_enum("preset", None, list(experiment.PRESETS) + [NO_PRESET], "Preset values (explicit flags override them): main (the MNIST main job, a few minutes on a 2-core CPU), quick (the smoke run, ~10 min for MNIST on a 2-core CPU), cpu (a teacher worth distilling in about an hour of a 2-core CPU, then the students; see docs/EXPERIMENT.md), paper (the paper's scale, for a GPU) or none. Default: main for mnist, cpu for cifar10 and celeb_a, none for images.")
flags.DEFINE_string("output_dir", None, "Output folder (default: runs/<dataset>_<loss>[_<preset>]).")
flags.DEFINE_boolean("overwrite", False, "Delete an existing run with another configuration in output_dir and start again.")
flags.DEFINE_string("data_dir", None, "Local data: a prepared tfds data dir or the original files (default: $KD_GAN_DATA_DIR, else tfds download).")
flags.DEFINE_string("teacher_path", None, "Distil this generator (.keras file or SavedModel dir) instead of training teachers.")
flags.DEFINE_list("teacher_depths", [str(d) for d in _DEFAULTS.teacher_depths], "Depth scale factors d of the teacher candidates; the best by FID is kept.")
flags.DEFINE_list("student_depths", [str(d) for d in _DEFAULTS.student_depths], "Depth scale factors d of the students and scratch GANs.")
flags.DEFINE_list("student_widths", [], "Width profiles of further students and their scratch GANs, each the channels of the feature maps from the 4x4 projection on joined by '-', e.g. 4-12-12-12 (64x64) or 4-8-8 (28x28, 32x32).")
flags.DEFINE_list("student_init", list(_DEFAULTS.student_inits), "How students start, each a student of its own: random (the paper's), pruned (the teacher pruned to the student's widths) and/or refit (pruned, then each layer refit by least squares to the teacher's feature maps).")
flags.DEFINE_string("student_start", None, "Start every student from this .keras generator's weights instead of --student_init (e.g. a pixel-distilled student fine-tuned with --loss=joint); --student_depths/--student_widths/--student_block must name its one architecture; scratch GANs start from random weights.")
flags.DEFINE_list("student_block", list(_DEFAULTS.student_blocks), "How the hidden stages of students and scratch GANs upsample, each an architecture of its own: transposed (the paper's stride-2 transposed convolution) and/or separable (nearest upsampling, then a depthwise-separable convolution: about four times the channels at a budget; not pruned).")
flags.DEFINE_integer("discriminator_depth", None, "d of the discriminators of scratch GANs and joint students (default: the student's d, or the last width of its profile).", lower_bound=1)
flags.DEFINE_integer("teacher_discriminator_depth", _DEFAULTS.teacher_discriminator_depth, "d of the teacher candidates' discriminators (default: each teacher's own d).", lower_bound=1)
flags.DEFINE_integer("latent_dim", _DEFAULTS.latent_dim, "Size of the latent vector z.", lower_bound=1)
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Global batch size.", lower_bound=1)
flags.DEFINE_boolean("scratch", _DEFAULTS.scratch, "Also train every student size from scratch as an ordinary GAN (the baseline); --noscratch: students only.")
flags.DEFINE_integer("teacher_epochs", _DEFAULTS.teacher_epochs, "Epochs of each teacher candidate.", lower_bound=0)
flags.DEFINE_integer("student_epochs", _DEFAULTS.student_epochs, "Epochs of each student and scratch GAN.", lower_bound=0)
flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (default: one pass over the data).", lower_bound=1)
flags.DEFINE_enum("objective", _DEFAULTS.objective, list(objectives.OBJECTIVES), "Adversarial objective of teachers, scratch GANs and joint students: ns (non-saturating, the paper's), hinge, or wgan-gp (5 critic steps, gradient penalty 10, Adam 1e-4 betas 0.5/0.9).")
flags.DEFINE_integer("critic_steps", None, "Discriminator steps per generator step (default: the objective's: 5 for wgan-gp, else 1).", lower_bound=1)
flags.DEFINE_float("learning_rate", None, "Adam learning rate of the GAN generators (default: the objective's: 2e-4, 1e-4 for wgan-gp).")
flags.DEFINE_float("d_learning_rate", None, "Adam learning rate of the discriminators (default: --learning_rate).")
flags.DEFINE_float("ema_decay", _DEFAULTS.ema_decay, "Moving average of every generator's weights with this momentum (e.g. 0.999): what is saved, scored and distilled; 0: none.")
flags.DEFINE_float("student_learning_rate", _DEFAULTS.student_learning_rate, "Adam learning rate of the distilled students (the start of --student_lr_schedule=cosine).")
flags.DEFINE_enum("student_lr_schedule", _DEFAULTS.student_lr_schedule, list(experiment.recipes.LR_SCHEDULES), "The students' learning rate over their steps: constant, or cosine (decays from --student_learning_rate to 0; int8 fine-tuning keeps a constant tenth).")
flags.DEFINE_float("mse_weight", _DEFAULTS.mse_weight, "Weight of the pixel term (--pixel_loss) in the joint and adversarial losses.")
flags.DEFINE_float("mse_weight_end", None, "With --loss=joint/adversarial: the pixel weight decays linearly from --mse_weight to this over each student's steps (TinyGAN); default: constant.")
flags.DEFINE_enum(
    "pixel_loss", _DEFAULTS.pixel_loss, list(experiment.recipes.PIXEL_TERMS),
    "The students' pixel term, weighted as the MSE would be: "
    + "; ".join(f"{name}: {term.words}" for name, term in experiment.recipes.PIXEL_TERMS.items()) + ".",
)
flags.DEFINE_list("distillation", list(_DEFAULTS.distillation), "Student kinds, each a student of every size and loss: pixel (the paper's MSE), features (plus feature maps through adapters), perceptual (plus a frozen discriminator's features), features+perceptual.")
flags.DEFINE_float("feature_weight", _DEFAULTS.feature_weight, "Weight of the feature term of 'features' students.")
flags.DEFINE_float("perceptual_weight", _DEFAULTS.perceptual_weight, "Weight of the perceptual term of 'perceptual' students.")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Random seed.")
flags.DEFINE_integer("grid_columns", _DEFAULTS.grid_columns, "Samples per row of the grids.", lower_bound=2)
flags.DEFINE_integer("eval_samples", None, "Generated images per model for the metrics (default: the preset's, 10,000 with the colour sets' default cpu preset; without a preset 10,000 for mnist, 1,000 otherwise; 0 skips).", lower_bound=0)
flags.DEFINE_integer("reference_samples", None, "Real images of the FID reference: default all of the reference split (computed once, cached); N: a seeded random subset.", lower_bound=2)
flags.DEFINE_string("inception_path", None, "Local FID Inception SavedModel (default: $KD_GAN_INCEPTION, else TF-Hub).")
flags.DEFINE_enum("inception_precision", _DEFAULTS.inception_precision, ["auto", "float32", "bfloat16"], "FID Inception pass: auto (bfloat16 on CPUs with bfloat16 units (AMX, AVX512-BF16), else float32), float32 or bfloat16 (FID within 0.5% of float32's on the reference pair; not for mnist).")
flags.DEFINE_enum("inception_engine", _DEFAULTS.inception_engine, ["auto", "tensorflow", "openvino"], "What runs the FID Inception: auto (OpenVINO on a CPU where installed, else TensorFlow), tensorflow or openvino.")
flags.DEFINE_list("export", [], "Export every student at the end: any of tflite, saved_model.")
flags.DEFINE_list("quantization", ["none"], "TFLite variants to export: any of none, float16, dynamic_int8, int8.")
flags.DEFINE_integer("qat_epochs", _DEFAULTS.qat_epochs, "Also fine-tune each student this many epochs under int8 rounding before its int8 export (needs --export=tflite --quantization=...,int8).")
flags.DEFINE_integer("teacher_cache", _DEFAULTS.teacher_cache, "0: students run the teacher on fresh z each step; N: they learn from N stored (z, teacher(z)) pairs per pool, filled once and shared.", lower_bound=0)
flags.DEFINE_integer("cache_refresh_epochs", None, "With --teacher_cache: a fresh pool of pairs every this many student epochs (default: one pool).", lower_bound=1)
flags.DEFINE_enum("cache_storage", _DEFAULTS.cache_storage, ["uint8", "float16"], "How cached teacher images are stored.")
flags.DEFINE_enum("precision", _DEFAULTS.precision, list(precision_lib.TRAINING_PRECISIONS), "Training precision: auto (bfloat16 on GPUs and CPUs with AMX/AVX512-BF16, else float32), float32, bfloat16 (CPUs with AMX/AVX512-BF16, recent GPUs) or float16 (GPUs, loss-scaled). Saved models are float32. On CPUs, bfloat16 stages too small to gain from it train in float32 (recorded per stage).")
flags.DEFINE_enum("strategy", _DEFAULTS.strategy, list(experiment.STRATEGIES), "tf.distribute strategy: one device, all local GPUs (mirrored), or several machines (multi_worker, cluster from $TF_CONFIG).")
flags.DEFINE_integer("verbose", _DEFAULTS.verbose, "Keras verbosity: 1 progress bar, 2 one line per epoch.")


def _bad_flags(message):
    """The one-line exit for flag values that cannot work (absl's UsageError prints the whole help first)."""
    return SystemExit(f"Error: {message} (the flags: python run_experiment.py --helpshort)")


def _integers(name, values):
    try:
        return tuple(int(value) for value in values)
    except ValueError:
        raise _bad_flags(f"--{name} takes comma-separated integers. Received: --{name}={','.join(values)}") from None


def _profiles(values):
    try:
        return tuple(tuple(int(width) for width in value.split("-")) for value in values)
    except ValueError:
        raise _bad_flags(
            f"--student_widths takes width profiles such as 4-12-12-12, comma-separated. Received: --student_widths={','.join(values)}"
        ) from None


def config_from_flags():
    """The preset's values (if any), overridden by every flag given explicitly."""
    converters = {
        "teacher_depths": lambda v: _integers("teacher_depths", v),
        "student_depths": lambda v: _integers("student_depths", v),
        "student_widths": _profiles,
        "export": tuple,
        "distillation": tuple,
        "image_size": int,
        "quantization": tuple,
    }
    values = {
        field.name: converters.get(field.name, lambda v: v)(FLAGS[field.name].value)
        for field in dataclasses.fields(experiment.ExperimentConfig)
        if field.name in FLAGS and FLAGS[field.name].present and field.name != "preset"
    }
    if FLAGS["student_init"].present:
        values["student_inits"] = tuple(FLAGS.student_init)
    if FLAGS["student_block"].present:
        values["student_blocks"] = tuple(FLAGS.student_block)
    values.update(dataset=FLAGS.dataset, loss=",".join(FLAGS.loss), strategy=FLAGS.strategy)
    if "output_dir" not in values:
        suffix = f"_{FLAGS.preset}" if FLAGS.preset and FLAGS.preset != NO_PRESET else ""
        values["output_dir"] = f"runs/{FLAGS.dataset}_{'_'.join(FLAGS.loss)}{suffix}"
    try:
        return experiment.build_config(FLAGS.preset, **values)
    except InputError as error:
        raise _bad_flags(str(error)) from None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    quiet_libraries()  # tfds' reader and builder INFO lines stay out of the console (--verbosity=1 shows them).
    config = config_from_flags()
    logging.info("Output folder: %s", config.output_dir)
    try:
        experiment.run(config, overwrite=FLAGS.overwrite)
    # A user's mistake or a run that cannot go on becomes one line; a bug keeps its traceback.
    except (InputError, FileNotFoundError, FloatingPointError, export_lib.VerificationError) as error:
        logging.error("%s", error)
        raise SystemExit(f"Error: {error}") from None
    except OSError as error:  # A full disk, an unwritable folder: one line; other OSErrors are bugs.
        message = machine_error_message(error)
        if message is None:
            raise
        logging.error("%s", message)
        raise SystemExit(f"Error: {message}") from None


if __name__ == "__main__":
    app.run(main)
