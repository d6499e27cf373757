"""What an experiment's run produced, model by model: `ModelResult` records
(written to results.json) and their scores as TensorBoard scalars."""

import dataclasses
import os
from typing import Optional

import tensorflow as tf

from kd_gan.experiment import plan
from kd_gan.models.counting import count_parameters


@dataclasses.dataclass
class ModelResult:
    """One model of a run: how it was made, trained and scored.

    Attributes:
        name: its stage name, e.g. "student_mse_d2" ("teacher" for a given one).
        method: "teacher", "scratch" or "student_<loss>[+<terms>]" (`StageSpec.method`).
        role: "teacher", "student" or "scratch".
        label: its method in words (`StageSpec.label`), e.g. "student (MSE)".
        recipe: a student's recipe in words ("joint + features"); None otherwise.
        architecture: "d2", or "w4-12-12-12" for a width profile (None for a given teacher).
        size_label: the architecture in words: "d=2", "widths 4-12-12-12".
        depth: depth scale factor d (None for a given teacher of unknown depth).
        parameters: its parameter count.
        training: its stage's training record (`training.json`), or the given
            teacher's path.
        path: its `generator.keras`, relative to the run folder.
        evaluation_path: where its scores are cached (not written to results).
        quality: score, FID, KID, precision/recall, VoL (`Evaluator.quality`).
        fidelity: MSE / PSNR to the teacher on held-out z.
        compression_ratio: teacher parameters / its parameters.
        selected: for teacher candidates, whether it became the teacher.
    """

    name: str
    method: str
    role: str
    label: str
    recipe: Optional[str]
    depth: Optional[int]
    parameters: int
    training: dict
    path: Optional[str] = None
    evaluation_path: Optional[str] = None
    quality: Optional[dict] = None
    fidelity: Optional[dict] = None
    compression_ratio: Optional[float] = None
    selected: Optional[bool] = None
    architecture: Optional[str] = None
    size_label: Optional[str] = None

    @classmethod
    def of(cls, stage, generator, training, root):
        """The result of a trained `stage.Stage`."""
        spec = stage.spec
        return cls(
            name=stage.name, method=spec.method, role=spec.role, label=spec.label, recipe=spec.recipe_label,
            depth=getattr(generator, "depth", None), parameters=count_parameters(generator), training=training,
            path=os.path.relpath(stage.model_path, root), evaluation_path=stage.evaluation_path,
            architecture=spec.architecture, size_label=spec.size_label,
        )

    @classmethod
    def given_teacher(cls, generator, training):
        """The result of a teacher the run was given (`teacher_path`)."""
        return cls(
            name=plan.TEACHER, method=plan.TEACHER, role=plan.TEACHER, label=plan.TEACHER, recipe=None,
            depth=getattr(generator, "depth", None), parameters=count_parameters(generator), training=training,
            size_label=f"d={generator.depth}" if getattr(generator, "depth", None) else None,
        )

    def record(self):
        """Its results.json entry: the fields that are set, but the cache path."""
        return {
            key: value for key, value in dataclasses.asdict(self).items()
            if key != "evaluation_path" and (value is not None or key in ("depth",))
        }


def log_evaluation(root, result):
    """The final scores of a stage, as TensorBoard scalars `eval/*` in its log folder."""
    numbers = {**(result.quality or {}), **{f"{k}_to_teacher": v for k, v in (result.fidelity or {}).items()}}
    numbers = {key: value for key, value in numbers.items() if isinstance(value, float)}
    if not numbers or result.path is None:
        return
    writer = tf.summary.create_file_writer(os.path.join(root, "tensorboard", result.name, "eval"))
    with writer.as_default():
        for key, value in numbers.items():
            tf.summary.scalar(f"eval/{key}", value, step=result.training.get("epochs", 0))
    writer.close()
