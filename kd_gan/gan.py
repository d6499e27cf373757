"""Adversarial training: the update steps and the `GAN` model (the losses
are in `kd_gan.objectives`).

`GAN` trains teachers and the equal-size scratch baselines; the same update
(`adversarial_update`) serves the Distiller's joint loss, which adds a
weighted MSE-to-teacher term to the generator's objective.
"""

import math

import keras
import tensorflow as tf

from kd_gan import objectives, optimizers, weight_average

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

    def _compile_steps_per_execution(self, steps_per_execution):
        if steps_per_execution is None:
            replicas = self.distribute_strategy.num_replicas_in_sync
            steps_per_execution = 1 if replicas > 1 else DEFAULT_STEPS_PER_EXECUTION
        self._requested_steps_per_execution = steps_per_execution
        return steps_per_execution

    def fit(self, *args, **kwargs):
        steps = kwargs.get("steps_per_epoch")
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
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode():
        results = {name: tf.reshape(value, [1]) for name, value in results.items()}
    return results


def pixel_mse(target_images, images):
    """Per-example mean squared pixel error (the paper's MSE distillation term), in float32
    whatever precision the images come in."""
    target_images, images = tf.cast(target_images, tf.float32), tf.cast(images, tf.float32)
    return tf.reduce_mean(tf.square(images - target_images), axis=[1, 2, 3])


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


def _interpolation_weights(batch_size, seed, step):
    """This replica's share of WGAN-GP's U[0, 1] interpolation weights at `step`
    (keyed apart from z's draws), shaped to broadcast over images."""
    stateless_seed = tf.stack([tf.cast(seed, tf.int64) + 0x5EED, tf.cast(step, tf.int64)])
    weights = replica_share(lambda size: tf.random.stateless_uniform(tf.stack([size]), seed=stateless_seed), batch_size)
    return tf.reshape(weights, [-1, 1, 1, 1])


def _critic_loss(discriminator, real_images, fake_images, objective, seed, step):
    """Per-example loss of the discriminator on a real and a generated batch.

    Real and generated images go through it as one batch (it has no batch
    norm, so this equals two calls); WGAN-GP adds its penalty.

    Returns:
        `(critic loss, generator's adversarial loss)`, per example, float32.
    """
    logits = discriminator(
        tf.concat([tf.cast(real_images, fake_images.dtype), fake_images], axis=0), training=True
    )
    real_logits, fake_logits = tf.split(logits, 2, axis=0)
    d_loss = objectives.discriminator_loss(real_logits, fake_logits, objective)
    if objective == objectives.WGAN_GP:
        weights = _interpolation_weights(tf.shape(real_images)[0], seed, step)
        penalty = objectives.gradient_penalty(discriminator, real_images, fake_images, weights)
        d_loss += objectives.GRADIENT_PENALTY_WEIGHT * penalty
    return d_loss, objectives.generator_loss(fake_logits, objective)


def critic_update(generator, discriminator, d_optimizer, real_images, latent_dim, seed, objective):
    """One step of the discriminator alone, on fresh z drawn at its step count
    (the extra critic steps of WGAN-GP). Returns its per-example loss."""
    step = d_optimizer.iterations
    z = sample_latents(tf.shape(real_images)[0], latent_dim, seed, step)
    fake_images = tf.stop_gradient(generator(z, training=True))
    with tf.GradientTape() as tape:
        d_loss, _ = _critic_loss(discriminator, real_images, fake_images, objective, seed, step)
        d_total = d_optimizer.scale_loss(average_loss(d_loss))
    optimizers.minimize(tape, d_total, d_optimizer, discriminator)
    return d_loss


def adversarial_update(
    generator,
    discriminator,
    g_optimizer,
    d_optimizer,
    real_images,
    z,
    target_images=None,
    mse_weight=0.0,
    objective=objectives.NON_SATURATING,
    seed=0,
):
    """One simultaneous gradient step of generator and discriminator.

    One generator pass feeds both losses (as in TensorFlow's DCGAN example).
    With `target_images`, the generator minimises `adversarial + mse_weight *
    MSE(G(z), target)`: the paper's joint distillation loss (Sec. 3.2).

    Args:
        objective: "ns", "hinge" or "wgan-gp" (`kd_gan.objectives`).
        seed: integer seed of the run (WGAN-GP's interpolation draws).

    Returns:
        Dict of per-example losses: `d_loss` (with WGAN-GP's penalty),
        `g_loss` (adversarial part), and with `target_images` also `mse` and
        `student_loss` (the total).
    """
    with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
        fake_images = generator(z, training=True)
        d_loss, g_loss = _critic_loss(
            discriminator, real_images, fake_images, objective, seed, d_optimizer.iterations
        )
        losses = {"d_loss": d_loss, "g_loss": g_loss}
        g_objective = losses["g_loss"]
        if target_images is not None:
            losses["mse"] = pixel_mse(target_images, fake_images)
            losses["student_loss"] = g_objective = losses["g_loss"] + mse_weight * losses["mse"]
        # Scaled for float16 (a no-op otherwise); the optimizers unscale.
        d_total = d_optimizer.scale_loss(average_loss(losses["d_loss"]))
        g_total = g_optimizer.scale_loss(average_loss(g_objective))
    optimizers.minimize(g_tape, g_total, g_optimizer, generator)
    optimizers.minimize(d_tape, d_total, d_optimizer, discriminator)
    return losses


