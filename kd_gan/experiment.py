"""The paper's experiment for one teacher and one student size.

Stages, each saved to `output_dir` as it finishes and skipped when rerun:

1. `teacher`: train the large generator as a GAN, or load `teacher_path`.
2. `student`: distil a small generator with the `mse` or `joint` loss.
3. `scratch`: train a generator of the student's size as an ordinary GAN,
   the baseline the paper compares students against.

A stage interrupted mid-way resumes from its last finished epoch (Keras
`BackupAndRestore`). Outputs: `teacher.keras`, `student.keras`,
`scratch.keras` (generators), `samples.png` (rows: teacher, student, scratch
on the same latent vectors), `results.json` and `results.md` (parameters,
compression, MNIST/Inception score, FID with its sample count, VoL, latent
fidelity to the teacher), `config.json`, and each stage's
`<stage>_history.json`, per-epoch CSV logs under `logs/`, and with `export`
the student as SavedModel / `.tflite` files under `export/`.
"""

import csv
import dataclasses
import json
import math
import os
import time
from typing import Optional, Tuple

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kd_gan import data, distill, gan, images, models, report
from kd_gan import export as export_lib

STAGES = ("teacher", "student", "scratch")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Every hyper-parameter of a run; built by keyword, validated on creation.

    Attributes:
        dataset: "mnist", "cifar10" or "celeb_a".
        loss: student loss, "mse" or "joint".
        output_dir: folder for models, samples and results.
        data_dir: local data (tfds data dir or original files); None uses
            `$KD_GAN_DATA_DIR`, then tfds' download.
        teacher_path: distil this generator (`.keras` or SavedModel) instead of
            training a teacher.
        teacher_depth: depth scale factor d of the teacher (when trained).
        student_depth: d of the student and of the scratch baseline.
        latent_dim: size of z.
        batch_size: images (or latent vectors) per step.
        teacher_epochs: GAN epochs of the teacher.
        student_epochs: epochs of the student and of the scratch baseline
            (equal budgets, so the comparison is fair).
        steps_per_epoch: steps per epoch; None means one pass over the data
            (rounded down to a multiple of 10, the steps run per execution).
        learning_rate: Adam learning rate of the GANs' generators and of every
            discriminator (beta_1 = 0.5, DCGAN).
        student_learning_rate: Adam learning rate of the distilled student
            (1e-3 reached a 2.7x lower MNIST MSE than 2e-4 in 3 epochs).
        mse_weight: weight of the MSE term in the joint loss.
        seed: seed of weights, data order and latent draws.
        grid_columns: samples per row in `samples.png`.
        eval_samples: generated images per model for the metrics (FID depends
            on it: compare only at equal counts). None: 10,000 for mnist (a small
            CNN scores them in seconds), 1,000 for cifar10 / celeb_a (the
            Inception runs at ~25 images/s on a 2-core CPU). 0 skips evaluation.
        inception_path: local FID Inception SavedModel; None: `$KD_GAN_INCEPTION`,
            else TF-Hub.
        export: formats to export the student to at the end: "tflite",
            "saved_model" (files under `export/`, sizes and errors in results.json).
        quantization: TFLite variants: "none", "float16", "dynamic_int8", "int8".
        verbose: Keras verbosity (1 progress bar, 2 one line per epoch).
    """

    dataset: str = "mnist"
    loss: str = "mse"
    output_dir: str = "runs/mnist_mse"
    data_dir: Optional[str] = None
    teacher_path: Optional[str] = None
    teacher_depth: int = 32
    student_depth: int = 2
    latent_dim: int = 128
    batch_size: int = 64
    teacher_epochs: int = 3
    student_epochs: int = 3
    steps_per_epoch: Optional[int] = None
    learning_rate: float = gan.DEFAULT_LEARNING_RATE
    student_learning_rate: float = 1e-3
    mse_weight: float = 1.0
    seed: int = 0
    grid_columns: int = 8
    eval_samples: Optional[int] = None
    inception_path: Optional[str] = None
    export: Tuple[str, ...] = ()
    quantization: Tuple[str, ...] = ("none",)
    verbose: int = 2

    def __post_init__(self):
        if self.dataset not in data.DATASETS:
            raise ValueError(f"Unknown dataset {self.dataset!r}; choose one of {data.DATASETS}.")
        if self.loss not in distill.LOSSES:
            raise ValueError(f"Unknown loss {self.loss!r}; choose one of {distill.LOSSES}.")
        for name in ("teacher_depth", "student_depth", "latent_dim", "batch_size", "grid_columns"):
            _check_at_least(name, getattr(self, name), 1)
        for name in ("teacher_epochs", "student_epochs"):
            _check_at_least(name, getattr(self, name), 0)
        if self.steps_per_epoch is not None:
            _check_at_least("steps_per_epoch", self.steps_per_epoch, 1)
        if self.eval_samples is not None:
            _check_at_least("eval_samples", self.eval_samples, 0)
        for name in ("learning_rate", "student_learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0. Received: {name}={getattr(self, name)}")
        if not self.mse_weight >= 0:
            raise ValueError(f"mse_weight must be >= 0. Received: mse_weight={self.mse_weight}")
        for name, allowed in (("export", export_lib.FORMATS), ("quantization", export_lib.QUANTIZATIONS)):
            values = getattr(self, name)
            if isinstance(values, str) or any(v not in allowed for v in values):
                raise ValueError(f"{name} must be a tuple of values from {allowed}. Received: {name}={values!r}")
        if not self.output_dir:
            raise ValueError("output_dir must be a non-empty path.")


def _check_at_least(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}. Received: {name}={value!r}")


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops a stage at the first NaN or infinite loss, naming stage and step."""

    def __init__(self, stage):
        super().__init__()
        self.stage = stage
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        for key, value in (logs or {}).items():
            if not math.isfinite(float(value)):
                raise FloatingPointError(
                    f"Stage {self.stage!r}: {key} became {value} at epoch {self.epoch + 1}, "
                    f"step {batch + 1}. Lower the learning rate or check the data."
                )


