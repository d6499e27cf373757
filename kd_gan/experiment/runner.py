"""The paper's experiment: teacher selection, a compression sweep, the report.

Stages, each in its own folder under `output_dir`, saved as it finishes and
skipped when the same command runs again:

1. `teachers/d<D>/`: one GAN per `teacher_depths` candidate (or the given
   `teacher_path`); the best by FID (score as tie-break) becomes the teacher.
2. `students/<loss>_d<D>/`: for every `student_depths` size and loss
   (`mse`, `joint` or both), a student distilled from the teacher.
3. `scratch/d<D>/`: for every student size, the same generator trained as an
   ordinary GAN: the baseline the paper compares students against.

Each stage folder holds `generator.keras`, `training.json` (losses per
epoch, wall time), `log.csv`, `evaluation.json` and, while it trains,
`checkpoint/` (model, optimizer state and epoch, written every epoch: an
interrupted stage resumes from its last finished epoch on the same data and
latent draws as an uninterrupted run). TensorBoard logs (losses and sample
images per epoch) go to `tensorboard/<stage>/`.

Settings are `config.ExperimentConfig`; the stages are the run plan's records
(`plan.plan_stages`), each trained in its folder by `stage.Stage`; the data
the stages learn from is `streams.RunStreams`; strategies come from `distribute`.
The report (`report.write`) adds results.json, results.csv, report.md,
samples.png, interpolation.png and the PNG plots.
"""

import dataclasses
import os
import time
import zlib

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kd_gan import _io
from kd_gan.data import loading as data
from kd_gan.distillation.distiller import Distiller
from kd_gan.errors import InputError
from kd_gan.experiment import evaluator as evaluator_lib
from kd_gan.experiment import progress, report
from kd_gan.experiment import summary as summary_lib
from kd_gan.experiment.distribute import make_strategy, worker_output_dir
from kd_gan.experiment.recipes import kind_losses, pixel_weight, student_learning_rate
from kd_gan.experiment.results import ModelResult, log_evaluation
from kd_gan.experiment.run_folder import check_data, check_student_start, prepare_output_dir, writer_lock
from kd_gan.experiment import plan as plan_lib
from kd_gan.experiment.shipping import export_students, quantization_aware_student
from kd_gan.experiment.stage import GIVEN_TEACHER_EVALUATION, Stage
from kd_gan.experiment.streams import RunStreams
from kd_gan.export.converters import VerificationError
from kd_gan.models import precision
from kd_gan.models.any_generator import check_generator, load_generator, start_from
from kd_gan.models.dcgan import Discriminator, Generator, dcgan_widths
from kd_gan.models.pruning import prune_generator
from kd_gan.training import objectives, optimizers
from kd_gan.training.gan import GAN


