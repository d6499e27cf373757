"""What a run will do and about how long it will take on this machine.

The run logs its plan (stages, steps, evaluations) before anything trains.
Each stage measures its own speed over its first steps, and the run's
remaining time is estimated again then and when the stage ends: stages not
yet run are predicted from the measured ones by their cost per step, the
multiply-accumulates of what one step runs (`kd_gan.count_multiply_accumulates`),
as `seconds per step = overhead of its kind + seconds per multiply-accumulate * cost`.
Small models are all overhead (the many small ops of a step), large ones all
multiply-accumulates; both start from the priors below, measured on this
CPU, scaled by the speed against them of the measured stage nearest in cost
(by ratio), and are fitted once stages of one kind have run at two costs (a
fit serves at and above its cheapest stage). Evaluations are predicted from
the classifier's measured images per second.
"""

import dataclasses
import os
import time
from typing import List, Optional

import keras
import numpy as np
from absl import logging

from kd_gan.evaluation import inception_engines
from kd_gan.models.counting import count_multiply_accumulates
from kd_gan.models.dcgan import Discriminator, Generator
from kd_gan.experiment.plan import STUDENT, TEACHER
from kd_gan.experiment.stage import GIVEN_TEACHER_EVALUATION, Stage

# Fixed cost of one training step, whatever the model's size (the tf.function
# call, the data pipeline, metrics, the many small ops of a step), by kind of
# step: an adversarial step (teacher, scratch GAN, joint student) updates two
# networks, a distillation step one. Measured here on the d=1 CIFAR-10 stages
# (docs/RESULTS.md: 15,600 steps of a joint student or scratch GAN in 303-479 s,
# of a cached MSE student in 145-200 s); used for a kind until a stage of it is measured.
STEP_OVERHEAD_S = {"adversarial": 0.018, "distillation": 0.008}
# Seconds per multiply-accumulate of a training step beyond that overhead, in
# bfloat16 on this CPU: 2.97e-12 from the d=32 CelebA teacher (121.7 ms per step,
# docs/RESULTS.md), 2.73e-12 from the d=32 CIFAR-10 one (34 ms).
SECONDS_PER_MAC = 2.9e-12
# Images per second of the classifiers before one is measured here (the
# reference pass then sets it): the FID Inception per engine and precision on a
# 2-core AMD EPYC (docs/RESULTS.md: TensorFlow 16.8 float32, 27.9 bfloat16), OpenVINO
# scaled by its ratios to TensorFlow float32 on a 2-core Xeon with AMX
# (docs/EVALUATION.md: 1.06x float32; bfloat16 5.8x there, taken as 3.5x since
# CPUs without AMX gain less), and the MNIST network.
CLASSIFIER_IMAGES_PER_S = {
    "tensorflow-float32": 16.8, "tensorflow-bfloat16": 27.9, "openvino-float32": 17.8, "openvino-bfloat16": 60.0,
    "mnist": 2000.0,
}
MEASURE_AFTER_STEPS = 50  # Steps a stage runs before its speed is measured (tracing excluded).


@dataclasses.dataclass
class PlannedStage:
    """One stage of a run's plan.

    Attributes:
        name: the stage's name ("teacher_d32", "evaluation", ...).
        steps: training steps (images, for an evaluation).
        cost: multiply-accumulates of one step (0 for an evaluation).
        kind: "adversarial" (two networks updated per step) or "distillation".
        done: finished before this invocation (loaded, not run).
        seconds_per_step: measured, once the stage has run its first steps.
        scored: its model is evaluated (a fine-tuning stage's is scored as its file).
    """

    name: str
    steps: int
    cost: float = 0.0
    kind: str = "adversarial"
    done: bool = False
    seconds_per_step: Optional[float] = None
    scored: bool = True


def _minutes(seconds):
    return f"{seconds / 60:,.0f} min" if seconds >= 90 else f"{seconds:,.0f} s"