class _Stage:
    """Paths and training of one stage in the output folder."""

    def __init__(self, config, name):
        self.config = config
        self.name = name
        self.model_path = os.path.join(config.output_dir, f"{name}.keras")
        self.history_path = os.path.join(config.output_dir, f"{name}_history.json")
        self.log_path = os.path.join(config.output_dir, "logs", f"{name}.csv")

    def done(self):
        return os.path.isfile(self.model_path) and os.path.isfile(self.history_path)

    def load(self):
        logging.info("Stage %s already finished: loading %s", self.name, self.model_path)
        with open(self.history_path) as file:
            record = json.load(file)
        return models.load_generator(self.model_path), record

    def train(self, trainer, generator, dataset, epochs, steps_per_epoch):
        """Fits `trainer`, saves `generator` and the history; returns the record."""
        logging.info(
            "Stage %s: %d epochs of %d steps; model -> %s", self.name, epochs, steps_per_epoch, self.model_path
        )
        start = time.time()
        history = {}
        if epochs > 0:
            os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
            backup_dir = os.path.join(self.config.output_dir, "backup", self.name)
            history = trainer.fit(
                dataset,
                epochs=epochs,
                steps_per_epoch=steps_per_epoch,
                shuffle=False,  # The datasets shuffle themselves.
                verbose=self.config.verbose,
                # Order matters at an interruption: an epoch's log row is written
                # before its backup (a redone epoch's row is replaced on reading).
                callbacks=[
                    keras.callbacks.CSVLogger(self.log_path, append=True),
                    keras.callbacks.BackupAndRestore(backup_dir),
                    StopOnNonFinite(self.name),
                ],
            )
            history = _read_epoch_log(self.log_path)
        record = {
            "wall_time_s": round(time.time() - start, 2),
            "epochs": epochs,
            "steps_per_epoch": steps_per_epoch,
            "history": {key: [float(v) for v in values] for key, values in history.items()},
            "final_losses": {key: float(values[-1]) for key, values in history.items() if values},
        }
        generator.save(self.model_path)
        _write_json(self.history_path, record)
        return record


def _read_epoch_log(path):
    """Per-epoch metrics from a CSVLogger file, the last row of each epoch winning.

    Columns the logger fills with "NA" (validation metrics of a run without
    validation) are left out.
    """
    with open(path, newline="") as file:
        rows = {int(row["epoch"]): row for row in csv.DictReader(file)}
    epochs = sorted(rows)
    keys = [k for k in next(iter(rows.values()), {}) if k != "epoch" and rows[epochs[-1]][k] != "NA"]
    return {key: [float(rows[epoch][key]) for epoch in epochs] for key in keys}


def _write_json(path, value):
    temporary = f"{path}.tmp"
    with open(temporary, "w") as file:
        json.dump(value, file, indent=2)
    os.replace(temporary, path)  # Never leave a half-written file behind.


def _optimizer(learning_rate):
    return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=gan.DEFAULT_BETA_1)


def _train_gan(config, stage, depth, dataset, epochs, steps_per_epoch):
    image_shape = data.IMAGE_SHAPES[config.dataset]
    generator = models.Generator(config.latent_dim, image_shape, depth, name=f"{stage.name}_generator")
    trainer = gan.GAN(generator, models.Discriminator(image_shape, depth), seed=config.seed)
    trainer.compile(g_optimizer=_optimizer(config.learning_rate), d_optimizer=_optimizer(config.learning_rate))
    return generator, stage.train(trainer, generator, dataset, epochs, steps_per_epoch)


