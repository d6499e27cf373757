"""The `GAN` model: teachers and the equal-size scratch baselines.

Its steps are `kd_gan.training.adversarial_steps`'s (which the Distiller's joint loss
shares), its losses `kd_gan.training.objectives`'.
"""

import keras
import tensorflow as tf

from kd_gan.training import objectives
from kd_gan.training import optimizers
from kd_gan.training import weight_average
from kd_gan.training.adversarial_steps import adversarial_update, critic_update
from kd_gan.training.steps import ExactStepsMixin, images_from_batch, sample_latents, step_logs
from kd_gan.errors import InputError
from kd_gan.models.any_generator import latent_size


def _check_is_model(value, argument):
    if not isinstance(value, keras.layers.Layer):
        raise InputError(
            f"{argument} must be a Keras model or layer. Received: {argument} of type "
            f"{type(value).__name__}"
        )


@keras.saving.register_keras_serializable(package="kd_gan")
class GAN(ExactStepsMixin, optimizers.NamedOptimizers, keras.Model):
    """A generator and a discriminator trained adversarially with `fit`.

    Each batch of real images gives `critic_steps - 1` steps of the
    discriminator alone (each on fresh z), then one simultaneous step of both
    networks. Every critic step sees the same real batch (as Keras' WGAN-GP
    example does; Gulrajani et al.'s Alg. 1 draws a new one per critic step). Used for teachers and for the equal-size scratch baselines.

    A generator optimizer with `use_ema` (`optimizers.default_optimizer(ema_decay=...)`)
    keeps a moving average of the generator's weights; `fit` ends with the
    averages written into the generator and its batch-norm statistics
    recomputed for them (`kd_gan.training.weight_average`), the discriminator keeping
    its own weights.

    Args:
        generator: any Keras model mapping `(batch, latent_dim)` to images
            (a `kd_gan.Generator`, or your own functional or Sequential
            model); the latent size is its `latent_dim` or its input's last
            dimension.
        discriminator: maps images to one logit (critic value) per image; no
            batch norm (examples must not interact: WGAN-GP's penalty is per
            example).
        seed: integer seed of the latent draws.
        objective: "ns" (non-saturating, the paper's), "hinge" or "wgan-gp"
            (`kd_gan.training.objectives`).
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

    OPTIMIZER_NAMES = ("g_optimizer", "d_optimizer")

    def __init__(self, generator, discriminator, seed=0, objective=objectives.NON_SATURATING, critic_steps=None, **kwargs):
        super().__init__(**kwargs)
        _check_is_model(generator, "generator")
        _check_is_model(discriminator, "discriminator")
        self.latent_dim = latent_size(generator)  # Raises when the generator does not tell it.
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
        self.g_optimizer = optimizers.loss_scaled(keras.optimizers.get(g_optimizer or default(self.objective)), self.generator)
        self.d_optimizer = optimizers.loss_scaled(keras.optimizers.get(d_optimizer or default(self.objective)), self.discriminator)
        super().compile(
            optimizer=self.g_optimizer,
            steps_per_execution=self._compile_steps_per_execution(steps_per_execution, kwargs),
            **kwargs,
        )
        # Build each optimizer for its own network only.
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        weight_average.check(self, self.generator.trainable_variables, self.d_optimizer)

    def _averaged_generator(self):
        return self.generator, self.g_optimizer, self.latent_dim

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker]

    def call(self, z, training=False):
        return self.generator(z, training=training)

    def train_step(self, data):
        real_images = images_from_batch(data)
        latent_dim = self.latent_dim
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