class Experiment:
    """Runs the stages of one configuration; see the module docstring."""

    def __init__(self, config, strategy=None):
        self.config = config
        self.precision = precision.resolve(config.precision)  # "auto": this machine's fast choice.
        self.strategy = strategy or make_strategy(config.strategy)
        self.root = worker_output_dir(self.strategy, config.output_dir)
        self.image_shape = data.image_shape(config.dataset, config.image_size)
        self.heldout_z = heldout_latents(config)
        self.clock = None  # The plan's costs and the time estimate, once `run` starts.
        self.stages = plan_lib.plan_stages(config)  # The run's one plan: every stage reads it.
        self.streams = RunStreams(config, self.root)

    # Stages ---------------------------------------------------------------

    def stage(self, spec):
        return Stage(self.root, spec)

    def seed_stage(self, stage):
        """Seeds a stage's initial weights by run seed and stage name alone, so a
        stage starts the same whether or not earlier stages were loaded from disk."""
        keras.utils.set_random_seed(zlib.crc32(f"{self.config.seed}/{stage.name}".encode()) % 2**31)

    def stage_policy(self, spec):
        """The dtype policy a stage trains under (its models are saved in float32):
        the run's precision, except bfloat16 where it would be slower: a step too
        small to gain from it or a CPU without bfloat16 units
        (`precision.step_precision_and_reason`, by the plan's cost of the step)."""
        cost = self.clock.stages[spec.name].cost if self.clock and spec.name in self.clock.stages else float("inf")
        chosen, why = precision.step_precision_and_reason(self.precision, cost)
        if why:
            logging.info("Stage %s trains in %s: %s.", spec.name, chosen, why)
        return precision.policy(chosen)

    def train_gan(self, stage):
        """A teacher candidate or a scratch baseline (loaded when finished)."""
        if stage.done():
            return stage.load()
        config = self.config
        policy = self.stage_policy(stage.spec)
        self.seed_stage(stage)
        with self.strategy.scope():
            generator = self._generator(stage, policy=policy)
            trainer = GAN(
                generator, Discriminator(self.image_shape, stage.spec.discriminator_depth, dtype=policy), seed=config.seed,
                objective=config.objective, critic_steps=config.critic_steps,
            )
            trainer.compile(
                g_optimizer=optimizers.objective_optimizer(config.objective, config.learning_rate, config.ema_decay),
                d_optimizer=optimizers.objective_optimizer(config.objective, config.d_learning_rate),
            )
        return progress.timed(self.clock, stage, lambda callbacks: stage.train(
            trainer, generator, self.streams.real_stream, stage.spec.epochs, self.streams.steps_per_epoch(), config, self.grid_z(),
            discriminator=trainer.discriminator if stage.spec.role == plan_lib.TEACHER else None, callbacks=callbacks,
        ))

    def _generator(self, stage, teacher=None, policy="float32"):
        """The stage's generator: fresh, (a pruned student) the teacher pruned to its widths, or (a started
        student) the `student_start` generator's weights."""
        # TensorFlow's name scopes take no "+" (student kinds such as "mse+features").
        name = f"{stage.name.replace('+', '-')}_generator"
        if stage.spec.pruned:
            widths = stage.spec.widths or dcgan_widths(stage.spec.depth, self.image_shape[0])
            refit = plan_lib.REFIT_SAMPLES if stage.spec.init == plan_lib.REFIT else 0
            return prune_generator(
                precision.float32_copy(teacher), widths, name=name, dtype=policy, refit_samples=refit, seed=self.config.seed
            )
        generator = Generator(self.config.latent_dim, self.image_shape, name=name, dtype=policy, **stage.spec.generator_arguments)
        return start_from(generator, self.config.student_start) if stage.spec.init == plan_lib.STARTED else generator

    def distil(self, stage, teacher):
        if stage.done():
            return stage.load()
        config, spec = self.config, stage.spec
        discriminated = spec.discriminated
        policy = self.stage_policy(spec)
        self.seed_stage(stage)
        with self.strategy.scope():
            student = self._generator(stage, teacher, policy)
            discriminator = Discriminator(
                self.image_shape, spec.discriminator_depth, latent_dim=config.latent_dim if spec.conditioned else None,
                dtype=policy,
            ) if discriminated else None
            steps = spec.epochs * self.streams.steps_per_epoch()
            distillation_losses, weights = self.distillation_losses(spec, policy, steps)
            trainer = Distiller(
                precision.with_policy(teacher, policy),  # The frozen teacher computes in the stage's precision too.
                student,
                loss=spec.distiller_loss,
                discriminator=discriminator,
                mse_weight=pixel_weight(config, spec, steps) if distillation_losses is None else 1.0,
                seed=config.seed,
                objective=config.objective,
                critic_steps=config.critic_steps,
                distillation_losses=distillation_losses,
                distillation_loss_weights=weights,
            )
            trainer.compile(
                # A joint or adversarial student is a GAN generator too: the objective's Adam betas.
                student_optimizer=optimizers.objective_optimizer(
                    config.objective if discriminated else objectives.NON_SATURATING,
                    student_learning_rate(config, steps),
                    config.ema_decay,
                ),
                d_optimizer=optimizers.objective_optimizer(config.objective, config.d_learning_rate) if discriminated else None,
            )
        if config.teacher_cache:
            stream = self.streams.cached_stream(teacher, spec.joint)
        else:
            # Only the joint loss reads real data; the others learn from fresh latent vectors.
            stream = self.streams.real_stream if spec.joint else self.streams.latent_stream
        return progress.timed(self.clock, stage, lambda callbacks: stage.train(
            trainer, student, stream, spec.epochs, self.streams.steps_per_epoch(), config, self.grid_z(), callbacks=callbacks,
        ))

    def distillation_losses(self, spec, policy="float32", steps=None):
        """`(losses, weights)` of a student (`recipes.kind_losses`), the
        teacher's discriminator loaded afresh in the strategy's scope."""
        path = self.teacher_discriminator_path if spec.perceptual else None
        network = precision.with_policy(keras.saving.load_model(path, safe_mode=True), policy) if path else None
        return kind_losses(self.config, spec, network, steps)

    def data_identity(self):
        """What identifies the training data (source files' digest, version, size), not their path."""
        config = self.config
        return data.dataset_identity(config.dataset, "train", config.data_dir, image_size=config.image_size)

    def grid_z(self):
        return self.heldout_z[: self.config.grid_columns]

    def load_teacher(self):
        """The given teacher, checked against the data set (latent size, image shape, range)."""
        with self.strategy.scope():
            teacher = load_generator(self.config.teacher_path)
        source = f"teacher_path={self.config.teacher_path!r}"
        check_generator(teacher, self.config.latent_dim, self.image_shape, source)
        for spec in self.stages:
            if spec.pruned:  # Refused here, before anything trains.
                prune_generator(teacher, spec.widths or dcgan_widths(spec.depth, self.image_shape[0]))
        return teacher

    # The run --------------------------------------------------------------

    def run(self):
        """Teacher, students and scratch GANs, their evaluation, the report."""
        config = self.config
        start = time.time()
        keras.utils.set_random_seed(config.seed)
        precision.check_hardware(self.precision)
        if config.precision == "auto":
            logging.info("Precision: %s (auto, on %s).", self.precision, precision.cpu_label(precision.cpu_record()))
        # A given teacher and the data first: a teacher that does not fit the data,
        # missing or corrupt files, a batch larger than the split and other data
        # than the folder's models saw stop the run here, before anything is
        # written, trained or scored.
        given = self.load_teacher() if config.teacher_path else None
        # Students still to start from a file: one that does not fit is refused before anything trains.
        starting = [spec for spec in self.stages if spec.init == plan_lib.STARTED and not self.stage(spec).done()]
        if starting:
            start_from(Generator(config.latent_dim, self.image_shape, **starting[0].generator_arguments), config.student_start)
        eval_samples = evaluator_lib.eval_sample_count(config.dataset, config.eval_samples)
        steps_per_epoch = self.streams.steps_per_epoch()
        os.makedirs(self.root, exist_ok=True)
        check_data(self.root, self.data_identity(), config.data_dir)
        if starting or (config.student_start and os.path.isfile(config.student_start)):
            check_student_start(self.root, config.student_start)  # Finished started students need the file no more.
        _io.write_json(os.path.join(self.root, "config.json"), dataclasses.asdict(config))
        np.save(os.path.join(self.root, "heldout_z.npy"), self.heldout_z)
        self.clock = progress.run_clock(
            config, self.stages, steps_per_epoch, self.root, self.image_shape, given, eval_samples
        )
        evaluator = evaluator_lib.Evaluator(
            config.dataset, eval_samples, data_dir=config.data_dir, image_size=config.image_size,
            inception_path=config.inception_path, inception_precision=config.inception_precision,
            inception_engine=config.inception_engine, reference_samples=config.reference_samples, seed=config.seed,
        ) if eval_samples else None
        progress.reference_ready(self.clock, evaluator)
        teacher, candidates = self.teacher_step(given, evaluator)
        generators, results = self.students_step(teacher, candidates)
        self.evaluation_step(evaluator, teacher, generators, results, candidates)
        tuned = self.fine_tuning_step(teacher, generators)
        return self.results_step(start, evaluator, generators, results, candidates, tuned)

    def teacher_step(self, given, evaluator):
        """The teacher: the given one, or the best of the trained candidates.

        Returns:
            `(teacher generator, candidate ModelResults)`, the chosen one first
            among the run's results.
        """
        config = self.config
        if given is not None:
            result = ModelResult.given_teacher(given, {"path": os.path.abspath(config.teacher_path)})
            if evaluator:
                # Keyed on the file's content: another teacher at the same path is scored anew.
                result.quality = progress.timed_quality(
                    self.clock, evaluator, given, os.path.join(self.root, GIVEN_TEACHER_EVALUATION),
                    identity=_io.file_digest(config.teacher_path),
                )
            result.selected = True
            return given, [result]
        trained, candidates = {}, []
        for spec in plan_lib.of_role(self.stages, plan_lib.TEACHER):
            stage = self.stage(spec)
            trained[stage.name] = self.train_gan(stage)[0]
            result = ModelResult.of(stage, trained[stage.name], _io.read_json(stage.record_path), self.root)
            if evaluator:
                result.quality = progress.timed_quality(self.clock, evaluator, trained[stage.name], stage.evaluation_path)
            candidates.append(result)
        best = evaluator_lib.select_teacher(candidates)
        for candidate in candidates:
            candidate.selected = candidate is best
        logging.info("Teacher: %s (chosen among %s)", best.name, [c.name for c in candidates])
        return trained[best.name], candidates

    def students_step(self, teacher, candidates):
        """Every student (size x loss x kind) and scratch GAN, in plan order;
        returns `(generators, results)` by name, teacher first."""
        chosen = next(c for c in candidates if c.selected)
        self.teacher_discriminator_path = self._teacher_discriminator(chosen)
        generators, results = {chosen.name: teacher}, [chosen]
        for spec in self.stages:
            if spec.role == plan_lib.TEACHER or spec.fine_tuning:
                continue
            stage = self.stage(spec)
            generator, record = self.distil(stage, teacher) if spec.role == plan_lib.STUDENT else self.train_gan(stage)
            generators[stage.name] = generator
            results.append(ModelResult.of(stage, generator, record, self.root))
        return generators, results

    def fine_tuning_step(self, teacher, generators):
        """Each student fine-tuned under int8 rounding (`config.qat_epochs`);
        returns `{student name: (fine-tuned generator, its Stage)}`."""
        tuned = {}
        for spec in self.stages:
            if not spec.fine_tuning:
                continue
            stage = self.stage(spec)
            if not stage.done():
                self.seed_stage(stage)
            tuned[spec.parent.name] = quantization_aware_student(
                stage, generators[spec.parent.name], teacher, self.strategy, self.clock,
                self.streams.latent_stream, self.streams.steps_per_epoch(), self.config, self.grid_z(),
            ), stage
        return tuned

    def evaluation_step(self, evaluator, teacher, generators, results, candidates):
        """Compression ratios, and the scores of every model (cached per stage)."""
        for result in results:
            result.compression_ratio = results[0].parameters / result.parameters
            if evaluator and result is not results[0]:
                result.quality = progress.timed_quality(self.clock, evaluator, generators[result.name], result.evaluation_path)
                result.fidelity = evaluator.fidelity(generators[result.name], teacher, self.heldout_z)
        for result in {r.name: r for r in candidates + results}.values():
            log_evaluation(self.root, result)

    def results_step(self, start, evaluator, generators, results, candidates, tuned):
        """results.json and the report; raises after them if an export failed verification."""
        config = self.config
        summary = {
            "dataset": config.dataset,
            "precision": self.precision,  # What "auto" chose here; each stage records its own dtype policy.
            "losses": list(config.losses),
            "teacher": results[0].name,
            "teacher_candidates": [c.record() for c in candidates],
            "models": [r.record() for r in results],
            "real": evaluator.real if evaluator else None,
            "eval_samples": evaluator.count if evaluator else 0,
            "heldout_z": "heldout_z.npy",
            "export": export_students(config, self.root, generators, results, tuned, evaluator),
            "teacher_cache": self.streams.cache_record(),
            "config": dataclasses.asdict(config),
            "strategy": {"name": config.strategy, "replicas": self.strategy.num_replicas_in_sync},
        }
        summary["wall_time_s"] = round(time.time() - start, 2)  # This invocation (reruns skip training).
        summary["training_time_s"] = round(
            sum((r.training or {}).get("wall_time_s", 0.0) for r in {r.name: r for r in candidates + results}.values()), 2
        )
        report.write(self.root, summary, generators, self.heldout_z, config.grid_columns)
        finding = summary_lib.headline(summary)
        if finding:
            logging.info("%s", finding)
        logging.info("Done in %.0f s. Report: %s", summary["wall_time_s"], os.path.join(self.root, "report.md"))
        failed = [name for name, record in summary["export"].items() if "error" in record]
        if failed:
            raise VerificationError(
                f"Exported files of {failed} do not reproduce their Keras models (see results.json, export); "
                "the report is written."
            )
        return summary

    def _teacher_discriminator(self, teacher_result):
        """The chosen teacher's discriminator file (None for a given teacher), checked
        up front when a perceptual student without a discriminator of its own needs it."""
        teachers = {spec.name: spec for spec in plan_lib.of_role(self.stages, plan_lib.TEACHER)}
        path = None if self.config.teacher_path else self.stage(teachers[teacher_result.name]).discriminator_path
        path = path if path and os.path.isfile(path) else None
        if any(spec.perceptual for spec in self.stages):
            logging.info("Perceptual students read %s.", path or "their own discriminators (no teacher discriminator)")
        if path is None and any(spec.perceptual and not spec.discriminated for spec in self.stages):
            raise InputError(
                "distillation 'perceptual' with loss 'mse' reads the teacher's discriminator, and "
                + ("a given teacher (teacher_path) has none" if self.config.teacher_path else f"{path} does not exist (a teacher trained before discriminators were saved)")
                + ": use loss 'joint' or 'adversarial' (the student's own discriminator) or drop 'perceptual'."
            )
        return path


def heldout_latents(config, count=1000):
    """The held-out z every model is compared on (grids, latent fidelity).

    Seeded apart from training's draws; saved to `heldout_z.npy`.
    """
    count = max(count, config.grid_columns * 2)
    return tf.random.stateless_normal((count, config.latent_dim), seed=(config.seed, 2**20)).numpy()


def run(config, overwrite=False, strategy=None):
    """Runs (or resumes) the experiment; returns the results written to results.json.

    The process holds its folder's writer lock (`run_folder.writer_lock`)
    throughout: a second run on the same folder stops at once, naming this one.
    """
    strategy = strategy or make_strategy(config.strategy)
    with writer_lock(worker_output_dir(strategy, config.output_dir)):
        prepare_output_dir(config, overwrite, strategy)
        return Experiment(config, strategy).run()
