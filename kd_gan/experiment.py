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

Settings are `kd_gan.experiment_config.ExperimentConfig`; stages are
`kd_gan.stages.Stage`; strategies come from `kd_gan.distribute`.
The report (`report.write`) adds results.json, results.csv, report.md,
samples.png, interpolation.png and the PNG plots.
"""

import dataclasses
import math
import os
import time
import zlib

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kd_gan import data, distill, evaluation, gan, models, objectives, optimizers, precision, progress, report, training
from kd_gan import export as export_lib
from kd_gan import generators as generators_lib
from kd_gan import teacher_cache as teacher_cache_lib
from kd_gan.distribute import STRATEGIES, make_strategy, shard_by_data, worker_output_dir  # noqa: F401 (STRATEGIES re-exported)
from kd_gan import files
from kd_gan.errors import InputError
from kd_gan.experiment_config import (  # noqa: F401 (re-exported: the experiment's public names)
    LOSS_CHOICES,
    PIXEL,
    PRESETS,
    ExperimentConfig,
    build_config,
    check_output_dir,
    kind_losses,
    prepare_output_dir,
    preset_values,
)
from kd_gan.jsonio import read_json, write_json
from kd_gan.results import ModelResult, log_evaluation
from kd_gan.shipping import export_students, quantization_aware_students
from kd_gan.stages import GIVEN_TEACHER_EVALUATION, Stage


class Experiment:
    """Runs the stages of one configuration; see the module docstring."""

    def __init__(self, config, strategy=None):
        self.config = config
        self.strategy = strategy or make_strategy(config.strategy)
        self.root = worker_output_dir(self.strategy, config.output_dir)
        self.image_shape = data.image_shape(config.dataset, config.image_size)
        self.heldout_z = heldout_latents(config)
        self.policy = precision.policy(config.precision)  # Models train under it; saved in float32.
        self._steps = None
        self._cache = None

    # Data -----------------------------------------------------------------

    def real_stream(self, skip_batches=0):
        """Endless real batches, the same sequence in every stage and every run.

        A new pipeline per call: a reshuffling tf.data pipeline continues its
        shuffle sequence across iterators, and its seeds combine with TF's
        global seed, fixed here to the run's seed.
        """
        tf.random.set_seed(self.config.seed)
        return shard_by_data(self._real_batches().repeat().skip(skip_batches))

    def _real_batches(self):
        config = self.config
        return data.load_dataset(
            config.dataset, "train", config.batch_size, data_dir=config.data_dir, seed=config.seed,
            image_size=config.image_size,
        )

    def latent_stream(self, skip_batches=0):
        stream = training.latent_dataset(self.config.batch_size, self.config.latent_dim, self.config.seed)
        return shard_by_data(stream.skip(skip_batches))

    def steps_per_epoch(self):
        if self.config.steps_per_epoch:
            return self.config.steps_per_epoch
        if self._steps is None:
            # One pass, rounded down to whole executions of the default 10 steps.
            batches = int(self._real_batches().cardinality())
            multiple = training.DEFAULT_STEPS_PER_EXECUTION
            self._steps = batches - batches % multiple if batches >= multiple else batches
        return self._steps

    # Stages ---------------------------------------------------------------

    def stage(self, role, depth, loss=None, kind=PIXEL):
        return Stage(self.root, role, depth, loss, kind)

    def seed_stage(self, stage):
        """Seeds a stage's initial weights by run seed and stage name alone, so a
        stage starts the same whether or not earlier stages were loaded from disk."""
        keras.utils.set_random_seed(zlib.crc32(f"{self.config.seed}/{stage.name}".encode()) % 2**31)

    def train_gan(self, stage, epochs):
        """A teacher candidate or a scratch baseline (loaded when finished)."""
        if stage.done():
            return stage.load()
        config = self.config
        self.seed_stage(stage)
        with self.strategy.scope():
            generator = self._generator(stage)
            trainer = gan.GAN(
                generator, models.Discriminator(self.image_shape, stage.depth, dtype=self.policy), seed=config.seed,
                objective=config.objective, critic_steps=config.critic_steps,
            )
            trainer.compile(
                g_optimizer=optimizers.objective_optimizer(config.objective, config.learning_rate, config.ema_decay),
                d_optimizer=optimizers.objective_optimizer(config.objective, config.d_learning_rate),
            )
        return progress.timed(self.clock, stage, lambda callbacks: stage.train(
            trainer, generator, self.real_stream, epochs, self.steps_per_epoch(), config, self.grid_z(),
            discriminator=trainer.discriminator if stage.role == "teacher" else None, callbacks=callbacks,
        ))

    def _generator(self, stage):
        return models.Generator(
            # TensorFlow's name scopes take no "+" (student kinds such as "mse+features").
            self.config.latent_dim, self.image_shape, stage.depth, name=f"{stage.name.replace('+', '-')}_generator",
            dtype=self.policy,
        )

    def distil(self, stage, teacher):
        if stage.done():
            return stage.load()
        config = self.config
        joint = stage.loss == "joint"
        self.seed_stage(stage)
        with self.strategy.scope():
            student = self._generator(stage)
            discriminator = models.Discriminator(self.image_shape, stage.depth, dtype=self.policy) if joint else None
            distillation_losses, weights = self.distillation_losses(stage.kind, stage.loss)
            trainer = distill.Distiller(
                precision.with_policy(teacher, self.policy),  # The frozen teacher computes in the run's precision too.
                student,
                loss=stage.loss,
                discriminator=discriminator,
                mse_weight=config.mse_weight if joint and distillation_losses is None else 1.0,
                seed=config.seed,
                objective=config.objective,
                critic_steps=config.critic_steps,
                distillation_losses=distillation_losses,
                distillation_loss_weights=weights,
            )
            trainer.compile(
                # A joint student is a GAN generator too: the objective's Adam betas.
                student_optimizer=optimizers.objective_optimizer(
                    config.objective if joint else objectives.NON_SATURATING, config.student_learning_rate, config.ema_decay
                ),
                d_optimizer=optimizers.objective_optimizer(config.objective, config.d_learning_rate) if joint else None,
            )
        if config.teacher_cache:
            stream = self._cached_stream(teacher, joint)
        else:
            # The MSE scheme needs no real data: it learns from fresh latent vectors.
            stream = self.real_stream if joint else self.latent_stream
        return progress.timed(self.clock, stage, lambda callbacks: stage.train(
            trainer, student, stream, config.student_epochs, self.steps_per_epoch(), config, self.grid_z(), callbacks=callbacks,
        ))

    def distillation_losses(self, kind, loss):
        """`(losses, weights)` of a student kind (`experiment_config.kind_losses`),
        the teacher's discriminator loaded afresh in the strategy's scope."""
        path = self.teacher_discriminator_path if "perceptual" in kind else None
        network = precision.with_policy(keras.saving.load_model(path, safe_mode=True), self.policy) if path else None
        return kind_losses(self.config, kind, loss, network)

    def teacher_cache(self, teacher):
        """The run's cache of the teacher's outputs, filled for every pool the students read.

        Filled once per run folder by the float32 teacher: cached targets are
        the same whatever the training precision (fresh-z students of a
        bfloat16 run get the teacher's bfloat16 images instead, the teacher
        running in the run's precision for speed). What filling cost goes to
        `teacher_cache/fill.json` and `results.json`.
        """
        config = self.config
        if self._cache is None:
            self._cache = teacher_cache_lib.TeacherCache(
                self.cache_dir(), teacher, config.teacher_cache, config.latent_dim,
                seed=config.seed, storage=config.cache_storage,
            )
            self._cache.fill(self.cache_pools(), verbose=config.verbose)
        return self._cache

    def cache_dir(self):
        return os.path.join(self.root, "teacher_cache")

    def cache_record(self):
        """The cache's settings and what filling it cost (None without a cache)."""
        config = self.config
        if not config.teacher_cache:
            return None
        return {
            "pairs_per_pool": config.teacher_cache, "pools": self.cache_pools(), "storage": config.cache_storage,
            "refresh_epochs": config.cache_refresh_epochs, "fill": teacher_cache_lib.read_fill_log(self.cache_dir()),
        }

    def cache_pools(self):
        refresh = self.config.cache_refresh_epochs
        return max(1, math.ceil(self.config.student_epochs / refresh)) if refresh else 1

    def _cached_stream(self, teacher, joint):
        """`stream(skip_batches)` of cached pairs (and real batches for the joint loss)."""
        cache = self.teacher_cache(teacher)
        config = self.config
        steps_per_pool = config.cache_refresh_epochs * self.steps_per_epoch() if config.cache_refresh_epochs else None

        def stream(skip_batches=0):
            tf.random.set_seed(config.seed)  # The pairs' order combines with TF's global seed.
            pairs = cache.dataset(config.batch_size, self.cache_pools(), steps_per_pool, skip_batches)
            if joint:
                pairs = tf.data.Dataset.zip(self.real_stream(skip_batches), pairs).map(
                    lambda real, pair: {**pair, "image": training.images_from_batch(real)}
                )
            return shard_by_data(pairs)

        return stream

    def grid_z(self):
        return self.heldout_z[: self.config.grid_columns]

    def load_teacher(self):
        """The given teacher, checked against the data set (latent size, image shape, range)."""
        with self.strategy.scope():
            teacher = generators_lib.load_generator(self.config.teacher_path)
        generators_lib.check_generator(teacher, self.config.latent_dim, self.image_shape, f"teacher_path={self.config.teacher_path!r}")
        return teacher

    # The run --------------------------------------------------------------

    def run(self):
        """Teacher, students and scratch GANs, their evaluation, the report."""
        config = self.config
        start = time.time()
        os.makedirs(self.root, exist_ok=True)
        write_json(os.path.join(self.root, "config.json"), dataclasses.asdict(config))
        np.save(os.path.join(self.root, "heldout_z.npy"), self.heldout_z)
        keras.utils.set_random_seed(config.seed)
        precision.check_hardware(config.precision)
        # A given teacher and the data first: a teacher that does not fit the data,
        # missing or corrupt files and a batch larger than the split stop the run
        # here, before anything trains or is scored.
        given = self.load_teacher() if config.teacher_path else None
        eval_samples = evaluation.eval_sample_count(config)
        self.clock = progress.run_clock(config, self.steps_per_epoch(), self.root, self.image_shape, given, eval_samples)
        evaluator = evaluation.Evaluator(config) if eval_samples else None
        progress.reference_ready(self.clock, evaluator)
        teacher, candidates = self.teacher_step(given, evaluator)
        generators, results = self.students_step(teacher, candidates)
        self.evaluation_step(evaluator, teacher, generators, results, candidates)
        tuned = quantization_aware_students(self, teacher, generators, results)
        return self.results_step(start, evaluator, generators, results, candidates, tuned)

    def teacher_step(self, given, evaluator):
        """The teacher: the given one, or the best of the trained candidates.

        Returns:
            `(teacher generator, candidate ModelResults)`, the chosen one first
            among the run's results.
        """
        config = self.config
        if given is not None:
            result = ModelResult.of("teacher", "teacher", given, {"path": os.path.abspath(config.teacher_path)})
            if evaluator:
                # Keyed on the file's content: another teacher at the same path is scored anew.
                result.quality = progress.timed_quality(
                    self.clock, evaluator, given, os.path.join(self.root, GIVEN_TEACHER_EVALUATION),
                    identity=files.file_digest(config.teacher_path),
                )
            result.selected = True
            return given, [result]
        trained, candidates = {}, []
        for depth in config.teacher_depths:
            stage = self.stage("teacher", depth)
            trained[stage.name] = self.train_gan(stage, config.teacher_epochs)[0]
            result = ModelResult.of(stage.name, "teacher", trained[stage.name], read_json(stage.record_path), stage, self.root)
            if evaluator:
                result.quality = progress.timed_quality(self.clock, evaluator, trained[stage.name], stage.evaluation_path)
            candidates.append(result)
        best = evaluation.select_teacher(candidates)
        for candidate in candidates:
            candidate.selected = candidate is best
        logging.info("Teacher: %s (chosen among %s)", best.name, [c.name for c in candidates])
        return trained[best.name], candidates

    def students_step(self, teacher, candidates):
        """Every student (size x loss x kind) and scratch GAN; returns `(generators, results)` by name, teacher first."""
        config = self.config
        chosen = next(c for c in candidates if c.selected)
        self.teacher_discriminator_path = self._teacher_discriminator(chosen)
        generators, results = {chosen.name: teacher}, [chosen]
        self.student_stages = {}  # By name: what quantization-aware fine-tuning continues.
        for depth in config.student_depths:
            stages = [self.stage("student", depth, loss, kind) for loss in config.losses for kind in config.distillation]
            for stage in stages:
                self.student_stages[stage.name] = stage
                generators[stage.name], record = self.distil(stage, teacher)
                results.append(ModelResult.of(stage.name, stage.method, generators[stage.name], record, stage, self.root))
            if config.scratch:
                stage = self.stage("scratch", depth)
                generators[stage.name], record = self.train_gan(stage, config.student_epochs)
                results.append(ModelResult.of(stage.name, "scratch", generators[stage.name], record, stage, self.root))
        return generators, results

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
            "losses": list(config.losses),
            "teacher": results[0].name,
            "teacher_candidates": [c.record() for c in candidates],
            "models": [r.record() for r in results],
            "real": evaluator.real if evaluator else None,
            "eval_samples": evaluator.count if evaluator else 0,
            "heldout_z": "heldout_z.npy",
            "export": export_students(config, self.root, generators, results, tuned, evaluator),
            "teacher_cache": self.cache_record(),
            "config": dataclasses.asdict(config),
            "strategy": {"name": config.strategy, "replicas": self.strategy.num_replicas_in_sync},
        }
        summary["wall_time_s"] = round(time.time() - start, 2)  # This invocation (reruns skip training).
        summary["training_time_s"] = round(
            sum((r.training or {}).get("wall_time_s", 0.0) for r in {r.name: r for r in candidates + results}.values()), 2
        )
        report.write(self.root, summary, generators, self.heldout_z, config.grid_columns)
        logging.info("Done in %.0f s. Report: %s", summary["wall_time_s"], os.path.join(self.root, "report.md"))
        failed = [name for name, record in summary["export"].items() if "error" in record]
        if failed:
            raise export_lib.VerificationError(
                f"Exported files of {failed} do not reproduce their Keras models (see results.json, export); "
                "the report is written."
            )
        return summary

    def _teacher_discriminator(self, teacher_result):
        """The chosen teacher's discriminator file (None for a given teacher), checked
        up front when a perceptual student without a discriminator of its own needs it."""
        path = None if self.config.teacher_path else self.stage("teacher", teacher_result.depth).discriminator_path
        path = path if path and os.path.isfile(path) else None
        perceptual = any("perceptual" in kind for kind in self.config.distillation)
        if perceptual:
            logging.info("Perceptual students read %s.", path or "their own discriminators (no teacher discriminator)")
        if perceptual and "mse" in self.config.losses and path is None:
            raise InputError(
                "distillation 'perceptual' with loss 'mse' reads the teacher's discriminator, and "
                + ("a given teacher (teacher_path) has none" if self.config.teacher_path else f"{path} does not exist (a teacher trained before discriminators were saved)")
                + ": use loss 'joint' (the student's own discriminator) or drop 'perceptual'."
            )
        return path


def heldout_latents(config, count=1000):
    """The held-out z every model is compared on (grids, latent fidelity).

    Seeded apart from training's draws; saved to `heldout_z.npy`.
    """
    count = max(count, config.grid_columns * 2)
    return tf.random.stateless_normal((count, config.latent_dim), seed=(config.seed, 2**20)).numpy()


def run(config, overwrite=False, strategy=None):
    """Runs (or resumes) the experiment; returns the results written to results.json."""
    strategy = strategy or make_strategy(config.strategy)
    prepare_output_dir(config, overwrite, strategy)
    return Experiment(config, strategy).run()
