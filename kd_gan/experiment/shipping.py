"""What a run ships: every student exported to the run's formats, int8 files
of students fine-tuned under int8 rounding (`qat_epochs`), and each `.tflite`
file's size, latency and scores, measured on the file itself through LiteRT."""

import os

import keras
from absl import logging

from kd_gan import _io
from kd_gan.distillation.distiller import Distiller
from kd_gan.experiment import progress
from kd_gan.export import converters as export_lib
from kd_gan.export.quantization import QuantizedView
from kd_gan.models import precision
from kd_gan.models.tflite_generator import TFLiteGenerator, measure_latency

QAT_LEARNING_RATE_FACTOR = 0.1  # Fine-tuning steps: a tenth of the student learning rate.


def _copy(generator):
    """A new generator with `generator`'s weights (fine-tuning leaves the student as distilled)."""
    copy = generator.__class__.from_config(generator.get_config())
    copy.set_weights(generator.get_weights())
    return copy


def quantization_aware_student(stage, student, teacher, strategy, clock, latent_stream, steps_per_epoch, config, grid_z):
    """A student fine-tuned `stage.spec.fine_tune_epochs` epochs under int8 rounding.

    Pixel MSE to the teacher on fresh z (`latent_stream(skip_batches)`),
    through `QuantizedView` (ranges recalibrated after each epoch), in
    float32, on a copy of the student; a stage of its own
    (`students/<name>_qat<N>/`), resumable like the others, loaded when finished.

    Returns:
        The fine-tuned generator.
    """
    if stage.done():
        return stage.load()[0]
    with strategy.scope():
        copy = _copy(precision.float32_copy(student))
        view = QuantizedView(copy)
        trainer = Distiller(precision.float32_copy(teacher), view, seed=config.seed)
        trainer.compile(
            student_optimizer=keras.optimizers.Adam(config.student_learning_rate * QAT_LEARNING_RATE_FACTOR, beta_1=0.5)
        )
    generator, _ = progress.timed(clock, stage, lambda callbacks: stage.train(
        trainer, copy, latent_stream, stage.spec.fine_tune_epochs, steps_per_epoch, config, grid_z,
        callbacks=[QuantizedView.Recalibrate(view), *callbacks],
    ))
    return generator


def export_students(config, root, generators, results, tuned=None, evaluator=None):
    """Every student in `config.export`'s formats under `export/`, its
    fine-tuned int8 file (`tuned`: `{name: (generator, Stage)}` of `quantization_aware_student`), and per
    `.tflite` file its latency and, with an `evaluator`, its scores through
    LiteRT (`quality`) and those of the Keras model it came from
    (`keras_quality`: the fine-tuned one for `_int8_qat`). A file that fails
    verification is recorded (and raised after the report)."""
    if not config.export:
        return {}
    folder = os.path.join(root, "export")
    exported = {}
    for result in results:
        if result.role != "student":
            continue
        try:
            records = export_lib.export_generator(
                generators[result.name], folder, config.export, config.quantization, name=result.name,
            )
            if result.name in (tuned or {}):
                generator, stage = tuned[result.name]
                records["tflite_int8_qat"] = export_lib.export_tflite(
                    generator, os.path.join(folder, f"{result.name}_int8_qat.tflite"), quantization="int8"
                )
                if evaluator:
                    records["tflite_int8_qat"]["keras_quality"] = evaluator.quality(generator, stage.evaluation_path)
        except export_lib.VerificationError as error:
            logging.error("Export of %s failed verification: %s", result.name, error)
            exported[result.name] = {"error": str(error)}
            continue
        for key, record in records.items():
            if key.startswith("tflite"):
                record.update(measure_latency(record["path"]))  # Both LiteRT engines; the faster one's time.
                if evaluator:
                    record.setdefault("keras_quality", result.quality)
                    # On the engine its latency found faster here (timed once, not again for scoring).
                    shipped = TFLiteGenerator(record["path"], engine=record["latency_engine"])
                    # int8 kernels of the two engines may round an output a level apart: the engine is in the key.
                    record["quality"] = evaluator.quality(
                        shipped, record["path"] + ".evaluation.json",
                        identity=f"{_io.file_digest(record['path'])}-{shipped.engine}",
                    )
                    record["quality_engine"] = shipped.engine
        exported[result.name] = records
    return exported