class RunClock:
    """The plan of a run and its estimated remaining time.

    Args:
        stages: `PlannedStage`s of the training stages, in run order.
        evaluation_images: images the run's evaluations will classify.
        classifier: key of `CLASSIFIER_IMAGES_PER_S` (until measured): "mnist"
            or "<engine>-<precision>" of the Inception pass.
    """

    def __init__(self, stages: List[PlannedStage], evaluation_images=0, classifier="tensorflow-float32"):
        self.stages = {stage.name: stage for stage in stages}
        self.evaluation_images = int(evaluation_images)
        self.images_per_s = CLASSIFIER_IMAGES_PER_S[classifier]

    def plan_lines(self):
        """The plan in words, one line per stage."""
        lines = [
            f"{stage.name}: {stage.steps:,} steps" + (" (finished: loaded)" if stage.done else "")
            for stage in self.stages.values()
        ]
        if self.evaluation_images:
            lines.append(f"evaluation: {self.evaluation_images:,} images through the classifier")
        return lines

    def _fits(self):
        """`{kind: (overhead, seconds per multiply-accumulate, lowest cost)}`
        of the kinds measured at two or more costs, fitted on their stages (a
        fit with a negative slope or overhead is not kept)."""
        fits, measured = {}, self._measured()
        for kind in STEP_OVERHEAD_S:
            points = [(s.cost, s.seconds_per_step) for s in measured if s.kind == kind]
            if len({cost for cost, _ in points}) >= 2:
                slope, overhead = (float(v) for v in np.polyfit(*zip(*points), 1))
                if slope > 0 and overhead >= 0:
                    fits[kind] = (overhead, slope, min(cost for cost, _ in points))
        return fits

    def _measured(self):
        return [s for s in self.stages.values() if s.seconds_per_step is not None and s.cost > 0]

    def seconds_per_step(self, stage):
        """Measured, or predicted: from its kind's fit where one reaches down
        to its cost, else its prior at the speed (against the priors) of the
        measured stage nearest to it in cost, by ratio. Large teachers (another
        precision, a shared CPU) say little about a small student's step,
        which is mostly overhead: a fit on them is not carried below them."""
        if stage.seconds_per_step is not None:
            return stage.seconds_per_step
        fit = self._fits().get(stage.kind)
        if fit is not None and stage.cost >= fit[2]:
            return fit[0] + fit[1] * stage.cost
        measured = self._measured()
        if not measured:
            return None

        def prior(s):
            return STEP_OVERHEAD_S[s.kind] + SECONDS_PER_MAC * s.cost

        nearest = min(measured, key=lambda s: abs(np.log(s.cost) - np.log(max(stage.cost, 1.0))))
        return prior(stage) * nearest.seconds_per_step / prior(nearest)

    def remaining_seconds(self, running=None, steps_done=0):
        """Seconds left: the stages not finished (`running` has done
        `steps_done` of its steps) and the evaluations; None before any
        stage is measured."""
        total = self.evaluation_images / self.images_per_s
        for stage in self.stages.values():
            if stage.done:
                continue
            rate = self.seconds_per_step(stage)
            if rate is None:
                return None
            total += rate * (stage.steps - (steps_done if stage.name == running else 0))
        return total

    def measured(self, name, seconds_per_step, steps_done):
        stage = self.stages[name]
        stage.seconds_per_step = seconds_per_step
        logging.info(
            "%s: %.1f ms per step, ~%s for its %s steps; the run: ~%s left (estimate)",
            name, 1000 * seconds_per_step, _minutes(seconds_per_step * stage.steps), f"{stage.steps:,}",
            _minutes(self.remaining_seconds(name, steps_done)),
        )

    def finished(self, name, seconds):
        stage = self.stages.get(name)
        if stage is None:
            return
        stage.done = True
        if stage.steps and stage.seconds_per_step is None:
            stage.seconds_per_step = seconds / stage.steps
        left = self.remaining_seconds()
        if left is not None:
            logging.info("%s done in %s; the run: ~%s left (estimate)", name, _minutes(seconds), _minutes(left))

    def classifier_speed(self, images, seconds):
        """A classifier pass of `images` took `seconds`: the speed evaluations are predicted at."""
        if images and seconds > 0:
            self.images_per_s = images / seconds

    def classified(self, images, seconds):
        """An evaluation of `images` took `seconds`: its speed, and the evaluation left."""
        self.classifier_speed(images, seconds)
        self.evaluation_images = max(self.evaluation_images - int(images), 0)


class StageTimer(keras.callbacks.Callback):
    """Measures a stage's speed over its first `MEASURE_AFTER_STEPS` steps
    (after the first execution, which traces) and tells the `RunClock`."""

    def __init__(self, clock, name):
        super().__init__()
        self.clock, self.name = clock, name
        self.epoch = 0
        self.start = None  # (time, steps) after the first execution; None again once measured.
        self.measured = False

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch  # Counts the epochs of an interrupted run too (BackupAndRestore).

    def on_train_batch_end(self, batch, logs=None):
        # Keras calls this once per execution of `steps_per_execution` steps.
        if self.measured:
            return
        steps = self.epoch * (self.params.get("steps") or 0) + batch + 1
        if self.start is None:
            self.start = time.perf_counter(), steps
        elif steps - self.start[1] >= MEASURE_AFTER_STEPS:
            seconds = (time.perf_counter() - self.start[0]) / (steps - self.start[1])
            self.clock.measured(self.name, seconds, steps)
            self.measured = True


