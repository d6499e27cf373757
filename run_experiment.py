"""Compress a GAN generator by knowledge distillation: train or load a teacher,
distil a student, train the equal-size scratch baseline, save everything.

Example:
    python run_experiment.py --dataset=mnist --loss=joint --data_dir=../shared/data
"""

import dataclasses

from absl import app, flags

from kd_gan import data, distill, experiment

_DEFAULTS = experiment.ExperimentConfig()

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", _DEFAULTS.dataset, list(data.DATASETS), "Data set.")
flags.DEFINE_enum("loss", _DEFAULTS.loss, list(distill.LOSSES), "Student loss: pixel MSE to the teacher, or GAN loss + MSE.")
flags.DEFINE_string("output_dir", None, "Output folder (default: runs/<dataset>_<loss>).")
flags.DEFINE_string("data_dir", None, "Local data: a prepared tfds data dir or the original files (default: $KD_GAN_DATA_DIR, else tfds download).")
flags.DEFINE_string("teacher_path", None, "Distil this generator (.keras file or SavedModel dir) instead of training a teacher.")
flags.DEFINE_integer("teacher_depth", _DEFAULTS.teacher_depth, "Depth scale factor d of the teacher.", lower_bound=1)
flags.DEFINE_integer("student_depth", _DEFAULTS.student_depth, "Depth scale factor d of the student and the scratch GAN.", lower_bound=1)
flags.DEFINE_integer("latent_dim", _DEFAULTS.latent_dim, "Size of the latent vector z.", lower_bound=1)
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Batch size.", lower_bound=1)
flags.DEFINE_integer("teacher_epochs", _DEFAULTS.teacher_epochs, "Teacher GAN epochs.", lower_bound=0)
flags.DEFINE_integer("student_epochs", _DEFAULTS.student_epochs, "Student and scratch-GAN epochs.", lower_bound=0)
flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (default: one pass over the data).", lower_bound=1)
flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "Adam learning rate of the GAN generators and all discriminators.")
flags.DEFINE_float("student_learning_rate", _DEFAULTS.student_learning_rate, "Adam learning rate of the distilled student.")
flags.DEFINE_float("mse_weight", _DEFAULTS.mse_weight, "Weight of the MSE term in the joint loss.")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Random seed.")
flags.DEFINE_integer("grid_columns", _DEFAULTS.grid_columns, "Samples per row of samples.png.", lower_bound=1)
flags.DEFINE_integer("eval_samples", None, "Generated images per model for the metrics (default 10,000 for mnist, 1,000 otherwise; 0 skips).", lower_bound=0)
flags.DEFINE_string("inception_path", None, "Local FID Inception SavedModel (default: $KD_GAN_INCEPTION, else TF-Hub).")
flags.DEFINE_list("export", [], "Export the student at the end: any of tflite, saved_model.")
flags.DEFINE_list("quantization", ["none"], "TFLite variants to export: any of none, float16, dynamic_int8, int8.")
flags.DEFINE_integer("verbose", _DEFAULTS.verbose, "Keras verbosity: 1 progress bar, 2 one line per epoch.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    # Every config field has a flag of the same name.
    values = {field.name: FLAGS[field.name].value for field in dataclasses.fields(experiment.ExperimentConfig)}
    values.update(export=tuple(FLAGS.export), quantization=tuple(FLAGS.quantization))
    values["output_dir"] = values["output_dir"] or f"runs/{FLAGS.dataset}_{FLAGS.loss}"
    config = experiment.ExperimentConfig(**values)
    experiment.run(config)


if __name__ == "__main__":
    app.run(main)
