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

from kd_gan import classifiers, data, distill, gan, models, objectives, optimizers, precision, report
from kd_gan import teacher_cache as teacher_cache_lib
from kd_gan import export as export_lib
from kd_gan.distribute import STRATEGIES, barrier, is_chief, make_strategy, shard_by_data, worker_output_dir  # noqa: F401 (STRATEGIES re-exported)
from kd_gan.experiment_config import (  # noqa: F401 (re-exported: the experiment's public names)
    LOSS_CHOICES,
    PRESETS,
    ExperimentConfig,
    build_config,
    check_output_dir,
    preset_values,
)
from kd_gan.jsonio import read_json, write_json
from kd_gan.stages import Stage

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
        stream = distill.latent_dataset(self.config.batch_size, self.config.latent_dim, self.config.seed)
        return shard_by_data(stream.skip(skip_batches))

    def steps_per_epoch(self):
        if self.config.steps_per_epoch:
            return self.config.steps_per_epoch
        if self._steps is None:
            # One pass, rounded down to whole executions of the default 10 steps.
            batches = int(self._real_batches().cardinality())
            multiple = gan.DEFAULT_STEPS_PER_EXECUTION
            self._steps = batches - batches % multiple if batches >= multiple else batches
        return self._steps

    # Stages ---------------------------------------------------------------

    def stage(self, role, depth, loss=None):
        return Stage(self.root, role, depth, loss)

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
        return stage.train(trainer, generator, self.real_stream, epochs, self.steps_per_epoch(), config, self.grid_z())

    def _generator(self, stage):
        return models.Generator(
            self.config.latent_dim, self.image_shape, stage.depth, name=f"{stage.name}_generator", dtype=self.policy
        )

    def distil(self, stage, teacher):
        if stage.done():
            return stage.load()
        config = self.config
        joint = stage.loss == "joint"
        self.seed_stage(stage)
        with self.strategy.scope():
            student = self._generator(stage)
            trainer = distill.Distiller(
                precision.with_policy(teacher, self.policy),  # The frozen teacher computes in the run's precision too.
                student,
                loss=stage.loss,
                discriminator=models.Discriminator(self.image_shape, stage.depth, dtype=self.policy) if joint else None,
                mse_weight=config.mse_weight,
                seed=config.seed,
                objective=config.objective,
                critic_steps=config.critic_steps,
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
        return stage.train(trainer, student, stream, config.student_epochs, self.steps_per_epoch(), config, self.grid_z())

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
                    lambda real, pair: {**pair, "image": gan.images_from_batch(real)}
                )
            return shard_by_data(pairs)

        return stream

    def grid_z(self):
        return self.heldout_z[: self.config.grid_columns]

    def load_teacher(self):
        """The given teacher, checked against the data set (latent size, image shape, range)."""
        with self.strategy.scope():
            teacher = models.load_generator(self.config.teacher_path)
        models.check_generator(teacher, self.config.latent_dim, self.image_shape, f"teacher_path={self.config.teacher_path!r}")
        return teacher

    # The run --------------------------------------------------------------

    def run(self):
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
        teacher = self.load_teacher() if config.teacher_path else None
        self.steps_per_epoch()
        evaluator = report.Evaluator(config) if report.eval_sample_count(config) else None

        entries = []  # One per model, in report order.
        candidates = []
        if config.teacher_path:
            entries.append(self._entry("teacher", "teacher", teacher, {"path": os.path.abspath(config.teacher_path)}, None))
            if evaluator:
                # Keyed on the file's content: another teacher at the same path is scored anew.
                entries[-1]["quality"] = evaluator.quality(
                    teacher, os.path.join(self.root, "teacher_evaluation.json"),
                    identity=classifiers.file_digest(config.teacher_path),
                )
            candidates = [entries[-1]]
        else:
            trained = {}
            for depth in config.teacher_depths:
                stage = self.stage("teacher", depth)
                trained[stage.name] = self.train_gan(stage, config.teacher_epochs)[0]
                entry = self._entry(stage.name, "teacher", trained[stage.name], read_json(stage.record_path), stage)
                if evaluator:
                    entry["quality"] = evaluator.quality(trained[stage.name], stage.evaluation_path)
                candidates.append(entry)
            best = report.select_teacher(candidates)
            teacher = trained[best["name"]]
            entries.append(best)
            logging.info("Teacher: %s (chosen among %s)", best["name"], [c["name"] for c in candidates])

        generators = {entries[0]["name"]: teacher}
        for depth in config.student_depths:
            for loss in config.losses:
                stage = self.stage("student", depth, loss)
                generators[stage.name], record = self.distil(stage, teacher)
                entries.append(self._entry(stage.name, stage.method, generators[stage.name], record, stage))
            if config.scratch:
                stage = self.stage("scratch", depth)
                generators[stage.name], record = self.train_gan(stage, config.student_epochs)
                entries.append(self._entry(stage.name, "scratch", generators[stage.name], record, stage))

        teacher_parameters = entries[0]["parameters"]
        for entry in entries:
            entry["compression_ratio"] = teacher_parameters / entry["parameters"]
            if evaluator and entry is not entries[0]:
                generator = generators[entry["name"]]
                entry["quality"] = evaluator.quality(generator, entry.pop("_evaluation_path", None))
                entry["fidelity"] = evaluator.fidelity(generator, teacher, self.heldout_z)
            entry.pop("_evaluation_path", None)
        for candidate in candidates:
            candidate.pop("_evaluation_path", None)
            candidate["selected"] = candidate["name"] == entries[0]["name"]
        for entry in {e["name"]: e for e in candidates + entries}.values():
            self._log_evaluation(entry)

        results = {
            "dataset": config.dataset,
            "losses": list(config.losses),
            "teacher": entries[0]["name"],
            "teacher_candidates": candidates,
            "models": entries,
            "real": evaluator.real if evaluator else None,
            "eval_samples": evaluator.count if evaluator else 0,
            "heldout_z": "heldout_z.npy",
            "export": self._export(generators, entries),
            "teacher_cache": self.cache_record(),
            "config": dataclasses.asdict(config),
            "strategy": {"name": config.strategy, "replicas": self.strategy.num_replicas_in_sync},
        }
        results["wall_time_s"] = round(time.time() - start, 2)  # This invocation (reruns skip training).
        results["training_time_s"] = round(
            sum((e.get("training") or {}).get("wall_time_s", 0.0) for e in {e["name"]: e for e in candidates + entries}.values()), 2
        )
        report.write(self.root, results, generators, self.heldout_z, config.grid_columns)
        logging.info("Done in %.0f s. Report: %s", results["wall_time_s"], os.path.join(self.root, "report.md"))
        failed = [name for name, record in results["export"].items() if "error" in record]
        if failed:
            raise export_lib.VerificationError(
                f"Exported files of {failed} do not reproduce their Keras models (see results.json, export); "
                "the report is written."
            )
        return results

    def _log_evaluation(self, entry):
        """The final scores of a stage, as TensorBoard scalars `eval/*` in its log folder."""
        numbers = {**(entry.get("quality") or {}), **{f"{k}_to_teacher": v for k, v in (entry.get("fidelity") or {}).items()}}
        numbers = {key: value for key, value in numbers.items() if isinstance(value, float)}
        if not numbers or "path" not in entry:
            return
        writer = tf.summary.create_file_writer(os.path.join(self.root, "tensorboard", entry["name"], "eval"))
        with writer.as_default():
            for key, value in numbers.items():
                tf.summary.scalar(f"eval/{key}", value, step=entry["training"].get("epochs", 0))
        writer.close()

    def _entry(self, name, method, generator, record, stage):
        entry = {
            "name": name,
            "method": method,
            "depth": getattr(generator, "depth", None),
            "parameters": models.count_parameters(generator),
            "training": record,
        }
        if stage is not None:
            entry["path"] = os.path.relpath(stage.model_path, self.root)
            entry["_evaluation_path"] = stage.evaluation_path
        return entry

    def _export(self, generators, entries):
        if not self.config.export:
            return {}
        exported = {}
        for entry in entries:
            if entry["method"].startswith("student"):
                try:
                    exported[entry["name"]] = export_lib.export_generator(
                        generators[entry["name"]], os.path.join(self.root, "export"), self.config.export,
                        self.config.quantization, name=entry["name"],
                    )
                except export_lib.VerificationError as error:
                    # Keep the run's results; the failure is recorded and raised after the report.
                    logging.error("Export of %s failed verification: %s", entry["name"], error)
                    exported[entry["name"]] = {"error": str(error)}
        return exported