def _distil_student(config, stage, teacher, dataset, steps_per_epoch):
    image_shape = data.IMAGE_SHAPES[config.dataset]
    student = models.Generator(config.latent_dim, image_shape, config.student_depth, name="student_generator")
    joint = config.loss == "joint"
    trainer = distill.Distiller(
        teacher,
        student,
        loss=config.loss,
        discriminator=models.Discriminator(image_shape, config.student_depth) if joint else None,
        mse_weight=config.mse_weight,
        seed=config.seed,
    )
    trainer.compile(
        student_optimizer=_optimizer(config.student_learning_rate),
        d_optimizer=_optimizer(config.learning_rate) if joint else None,
    )
    # The MSE scheme needs no real data: it learns from fresh latent vectors.
    inputs = dataset() if joint else distill.latent_dataset(config.batch_size, config.latent_dim, config.seed)
    return student, stage.train(trainer, student, inputs, config.student_epochs, steps_per_epoch)


def _sample_grid(config, generators, path):
    z = tf.random.stateless_normal((config.grid_columns, config.latent_dim), seed=(config.seed, 2**20))
    rows = [distill.generate(generator, z) for generator in generators]
    images.save_png(images.image_grid([np.asarray(row) for row in rows]), path)


def run(config):
    """Runs (or resumes) the experiment; returns the results written to results.json."""
    start = time.time()
    os.makedirs(config.output_dir, exist_ok=True)
    _write_json(os.path.join(config.output_dir, "config.json"), dataclasses.asdict(config))
    keras.utils.set_random_seed(config.seed)

    real_data = {}

    def dataset():
        # Loaded on first use: an MSE student of a given teacher needs no real data.
        if not real_data:
            real_data["dataset"] = data.load_dataset(
                config.dataset, "train", config.batch_size, data_dir=config.data_dir, seed=config.seed
            )
        return real_data["dataset"].repeat()

    def steps_per_epoch():
        if config.steps_per_epoch:
            return config.steps_per_epoch
        dataset()
        # One pass, rounded down to whole executions of the default 10 steps.
        batches = int(real_data["dataset"].cardinality())
        multiple = gan.DEFAULT_STEPS_PER_EXECUTION
        return batches - batches % multiple if batches >= multiple else batches

    records = {}
    stage = _Stage(config, "teacher")
    if config.teacher_path:
        teacher = models.load_generator(config.teacher_path)
        records["teacher"] = {"path": os.path.abspath(config.teacher_path)}
    elif stage.done():
        teacher, records["teacher"] = stage.load()
    else:
        teacher, records["teacher"] = _train_gan(
            config, stage, config.teacher_depth, dataset(), config.teacher_epochs, steps_per_epoch()
        )

    stage = _Stage(config, "student")
    if stage.done():
        student, records["student"] = stage.load()
    else:
        student, records["student"] = _distil_student(config, stage, teacher, dataset, steps_per_epoch())

    stage = _Stage(config, "scratch")
    if stage.done():
        scratch, records["scratch"] = stage.load()
    else:
        scratch, records["scratch"] = _train_gan(
            config, stage, config.student_depth, dataset(), config.student_epochs, steps_per_epoch()
        )

    samples_path = os.path.join(config.output_dir, "samples.png")
    _sample_grid(config, [teacher, student, scratch], samples_path)
    generators = {"teacher": teacher, "student": student, "scratch": scratch}
    results = {
        "dataset": config.dataset,
        "loss": config.loss,
        "models": {
            name: {
                "depth": getattr(generator, "depth", None),
                "parameters": models.count_parameters(generator),
                **records[name],
            }
            for name, generator in generators.items()
        },
        "compression_ratio": models.compression_ratio(teacher, student),
        "samples": os.path.basename(samples_path),
        "export": (
            export_lib.export_generator(
                student, os.path.join(config.output_dir, "export"), config.export, config.quantization, name="student"
            )
            if config.export
            else {}
        ),
        "config": dataclasses.asdict(config),
    }
    results["evaluation"] = report.evaluate(config, generators) if report.eval_sample_count(config) else {}
    results["wall_time_s"] = round(time.time() - start, 2)
    _write_json(os.path.join(config.output_dir, "results.json"), results)
    with open(os.path.join(config.output_dir, "results.md"), "w") as file:
        file.write(report.results_table(results) + "\n")
    logging.info(
        "Done in %.0f s: teacher %d parameters, student %d (%.1f:1). Results in %s",
        results["wall_time_s"],
        results["models"]["teacher"]["parameters"],
        results["models"]["student"]["parameters"],
        results["compression_ratio"],
        config.output_dir,
    )
    return results
