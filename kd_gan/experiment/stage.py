"""One stage of the experiment: a model's folder, its training with
checkpoints and logs."""

import csv
import os
import time

import keras
from absl import logging

from kd_gan.models import any_generator
from kd_gan.training.callbacks import SampleImages, StopOnNonFinite, TrainingCheckpoint
from kd_gan.models import precision
from kd_gan._io import read_json, write_json

# Where a run caches the scores of a teacher it was given (`--teacher_path`).
GIVEN_TEACHER_EVALUATION = "teacher_evaluation.json"


class Stage:
    """One model of the experiment: its folder, training and evaluation record.

    Args:
        root: the run's output folder.
        spec: its `plan.StageSpec` (role, depth, loss, kind, fine-tuning).
    """

    def __init__(self, root, spec):
        self.spec = spec
        self.name = spec.name
        self.dir = os.path.join(root, *spec.folder.split("/"))
        self.model_path = os.path.join(self.dir, "generator.keras")
        self.discriminator_path = os.path.join(self.dir, "discriminator.keras")
        self.record_path = os.path.join(self.dir, "training.json")
        self.log_path = os.path.join(self.dir, "log.csv")
        self.checkpoint_dir = os.path.join(self.dir, "checkpoint")
        self.evaluation_path = os.path.join(self.dir, "evaluation.json")
        self.tensorboard_dir = os.path.join(root, "tensorboard", self.name)

    def done(self):
        return os.path.isfile(self.model_path) and os.path.isfile(self.record_path)

    def load(self):
        logging.info("Stage %s already finished: loading %s", self.name, self.model_path)
        return any_generator.load_generator(self.model_path), read_json(self.record_path)

    def train(self, trainer, generator, stream, epochs, steps_per_epoch, config, sample_z, discriminator=None, callbacks=()):
        """Fits `trainer` on `stream(first_epoch)`, saves `generator` (and
        `discriminator`, when given) in float32 and the record.

        Returns:
            `(generator as saved, record)`.
        """
        # Epochs done and seconds trained by earlier invocations (None: a checkpoint that did not say).
        first_epoch, earlier = (0, 0.0)
        if epochs > 0:
            first_epoch, earlier = TrainingCheckpoint.resume_state(self.checkpoint_dir, f"stage {self.name}")
        logging.info(
            "Stage %s: %d epochs of %d steps%s; files in %s", self.name, epochs, steps_per_epoch,
            f", resuming after epoch {first_epoch}" if first_epoch else "", self.dir,
        )
        start = time.time()
        history = {}
        os.makedirs(self.dir, exist_ok=True)
        if epochs > 0:
            trainer.fit(
                # The data and latent streams continue where the interrupted run stopped.
                stream(first_epoch * steps_per_epoch),
                epochs=epochs,
                steps_per_epoch=steps_per_epoch,
                verbose=config.verbose,
                # Order matters at an interruption: an epoch's log row is written
                # before its checkpoint (a redone epoch's row is replaced on reading).
                callbacks=[
                    keras.callbacks.CSVLogger(self.log_path, append=True),
                    keras.callbacks.TensorBoard(self.tensorboard_dir, write_graph=False),
                    SampleImages(generator, sample_z, os.path.join(self.tensorboard_dir, "samples")),
                    *callbacks,
                    TrainingCheckpoint(self.checkpoint_dir, steps_per_epoch, f"stage {self.name}", started=start),
                    StopOnNonFinite(self.name),
                ],
            )
            history = read_epoch_log(self.log_path)
        invocation = time.time() - start
        record = {
            # Training time over every invocation of the stage; this one's alone when an
            # earlier one's is unknown (`earlier_invocations_s` None).
            "wall_time_s": round(invocation + (earlier or 0.0), 2),
            "invocation_wall_s": round(invocation, 2),
            "resumed_after_epoch": first_epoch,
            "earlier_invocations_s": None if earlier is None else round(earlier, 2),
            "epochs": epochs,
            "steps_per_epoch": steps_per_epoch,
            # What the step ran in (`Experiment.stage_policy`) and how fast, this invocation's epochs.
            "dtype_policy": generator.dtype_policy.name,
            "seconds_per_step": round(invocation / ((epochs - first_epoch) * steps_per_epoch), 5)
            if epochs > first_epoch else None,
            "history": {key: [float(v) for v in values] for key, values in history.items()},
            "final_losses": {key: float(values[-1]) for key, values in history.items() if values},
        }
        shipped = precision.float32_copy(generator)  # Saved, scored and exported in float32 whatever it trained in.
        shipped.save(self.model_path)
        if discriminator is not None:  # A teacher's: the frozen network of perceptual distillation.
            precision.float32_copy(discriminator).save(self.discriminator_path)
        write_json(self.record_path, record)
        logging.info("Stage %s finished in %.0f s: %s", self.name, record["wall_time_s"], self.model_path)
        return shipped, record


def read_epoch_log(path):
    """Per-epoch metrics from a CSVLogger file, the last row of each epoch winning.

    Columns the logger fills with "NA" (validation metrics of a run without
    validation) are left out.
    """
    with open(path, newline="") as file:
        rows = {int(row["epoch"]): row for row in csv.DictReader(file)}
    epochs = sorted(rows)
    keys = [k for k in next(iter(rows.values()), {}) if k != "epoch" and rows[epochs[-1]][k] != "NA"]
    return {key: [float(rows[epoch][key]) for epoch in epochs] for key in keys}
