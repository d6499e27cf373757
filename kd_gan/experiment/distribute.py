"""Where the experiment runs: `tf.distribute` strategies by name, the
multi-worker chief's and workers' folders, and data sharding."""

import os

import tensorflow as tf
from absl import logging

from kd_gan import _compat
from kd_gan.errors import InputError

STRATEGIES = ("default", "mirrored", "multi_worker")

_STRATEGIES = {}


def make_strategy(name):
    """The `tf.distribute` strategy named `name` (see `ExperimentConfig.strategy`).

    One instance per name and process: a second MirroredStrategy over the same
    devices can clash with the first one's collective operations.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name not in STRATEGIES:
        raise InputError(f"Unknown strategy {name!r}; choose one of {STRATEGIES}.")
    if name not in _STRATEGIES:
        if name == "mirrored" and not tf.config.list_logical_devices("GPU"):
            _STRATEGIES[name] = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
        elif name == "mirrored":
            _STRATEGIES[name] = tf.distribute.MirroredStrategy()
        else:
            if "TF_CONFIG" not in os.environ:
                logging.warning("strategy=multi_worker without $TF_CONFIG: training as a single worker.")
            _STRATEGIES[name] = tf.distribute.MultiWorkerMirroredStrategy()
    return _STRATEGIES[name]


def worker_output_dir(strategy, output_dir):
    """`output_dir` on the chief; `<output_dir>/workers/<task>` on other workers.

    Every worker trains the same models (a multi-worker step is collective),
    so each keeps its own checkpoints to resume from; only the chief's files
    are the run's results.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return output_dir
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    if task_type in (None, "chief") or (task_type == "worker" and task_id == 0 and not has_chief):
        return output_dir
    return os.path.join(output_dir, "workers", f"{task_type}_{task_id}")


def is_chief(strategy):
    """Whether this process writes the run's results (always, outside multi_worker)."""
    return worker_output_dir(strategy, "run") == "run"


def barrier(strategy):
    """Waits for every worker of a multi-worker strategy (a no-op otherwise)."""
    if _compat.in_multi_worker_mode(strategy):
        strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)


def shard_by_data(dataset):
    """Multi-worker: split each global batch between workers (the local data sets
    are single files, which tf.data's default file sharding refuses)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
