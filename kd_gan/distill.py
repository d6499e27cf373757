"""The Distiller: a student generator learns to reproduce a frozen teacher.

Two schemes from the paper (Aguinaldo et al., 2019, Sec. 3.2):

* `loss="mse"`: minimise E_z ||S(z) - T(z)||^2 over random z. No real data is
  needed: fit it on a dataset of latent vectors (`latent_dataset`) or on any
  dataset of images, whose batches then only set the batch size.
* `loss="joint"`: the student's ordinary (non-saturating) GAN loss against its
  own discriminator trained on real images, plus `mse_weight` times the MSE
  term. The discriminator learns alongside.

Either scheme also trains on stored teacher outputs: batches
`{"z": z, "teacher_images": teacher(z)}` (and `"image"`: real images, for
the joint loss) from `kd_gan.teacher_cache.TeacherCache`, which skips the
teacher's forward pass, the bulk of an MSE step.
"""

import keras
import tensorflow as tf
from absl import logging

from kd_gan import gan, objectives, optimizers, weight_average

LOSSES = ("mse", "joint")


def latent_dataset(batch_size, latent_dim, seed=0):
    """An endless `tf.data.Dataset` of z ~ N(0, I) batches, deterministic in `seed`.

    Fit an MSE Distiller on it with `steps_per_epoch`:

    ```python
    distiller.fit(latent_dataset(64, 128), epochs=10, steps_per_epoch=500)
    ```
    """
    if batch_size < 1 or latent_dim < 1:
        raise ValueError(
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


def latent_size(generator):
    """Size of z a generator takes: its `latent_dim`, or its input's last dimension."""
    if hasattr(generator, "latent_dim"):
        return int(generator.latent_dim)
    try:
        return int(generator.input_shape[-1])
    except (AttributeError, ValueError, TypeError):
        raise ValueError(
            f"Cannot tell the latent size of {type(generator).__name__}: it has no "
            "`latent_dim` attribute and no known input shape."
        ) from None


def generate(generator, z):
    """Images of `generator` for `z`: a Keras model (inference mode) or any callable.

    A SavedModel signature returns a dict; a generator has one output, taken from it.
    """
    if isinstance(generator, keras.layers.Layer):
        outputs = generator(z, training=False)
    else:
        outputs = generator(z)
    if isinstance(outputs, dict):
        if len(outputs) != 1:
            raise ValueError(
                f"The teacher returns several outputs {sorted(outputs)}; expected one image tensor."
            )
        outputs = next(iter(outputs.values()))
    return outputs


@keras.saving.register_keras_serializable(package="kd_gan")
class Distiller(gan.ExactStepsMixin, keras.Model):
    """Trains a student generator to reproduce a frozen teacher generator.

    Args:
        teacher: the large generator. A Keras model or layer (it is frozen:
            `trainable = False`, called with `training=False`), or any callable
            mapping z to images, e.g. a `keras.layers.TFSMLayer` over a SavedModel
            or `tf.saved_model.load(path).signatures[...]`. Only Keras teachers
            can be saved with the Distiller.
        student: the small generator being trained (a Keras model).
        loss: "mse" or "joint".
        discriminator: the student-sized discriminator; required for "joint".
        mse_weight: weight of the MSE term in the joint loss (the MSE scheme
            minimises the MSE alone).
        seed: integer seed of the latent draws.
        objective: adversarial objective of the joint loss: "ns" (the
            paper's), "hinge" or "wgan-gp" (`kd_gan.objectives`).
        critic_steps: discriminator steps per student step of the joint loss
            (the extra ones on fresh z); None: the objective's.

    A student optimizer with `use_ema` keeps a moving average of the
    student's weights, written into the student when `fit` ends.
        **kwargs: passed to `keras.Model`.

    Example:

    ```python
    teacher = Generator(128, (28, 28, 1), depth=64)   # trained, or load_generator(path)
    student = Generator(128, (28, 28, 1), depth=2)
    distiller = Distiller(teacher, student, loss="mse")
    distiller.compile(student_optimizer=keras.optimizers.Adam(1e-3))
    distiller.fit(latent_dataset(64, 128), epochs=5, steps_per_epoch=200)
    student.save("student.keras")
    ```
    """

    def __init__(
        self, teacher, student, loss="mse", discriminator=None, mse_weight=1.0, seed=0,
        objective=objectives.NON_SATURATING, critic_steps=None, **kwargs
    ):
        super().__init__(**kwargs)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}. Received: loss={loss!r}")
        if not isinstance(student, keras.layers.Layer):
            raise ValueError(
                f"student must be a Keras model. Received: student of type {type(student).__name__}"
            )
        if not callable(teacher):
            raise ValueError(
                f"teacher must be a Keras model or a callable mapping z to images. "
                f"Received: teacher of type {type(teacher).__name__}"
            )
        mse_weight = float(mse_weight)
        if not mse_weight >= 0:
            raise ValueError(f"mse_weight must be >= 0. Received: mse_weight={mse_weight}")
        if loss == "joint" and discriminator is None:
            raise ValueError(
                "loss='joint' trains the student against a discriminator on real images: pass "
                "discriminator=kd_gan.Discriminator(image_shape, depth) (student-sized)."
            )
        if loss == "mse" and discriminator is not None:
            logging.warning("loss='mse' does not use the discriminator; it will not be trained.")

        self.latent_dim = latent_size(student)
        teacher_latent_dim = getattr(teacher, "latent_dim", None)
        if teacher_latent_dim is not None and int(teacher_latent_dim) != self.latent_dim:
            raise ValueError(
                f"Teacher and student must share the latent size: teacher latent_dim="
                f"{teacher_latent_dim}, student latent_dim={self.latent_dim}."
            )
        if isinstance(teacher, keras.layers.Layer):
            teacher.trainable = False  # Frozen: only the student (and its D) learn.
        self.teacher = teacher
        self.student = student
        self.discriminator = discriminator
        self.loss_name = loss
        self.mse_weight = mse_weight
        self.seed = int(seed)
        self.objective = objectives.check_objective(objective)
        self.critic_steps = objectives.check_critic_steps(critic_steps, objective)
        self._check_shapes()

        self.mse_tracker = keras.metrics.Mean(name="mse")
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.built = True  # Sub-models are built; nothing to infer from data.

    def _check_shapes(self):
        """Calls teacher, student (and D) on a probe z; rejects mismatches by name."""
        z = tf.zeros((2, self.latent_dim))
        try:
            teacher_images = self._teacher_images(z)
        except Exception as error:
            raise ValueError(
                f"The teacher could not be called on latent vectors of shape {tuple(z.shape)} "
                f"(the student's latent size is {self.latent_dim}): {error}"
            ) from error
        student_images = self.student(z, training=False)
        if tuple(teacher_images.shape) != tuple(student_images.shape):
            raise ValueError(
                f"Teacher and student must produce images of the same shape: teacher gives "
                f"{tuple(teacher_images.shape[1:])}, student gives {tuple(student_images.shape[1:])}."
            )
        if self.discriminator is not None:
            logits = self.discriminator(student_images, training=False)
            if logits.shape.rank != 2 or logits.shape[-1] != 1:
                raise ValueError(
                    f"The discriminator must map the student's images {tuple(student_images.shape[1:])} "
                    f"to one logit each; it returned shape {tuple(logits.shape)}."
                )

    def _teacher_images(self, z):
        return generate(self.teacher, z)

    def compile(
        self,
        student_optimizer=None,
        d_optimizer=None,
        steps_per_execution=None,
        **kwargs,
    ):
        """Sets the optimizers (DCGAN Adam when not given).

        Args:
            student_optimizer: optimizer of the student.
            d_optimizer: optimizer of the discriminator (joint loss only). Each
                is wrapped in a `LossScaleOptimizer` when its network computes
                in float16.
            steps_per_execution: train steps per call of the compiled function;
                default 10 on one device, 1 under a multi-replica strategy.
            **kwargs: passed to `keras.Model.compile`.
        """
        self.student_optimizer = optimizers.loss_scaled(student_optimizer or optimizers.default_optimizer(), self.student)
        super().compile(
            optimizer=self.student_optimizer,
            steps_per_execution=self._compile_steps_per_execution(steps_per_execution),
            **kwargs,
        )
        # Build each optimizer for its own network only: never the teacher.
        self.student_optimizer.build(self.student.trainable_variables)
        if self.loss_name == "joint":
            self.d_optimizer = optimizers.loss_scaled(d_optimizer or optimizers.objective_optimizer(self.objective), self.discriminator)
            self.d_optimizer.build(self.discriminator.trainable_variables)
        weight_average.check(self, self.student, getattr(self, "d_optimizer", None))

    def get_compile_config(self):
        return optimizers.optimizers_config(self, ("student_optimizer", "d_optimizer"))

    def _averaged_generator(self):
        return self.student, self.student_optimizer, self.latent_dim

    def compile_from_config(self, config):
        self.compile(**optimizers.deserialize_optimizers(config))

    @property
    def metrics(self):
        if self.loss_name == "joint":
            return [self.student_loss_tracker, self.mse_tracker, self.g_loss_tracker, self.d_loss_tracker]
        return [self.mse_tracker]

    def call(self, z, training=False):
        return self.student(z, training=training)

    def evaluate(self, *args, **kwargs):
        # Each evaluation draws the same z sequence, one batch of its own per test batch.
        self._test_batches().assign(0)
        return super().evaluate(*args, **kwargs)

    def _test_batches(self):
        """Test batches run in this evaluation (a counter outside the saved weights)."""
        if getattr(self, "_test_batch_counter", None) is None:
            with self.distribute_strategy.scope():
                self._test_batch_counter = tf.Variable(
                    0, dtype=tf.int64, trainable=False, name="test_batches",
                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                )
        return self._test_batch_counter

    def _latents(self, data, step=None):
        """z of the batch: given (rank 2) or drawn for a batch of images (rank 4) at `step`."""
        data = tf.convert_to_tensor(gan.images_from_batch(data))
        if data.shape.rank == 2:
            if data.shape[-1] != self.latent_dim:
                raise ValueError(
                    f"Latent batches must have shape (batch, {self.latent_dim}); got {tuple(data.shape)}."
                )
            return tf.cast(data, tf.float32)  # Layers cast z to their compute dtype.
        step = self.student_optimizer.iterations if step is None else step
        return gan.sample_latents(tf.shape(data)[0], self.latent_dim, self.seed, step)

    def _pairs(self, data):
        """z and the teacher's images of a training batch.

        A batch with `teacher_images` (a dict from `TeacherCache.dataset`)
        brings both; otherwise z is taken from the batch or drawn, and the
        teacher runs on it.
        """
        if isinstance(data, dict) and "teacher_images" in data:
            if "z" not in data:
                raise ValueError(f"A batch of cached pairs needs 'z' beside 'teacher_images'; it has {sorted(data)}.")
            z, teacher_images = tf.cast(data["z"], tf.float32), tf.cast(data["teacher_images"], tf.float32)
            if z.shape.rank != 2 or z.shape[-1] != self.latent_dim:
                raise ValueError(
                    f"Cached z must have shape (batch, {self.latent_dim}) (the student's latent size); got {tuple(z.shape)}."
                )
            return z, teacher_images
        z = self._latents(data)
        return z, tf.stop_gradient(self._teacher_images(z))

    def train_step(self, data):
        if self.loss_name == "joint":
            return self._joint_step(data)
        # z and the frozen teacher's images: cached pairs, or drawn and run now.
        z, teacher_images = self._pairs(data)
        # Step the student towards the teacher's images.
        with tf.GradientTape() as tape:
            mse = gan.pixel_mse(teacher_images, self.student(z, training=True))
            loss = self.student_optimizer.scale_loss(gan.average_loss(mse))
        optimizers.minimize(tape, loss, self.student_optimizer, self.student)
        self.mse_tracker.update_state(mse)
        return gan.step_logs(self)

    def _joint_step(self, data):
        if isinstance(data, dict) and "image" not in data:
            raise ValueError(
                f"loss='joint' needs real images beside the cached pairs: a batch with an 'image' entry "
                f"(TeacherCache.dataset zipped with the real data); this batch has {sorted(data)}."
            )
        real_images = gan.images_from_batch(data)
        if real_images.shape.rank != 4:
            raise ValueError(
                f"loss='joint' needs batches of real images (batch, height, width, channels); "
                f"got a batch of shape {tuple(real_images.shape)}."
            )
        # The discriminator's extra steps (WGAN-GP's critic), each on fresh z.
        for _ in range(self.critic_steps - 1):
            gan.critic_update(
                self.student, self.discriminator, self.d_optimizer, real_images, self.latent_dim, self.seed,
                self.objective,
            )
        # z and the frozen teacher's images: cached pairs, or drawn and run now.
        z, teacher_images = self._pairs(data)
        # Simultaneous step of student and discriminator; the student's loss adds the MSE term.
        losses = gan.adversarial_update(
            self.student,
            self.discriminator,
            self.student_optimizer,
            self.d_optimizer,
            real_images,
            z,
            target_images=teacher_images,
            mse_weight=self.mse_weight,
            objective=self.objective,
            seed=self.seed,
        )
        for tracker in self.metrics:
            tracker.update_state(losses[tracker.name])
        return gan.step_logs(self)

    def test_step(self, data):
        # z of image batches: keyed on -1 - batch index, a stream training's steps (>= 0) never draw.
        counter = self._test_batches()
        batch_index = counter.read_value()
        with tf.control_dependencies([batch_index]):
            counter.assign_add(1)
        z = self._latents(data, step=-1 - batch_index)
        # Student in inference mode against the teacher on the batch's z.
        self.mse_tracker.update_state(
            gan.pixel_mse(self._teacher_images(z), self.student(z, training=False))
        )
        return gan.step_logs(self, [self.mse_tracker])

    def get_config(self):
        if not isinstance(self.teacher, keras.layers.Layer):
            raise NotImplementedError(
                f"A Distiller with a {type(self.teacher).__name__} teacher cannot be serialized; "
                "save the student (`distiller.student.save(...)`) or use a Keras teacher."
            )
        config = super().get_config()
        config.update(
            teacher=keras.saving.serialize_keras_object(self.teacher),
            student=keras.saving.serialize_keras_object(self.student),
            discriminator=(
                None
                if self.discriminator is None
                else keras.saving.serialize_keras_object(self.discriminator)
            ),
            loss=self.loss_name,
            mse_weight=self.mse_weight,
            seed=self.seed,
            objective=self.objective,
            critic_steps=self.critic_steps,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("teacher", "student", "discriminator"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