def _check_is_model(value, argument):
    if not isinstance(value, keras.layers.Layer):
        raise ValueError(
            f"{argument} must be a Keras model or layer. Received: {argument} of type "
            f"{type(value).__name__}"
        )


@keras.saving.register_keras_serializable(package="kd_gan")
class GAN(ExactStepsMixin, keras.Model):
    """A generator and a discriminator trained adversarially with `fit`.

    Each batch of real images gives `critic_steps - 1` steps of the
    discriminator alone (each on fresh z), then one simultaneous step of both
    networks. Every critic step sees the same real batch (as Keras' WGAN-GP
    example does; Gulrajani et al.'s Alg. 1 draws a new one per critic step). Used for teachers and for the equal-size scratch baselines.

    A generator optimizer with `use_ema` (`optimizers.default_optimizer(ema_decay=...)`)
    keeps a moving average of the generator's weights; `fit` ends with the
    averages written into the generator and its batch-norm statistics
    recomputed for them (`kd_gan.weight_average`), the discriminator keeping
    its own weights.

    Args:
        generator: maps `(batch, latent_dim)` to images; must expose
            `latent_dim` (as `kd_gan.Generator` does).
        discriminator: maps images to one logit (critic value) per image; no
            batch norm (examples must not interact: WGAN-GP's penalty is per
            example).
        seed: integer seed of the latent draws.
        objective: "ns" (non-saturating, the paper's), "hinge" or "wgan-gp"
            (`kd_gan.objectives`).
        critic_steps: discriminator steps per generator step; None: the
            objective's (5 for "wgan-gp", else 1).
        **kwargs: passed to `keras.Model`.

    Example:

    ```python
    gan = GAN(Generator(128, (28, 28, 1), 8), Discriminator((28, 28, 1), 8))
    gan.compile()  # DCGAN Adam for both, or pass g_optimizer / d_optimizer
    gan.fit(load_dataset("mnist", "train", batch_size=64), epochs=5)
    ```
    """

    def __init__(self, generator, discriminator, seed=0, objective=objectives.NON_SATURATING, critic_steps=None, **kwargs):
        super().__init__(**kwargs)
        _check_is_model(generator, "generator")
        _check_is_model(discriminator, "discriminator")
        if not hasattr(generator, "latent_dim"):
            raise ValueError(
                "generator must have a `latent_dim` attribute (the size of z), as "
                f"kd_gan.Generator does. Received a {type(generator).__name__} without one."
            )
        self.generator = generator
        self.discriminator = discriminator
        self.seed = int(seed)
        self.objective = objectives.check_objective(objective)
        self.critic_steps = objectives.check_critic_steps(critic_steps, objective)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.built = True  # Sub-models are built; nothing to infer from data.

    def compile(self, g_optimizer=None, d_optimizer=None, steps_per_execution=None, **kwargs):
        """Sets the optimizers (Adam with the objective's settings when not given).

        Args:
            g_optimizer: optimizer of the generator (`optimizers.default_optimizer(ema_decay=0.999)`
                for a moving average of its weights).
            d_optimizer: optimizer of the discriminator. Each is wrapped in a
                `LossScaleOptimizer` when its network computes in float16.
            steps_per_execution: train steps per call of the compiled function;
                default 10 on one device, 1 under a multi-replica strategy.
            **kwargs: passed to `keras.Model.compile`.
        """
        default = optimizers.objective_optimizer
        self.g_optimizer = optimizers.loss_scaled(g_optimizer or default(self.objective), self.generator)
        self.d_optimizer = optimizers.loss_scaled(d_optimizer or default(self.objective), self.discriminator)
        super().compile(
            optimizer=self.g_optimizer,
            steps_per_execution=self._compile_steps_per_execution(steps_per_execution),
            **kwargs,
        )
        # Build each optimizer for its own network only.
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        weight_average.check(self, self.generator, self.d_optimizer)

    def get_compile_config(self):
        return optimizers.optimizers_config(self, ("g_optimizer", "d_optimizer"))

    def _averaged_generator(self):
        return self.generator, self.g_optimizer, self.generator.latent_dim

    def compile_from_config(self, config):
        self.compile(**optimizers.deserialize_optimizers(config))

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker]

    def call(self, z, training=False):
        return self.generator(z, training=training)

    def train_step(self, data):
        real_images = images_from_batch(data)
        latent_dim = self.generator.latent_dim
        # The discriminator's extra steps (WGAN-GP's critic), each on fresh z.
        for _ in range(self.critic_steps - 1):
            critic_update(
                self.generator, self.discriminator, self.d_optimizer, real_images, latent_dim, self.seed, self.objective
            )
        # Draw this step's latent vectors.
        z = sample_latents(tf.shape(real_images)[0], latent_dim, self.seed, self.d_optimizer.iterations)
        # Update discriminator and generator together.
        losses = adversarial_update(
            self.generator, self.discriminator, self.g_optimizer, self.d_optimizer, real_images, z,
            objective=self.objective, seed=self.seed,
        )
        # Track the per-example losses.
        self.d_loss_tracker.update_state(losses["d_loss"])
        self.g_loss_tracker.update_state(losses["g_loss"])
        return step_logs(self)

    def get_config(self):
        config = super().get_config()
        config.update(
            generator=keras.saving.serialize_keras_object(self.generator),
            discriminator=keras.saving.serialize_keras_object(self.discriminator),
            seed=self.seed,
            objective=self.objective,
            critic_steps=self.critic_steps,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        config["discriminator"] = keras.saving.deserialize_keras_object(config["discriminator"])
        return cls(**config)
