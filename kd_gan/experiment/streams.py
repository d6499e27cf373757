"""What a run's stages learn from: real batches, latent draws and cached
teacher outputs, each the same sequence in every stage and every run, resumed
mid-stream by skipping the batches an interrupted stage consumed."""

import math
import os

import tensorflow as tf

from kd_gan.data import loading as data
from kd_gan.distillation.teacher_cache import TeacherCache, read_fill_log
from kd_gan.experiment.distribute import shard_by_data
from kd_gan.training import steps


class RunStreams:
    """The data streams of one run.

    Args:
        config: the run's `ExperimentConfig`.
        root: the run's (this worker's) output folder; the teacher cache lives in it.
    """

    def __init__(self, config, root):
        self.config = config
        self.root = root
        self._steps = None
        self._cache = None

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
        stream = steps.latent_dataset(self.config.batch_size, self.config.latent_dim, self.config.seed)
        return shard_by_data(stream.skip(skip_batches))

    def steps_per_epoch(self):
        if self.config.steps_per_epoch:
            return self.config.steps_per_epoch
        if self._steps is None:
            # One pass, rounded down to whole executions of the default 10 steps.
            batches = int(self._real_batches().cardinality())
            multiple = steps.DEFAULT_STEPS_PER_EXECUTION
            self._steps = batches - batches % multiple if batches >= multiple else batches
        return self._steps

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
            self._cache = TeacherCache(
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
            "refresh_epochs": config.cache_refresh_epochs, "fill": read_fill_log(self.cache_dir()),
        }

    def cache_pools(self):
        refresh = self.config.cache_refresh_epochs
        return max(1, math.ceil(self.config.student_epochs / refresh)) if refresh else 1

    def cached_stream(self, teacher, joint):
        """`stream(skip_batches)` of cached pairs (and real batches for the joint loss)."""
        cache = self.teacher_cache(teacher)
        config = self.config
        steps_per_pool = config.cache_refresh_epochs * self.steps_per_epoch() if config.cache_refresh_epochs else None

        def stream(skip_batches=0):
            tf.random.set_seed(config.seed)  # The pairs' order combines with TF's global seed.
            pairs = cache.dataset(config.batch_size, self.cache_pools(), steps_per_pool, skip_batches)
            if joint:
                pairs = tf.data.Dataset.zip(self.real_stream(skip_batches), pairs).map(
                    lambda real, pair: {**pair, "image": steps.images_from_batch(real)}
                )
            return shard_by_data(pairs)

        return stream
