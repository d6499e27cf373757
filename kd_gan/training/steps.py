"""The training plumbing the GAN and the Distiller share: exact step counts
under multi-step execution, the logs a step returns, batches, latent draws
and the global-batch average `tf.distribute` expects.
"""

import math

import tensorflow as tf

from kd_gan import _compat
from kd_gan.training import weight_average
from kd_gan.errors import InputError

# compile() arguments of keras.Model that these models set themselves.
_OWN_COMPILE_ARGUMENTS = {
    "loss": "their losses are set when they are built (objective=, distillation_losses=)",
    "loss_weights": "their loss weights are set when they are built",
    "metrics": "they report their own losses; add a callback (e.g. kd_gan.evaluation.EvaluationCallback) for scores",
    "weighted_metrics": "they report their own losses",
}

# Steps run per call of the compiled train function: amortises fit's per-step
# Python overhead (benchmarks/bench_distill.py: 0.89x the speed of a plain
# tf.function loop at 1 step per call, 1.06x at 10).
DEFAULT_STEPS_PER_EXECUTION = 10


class ExactStepsMixin:
    """Multi-step execution that still runs exactly `steps_per_epoch` steps.

    `compile` defaults `steps_per_execution` to 10 on one device (1 under a
    multi-replica strategy: TF 2.21 fails to run Keras' multi-step loop around
    `strategy.run` there). Keras 3.15 rounds `steps_per_epoch` up to whole
    executions (25 steps at 10 per execution run 30), so `fit` lowers the
    steps per execution to the largest divisor of `steps_per_epoch`.
    """

    def _compile_steps_per_execution(self, steps_per_execution, compile_arguments=None):
        for name in compile_arguments or ():
            if name in _OWN_COMPILE_ARGUMENTS:
                raise InputError(f"{type(self).__name__}.compile takes no {name}=: {_OWN_COMPILE_ARGUMENTS[name]}.")
        if steps_per_execution is None:
            replicas = self.distribute_strategy.num_replicas_in_sync
            steps_per_execution = 1 if replicas > 1 else DEFAULT_STEPS_PER_EXECUTION
        self._requested_steps_per_execution = steps_per_execution
        return steps_per_execution

    def fit(self, *args, **kwargs):
        data = args[0] if args else kwargs.get("x")
        steps = kwargs.get("steps_per_epoch")
        if isinstance(data, tf.data.Dataset):
            if not steps and data.cardinality() == tf.data.INFINITE_CARDINALITY:
                raise InputError(
                    "fit got an endless dataset (e.g. kd_gan.latent_dataset) and no steps_per_epoch: pass "
                    "steps_per_epoch=N, the steps that make one epoch."
                )
            kwargs.setdefault("shuffle", False)  # A dataset is shuffled by its pipeline; Keras ignores it and warns.
        requested = getattr(self, "_requested_steps_per_execution", self.steps_per_execution)
        wanted = math.gcd(int(steps), requested) if steps else requested
        if wanted != self.steps_per_execution:
            self.steps_per_execution = wanted
            self.train_function = None  # Rebuilt for the new step count.
        history = super().fit(*args, **kwargs)
        generator, optimizer, latent_dim = self._averaged_generator()
        if kwargs.get("epochs", 1) > 0:
            weight_average.finalize(generator, optimizer, latent_dim, seed=getattr(self, "seed", 0))
        return history


def step_logs(model, metrics=None):
    """The logs a `train_step` returns: each metric's result.

    Under a multi-worker `MultiWorkerMirroredStrategy`, Keras 3.15 averages the
    replicas' logs with `strategy.reduce("MEAN", value, axis=0)`, which fails on
    scalars; there each result is returned with shape (1,), reduced to a scalar.
    """
    results = {metric.name: metric.result() for metric in (model.metrics if metrics is None else metrics)}
    strategy = model.distribute_strategy
    if _compat.in_multi_worker_mode(strategy):
        results = {name: tf.reshape(value, [1]) for name, value in results.items()}
    return results


def images_from_batch(data):
    """The images of a batch that may also carry labels: `x` or `(x, y, ...)`."""
    if isinstance(data, (tuple, list)):
        data = data[0]
    if isinstance(data, dict):
        data = data["image"]
    return data


def replica_share(draw, batch_size):
    """This replica's slice of a global batch made by `draw(global_batch_size)`:
    the same global batch for any number of replicas."""
    context = tf.distribute.get_replica_context()
    num_replicas = context.num_replicas_in_sync if context is not None else 1
    replica_id = context.replica_id_in_sync_group if context is not None else 0
    start = tf.cast(replica_id, tf.int32) * batch_size
    return draw(batch_size * num_replicas)[start : start + batch_size]


def sample_latents(batch_size, latent_dim, seed, step):
    """This replica's share of a global batch of z ~ N(0, I).

    Stateless and keyed on (seed, step), with `step` an optimizer's iteration
    counter: the draw works in a `tf.distribute` replica context (a stateful
    generator cannot be updated there), a resumed run continues the same
    sequence, and the global batch is the same for any number of replicas
    (each replica takes its slice of it).

    Args:
        batch_size: per-replica batch size (scalar tensor or int).
        latent_dim: size of z.
        seed: integer seed of the run.
        step: integer step counter (e.g. `optimizer.iterations`).
    """
    stateless_seed = tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])
    return replica_share(
        lambda size: tf.random.stateless_normal(tf.stack([size, latent_dim]), seed=stateless_seed), batch_size
    )


def average_loss(per_example_loss):
    """Mean over the *global* batch, as `tf.distribute` expects for gradients."""
    return tf.nn.compute_average_loss(per_example_loss)


def latent_dataset(batch_size, latent_dim, seed=0):
    """An endless `tf.data.Dataset` of z ~ N(0, I) batches, deterministic in `seed`.

    Fit an MSE Distiller on it with `steps_per_epoch`:

    ```python
    distiller.fit(latent_dataset(64, 128), epochs=10, steps_per_epoch=500)
    ```
    """
    if batch_size < 1 or latent_dim < 1:
        raise InputError(
            f"batch_size and latent_dim must be >= 1. Received: batch_size={batch_size}, "
            f"latent_dim={latent_dim}"
        )
    return (
        tf.data.Dataset.random(seed=seed)
        .map(
            lambda step: tf.random.stateless_normal(
                [batch_size, latent_dim], seed=tf.stack([tf.constant(seed, tf.int64), step])
            ),
        )
        # Drawing z is cheap: a serial map and a fixed prefetch keep up, and avoid
        # the ~1 s stall that tf.data's autotuner added to some fit calls here.
        .prefetch(2)
    )