def heldout_latents(config, count=1000):
    """The held-out z every model is compared on (grids, latent fidelity).

    Seeded apart from training's draws; saved to `heldout_z.npy`.
    """
    count = max(count, config.grid_columns * 2)
    return tf.random.stateless_normal((count, config.latent_dim), seed=(config.seed, 2**20)).numpy()


def prepare_output_dir(config, overwrite, strategy):
    """Refuses another run's folder, or clears it with `overwrite`, then waits
    for every worker.

    Each process clears only what it writes: the chief `output_dir` (its
    workers' folders left to them), another multi-worker process its own
    `workers/<task>` folder, so no process deletes files another is writing,
    on a shared file system or not. All wait for each other before a stage
    starts.
    """
    if is_chief(strategy):
        check_output_dir(config, overwrite, keep=("workers",) if strategy.num_replicas_in_sync > 1 else ())
    elif overwrite:
        own = worker_output_dir(strategy, config.output_dir)
        check_output_dir(dataclasses.replace(config, output_dir=own), overwrite=True)
    else:
        check_output_dir(config)
    barrier(strategy)


def run(config, overwrite=False, strategy=None):
    """Runs (or resumes) the experiment; returns the results written to results.json."""
    strategy = strategy or make_strategy(config.strategy)
    prepare_output_dir(config, overwrite, strategy)
    return Experiment(config, strategy).run()