def timed(clock, stage, train):
    """`train(callbacks)` of a stage with its speed measured, and the run's
    time estimated again when it ends; returns what `train` returns."""
    generator, record = train([StageTimer(clock, stage.name)])
    clock.finished(stage.name, record["wall_time_s"])
    return generator, record


def gan_step_cost(generator, discriminator, batch_size, critic_steps=1):
    """Multiply-accumulates of one GAN step: the generator forward and
    backward (~3 passes), the discriminator's steps on real and fake images
    (~6 passes each) and its pass for the generator's loss (~3)."""
    g, d = count_multiply_accumulates(generator), count_multiply_accumulates(discriminator)
    return batch_size * (3 * g + 3 * d + critic_steps * (g + 6 * d))


def planned_stages(stages, config, steps_per_epoch, root, image_shape, teacher_cost=0.0):
    """The run plan's stages (`plan.StageSpec`s) with their steps and costs,
    finished ones marked done. `teacher_cost`: a given teacher's
    multiply-accumulates per image, when known."""
    batch, critic = config.batch_size, config.critic_steps

    built = {}  # One generator per architecture: the plan repeats each for every loss, kind and init.

    def generator(spec):
        if spec.architecture not in built:
            built[spec.architecture] = Generator(config.latent_dim, image_shape, **spec.generator_arguments)
        return built[spec.architecture]

    def gan_cost(spec, batch_size):
        return gan_step_cost(generator(spec), Discriminator(image_shape, spec.discriminator_depth), batch_size, critic)

    teachers = [spec for spec in stages if spec.role == TEACHER]
    if teachers:
        teacher_cost = max(count_multiply_accumulates(generator(spec)) for spec in teachers)
    planned = []
    for spec in stages:
        if spec.role == STUDENT:  # Its forward and backward pass.
            student = 3 * count_multiply_accumulates(generator(spec))
        if spec.fine_tuning:  # Pixel MSE through the int8 view, the teacher run on fresh z.
            cost = batch * (student + teacher_cost)
        elif spec.role == STUDENT:
            # A teacher pass per step without a cache, and for feature maps always.
            cost = student + (teacher_cost if not config.teacher_cache or spec.distils_features else 0)
            if spec.discriminated:
                cost += gan_cost(spec, 1) - student
            cost *= batch
        else:
            cost = gan_cost(spec, batch)
        planned.append(PlannedStage(
            spec.name, spec.training_epochs * steps_per_epoch, cost,
            "adversarial" if spec.adversarial else "distillation", Stage(root, spec).done(), scored=not spec.fine_tuning,
        ))
    return planned


def timed_quality(clock, evaluator, generator, path, identity=None):
    """`evaluator.quality(generator, path, identity)`, its classifier time told to `clock` when not cached."""
    cached = os.path.isfile(path)
    start = time.perf_counter()
    quality = evaluator.quality(generator, path, identity=identity)
    if not cached:
        clock.classified(evaluator.count, time.perf_counter() - start)
    return quality


def run_clock(config, stages, steps_per_epoch, root, image_shape, given_teacher=None, eval_samples=0):
    """The clock of a run (`stages`: its plan), logged before anything is
    computed: stages, steps, and the images its evaluations will classify
    (`eval_samples` for every model not yet trained)."""
    known = count_multiply_accumulates(given_teacher) if isinstance(given_teacher, Generator) else 0.0
    stages = planned_stages(stages, config, steps_per_epoch, root, image_shape, known)
    models = sum(not s.done and s.scored for s in stages)
    if given_teacher is not None and not os.path.isfile(os.path.join(root, GIVEN_TEACHER_EVALUATION)):
        models += 1  # A given teacher is scored too, once.
    images = eval_samples * models
    clock = RunClock(stages, images, "mnist" if config.dataset == "mnist" else "-".join(
        inception_engines.choose(config.inception_engine, config.inception_precision)))
    for line in clock.plan_lines():
        logging.info("Plan: %s", line)
    if eval_samples:
        logging.info("Plan: the real reference's statistics first, unless cached (computed once per machine).")
    logging.info("Time estimate: after each stage's first %d steps.", MEASURE_AFTER_STEPS)
    return clock


def reference_ready(clock, evaluator):
    """The evaluator's reference statistics are ready: the classifier pass
    that computed them (now, or when they were cached on this machine)
    gives the speed evaluations are predicted at."""
    reference = evaluator.reference if evaluator else None
    if reference is not None and reference.seconds:
        logging.info("Reference statistics of %s: computed in %s", reference.source, _minutes(reference.seconds))
        clock.classifier_speed(reference.count, reference.seconds)
