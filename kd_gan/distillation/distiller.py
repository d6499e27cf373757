"""The Distiller: a student generator learns to reproduce a frozen teacher.

Two schemes from the paper (Aguinaldo et al., 2019, Sec. 3.2) are presets:

* `loss="mse"`: minimise E_z ||S(z) - T(z)||^2 over random z. No real data is
  needed: fit it on a dataset of latent vectors (`latent_dataset`) or on any
  dataset of images, whose batches then only set the batch size.
* `loss="joint"`: the student's GAN loss against its own discriminator
  trained on real images, plus `mse_weight` times the MSE term. The
  discriminator learns alongside.

A third scheme came after the paper:

* `loss="adversarial"`: adversarial distillation (as in AKDG, Chen et al.,
  ICPR 2020, and TinyGAN): the discriminator learns to tell the teacher's
  images from the student's for the same z, and the student minimises its
  GAN loss against it plus `mse_weight` times the MSE term. Like "mse" it
  needs no real data; the teacher's images take the place of the data set.
  A discriminator conditioned on z (`Discriminator(..., latent_dim=...)`)
  judges each image against its own z.

What is distilled is pluggable (`kd_gan.distillation.losses`): `distillation_losses`
replaces the pixel MSE by any weighted set of losses (pixel, intermediate
features through adapters, perceptual), with or without the adversarial term.

Either scheme also trains on stored teacher outputs: batches
`{"z": z, "teacher_images": teacher(z)}` (and `"image"`: real images, for
the joint loss) from `kd_gan.distillation.teacher_cache.TeacherCache`, which skips the
teacher's forward pass, the bulk of an MSE step (losses that read the
teacher's feature maps still run it).
"""

import keras
import tensorflow as tf

from kd_gan.distillation import arguments
from kd_gan.distillation import losses as losses_lib
from kd_gan.training import objectives
from kd_gan.training import optimizers
from kd_gan.training import weight_average
from kd_gan.training.adversarial_steps import adversarial_update, critic_update
from kd_gan.errors import InputError
from kd_gan.models.any_generator import freeze, generate, latent_size
from kd_gan.distillation.feature_taps import IMAGES, Taps
from kd_gan.training.steps import ExactStepsMixin, images_from_batch, sample_latents, step_logs
from kd_gan.distillation.arguments import ADVERSARIAL, DISCRIMINATED, JOINT


@keras.saving.register_keras_serializable(package="kd_gan")
class Distiller(ExactStepsMixin, optimizers.NamedOptimizers, keras.Model):
    """Trains a student generator to reproduce a frozen teacher generator.

    Args:
        teacher: the large generator. A Keras model or layer (it is frozen:
            `trainable = False`, called with `training=False`), or any callable
            mapping z to images, e.g. a `keras.layers.TFSMLayer` over a SavedModel
            or `tf.saved_model.load(path).signatures[...]`. Only Keras teachers
            can be saved with the Distiller, and feature losses need one.
        student: the small generator being trained (a Keras model).
        loss: "mse" (the distillation losses alone), "joint" (plus the
            adversarial term against `discriminator`, trained on real images)
            or "adversarial" (plus the adversarial term against
            `discriminator`, trained on the teacher's images).
        discriminator: the student-sized discriminator; required for "joint"
            and "adversarial". For "adversarial" it may be conditioned on z
            (`kd_gan.Discriminator(image_shape, depth, latent_dim=...)`): it
            then sees each image with the z it was drawn for.
        mse_weight: weight of the pixel MSE in the joint and adversarial
            presets (with the default `distillation_losses`): a number, or a
            `keras.optimizers.schedules` schedule of the student's step
            (a pixel weight that decays, as TinyGAN's does:
            `keras.optimizers.schedules.PolynomialDecay(100.0, steps, 10.0)`).
        seed: integer seed of the latent draws.
        objective: adversarial objective of the joint and adversarial
            losses: "ns" (the paper's), "hinge" or "wgan-gp"
            (`kd_gan.training.objectives`).
        critic_steps: discriminator steps per student step of the joint and
            adversarial losses (the extra ones on fresh z); None: the objective's.
        distillation_losses: what the student matches, a list of
            `kd_gan.distillation.losses.DistillationLoss` (or `keras.distillation`
            losses); None: `[PixelMSE()]`, the paper's.
        distillation_loss_weights: one weight per loss (a number or a
            schedule, as `mse_weight`); None: 1 each (`mse_weight` for the
            joint preset's MSE).
        adversarial_weight: weight of the adversarial term ("joint",
            "adversarial").
        check_teacher_range: refuse a teacher whose probe images are not in
            [-1, 1] (uint8, [0, 1], out of range, NaN). A restored Distiller
            skips it: its teacher's weights are loaded after it is built.
        **kwargs: passed to `keras.Model`.

    A student optimizer with `use_ema` keeps a moving average of the
    student's weights, written into the student when `fit` ends. Learned
    parts of the losses (adapters) train with the student and stay out of it.

    Example:

    ```python
    teacher = Generator(128, (28, 28, 1), depth=64)   # trained, or load_generator(path)
    student = Generator(128, (28, 28, 1), depth=2)
    distiller = Distiller(teacher, student, loss="mse")  # or distillation_losses=[PixelMSE(), FeatureLoss()]
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3))
    distiller.fit(latent_dataset(64, 128), epochs=5, steps_per_epoch=200)
    student.save("student.keras")
    ```
    """

    OPTIMIZER_NAMES = ("student_optimizer", "d_optimizer")

    def __init__(
        self, teacher, student, loss="mse", discriminator=None, mse_weight=1.0, seed=0,
        objective=objectives.NON_SATURATING, critic_steps=None, distillation_losses=None,
        distillation_loss_weights=None, adversarial_weight=1.0, check_teacher_range=True, **kwargs
    ):
        super().__init__(**kwargs)
        mse_weight, adversarial_weight = arguments.check(
            teacher, student, loss, discriminator, mse_weight, adversarial_weight, distillation_losses,
            distillation_loss_weights,
        )
        self.conditioned = bool(getattr(discriminator, "conditioned", False))

        self.latent_dim = latent_size(student)
        teacher_latent_dim = getattr(teacher, "latent_dim", None)
        if teacher_latent_dim is not None and int(teacher_latent_dim) != self.latent_dim:
            raise InputError(
                f"Teacher and student must share the latent size: teacher latent_dim="
                f"{teacher_latent_dim}, student latent_dim={self.latent_dim}."
            )
        if isinstance(teacher, keras.layers.Layer):
            freeze(teacher)  # Frozen: only the student (and its D) learn.
        self.loss_name = loss
        self.mse_weight = mse_weight
        self.adversarial_weight = adversarial_weight
        self.seed = int(seed)
        self.objective = objectives.check_objective(objective)
        self.critic_steps = objectives.check_critic_steps(critic_steps, objective)
        self._default_losses = distillation_losses is None  # The preset's pixel MSE (saved as mse_weight).
        # Attribute order sets the trainable weights' order, which Keras pairs with
        # the student optimizer's averages: the student's, the losses' (adapters), then D's.
        self.teacher = teacher
        self.student = student
        self.distillation_losses, self.distillation_loss_weights = arguments.resolve_losses(
            distillation_losses, distillation_loss_weights, self.mse_weight if self.adversarial else 1.0
        )
        self.discriminator = discriminator
        self._taps = Taps(teacher, student, self.distillation_losses)
        self._taps.probe(self, check_range=check_teacher_range)
        self._make_trackers()
        self.built = True  # Sub-models are built; nothing to infer from data.

    def _make_trackers(self):
        names = [loss.name for loss in self.distillation_losses]
        if self.adversarial or len(names) > 1:
            names.insert(0, "student_loss")
        if self.adversarial:
            names += ["g_loss", "d_loss"]
        self._train_metric_names = names
        if "mse" not in names:  # Evaluation reports the pixel MSE to the teacher whatever is trained.
            names = names + ["mse"]
        self.loss_trackers = {name: keras.metrics.Mean(name=name) for name in names}

    @property
    def adversarial(self):
        """Trains a discriminator beside the student ("joint", "adversarial")."""
        return self.loss_name in DISCRIMINATED

    def compile(self, student_optimizer=None, d_optimizer=None, steps_per_execution=None, optimizer=None, **kwargs):
        """Sets the optimizers (Adam with DCGAN's / the objective's settings when not given).

        Args:
            student_optimizer: optimizer of the student (and the losses'
                adapters). `optimizer=` is the same argument, Keras' name.
            d_optimizer: optimizer of the discriminator ("joint" and
                "adversarial" losses only). Each
                is wrapped in a `LossScaleOptimizer` when its network computes
                in float16.
            steps_per_execution: train steps per call of the compiled function;
                default 10 on one device, 1 under a multi-replica strategy.
            **kwargs: passed to `keras.Model.compile` (`loss=` and
                `metrics=` are refused: the Distiller's losses are set when it
                is built).
        """
        if optimizer is not None and student_optimizer is not None:
            raise InputError("Pass the student's optimizer once: optimizer= or student_optimizer=, not both.")
        if d_optimizer is not None and not self.adversarial:
            raise InputError("d_optimizer= is for loss='joint' or 'adversarial'; this Distiller has no adversarial term to train.")
        student_optimizer = keras.optimizers.get(student_optimizer or optimizer or optimizers.default_optimizer())
        self.student_optimizer = optimizers.loss_scaled(student_optimizer, self.student)
        super().compile(
            optimizer=self.student_optimizer,
            steps_per_execution=self._compile_steps_per_execution(steps_per_execution, kwargs),
            **kwargs,
        )
        # Build each optimizer for its own variables only: never the teacher.
        self.student_optimizer.build(self._student_variables())
        if self.adversarial:
            d_optimizer = keras.optimizers.get(d_optimizer or optimizers.objective_optimizer(self.objective))
            self.d_optimizer = optimizers.loss_scaled(d_optimizer, self.discriminator)
            self.d_optimizer.build(self.discriminator.trainable_variables)
        weight_average.check(self, self._student_variables(), getattr(self, "d_optimizer", None))

    def _student_variables(self):
        """The student's trainable variables, then the losses' (adapters)."""
        return self.student.trainable_variables + [v for loss in self.distillation_losses for v in loss.trainable_variables]

    def _averaged_generator(self):
        return self.student, self.student_optimizer, self.latent_dim

    @property
    def metrics(self):
        return list(self.loss_trackers.values())

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
        data = tf.convert_to_tensor(images_from_batch(data))
        if data.shape.rank == 2:
            if data.shape[-1] != self.latent_dim:
                raise InputError(
                    f"Latent batches must have shape (batch, {self.latent_dim}); got {tuple(data.shape)}."
                )
            return tf.cast(data, tf.float32)  # Layers cast z to their compute dtype.
        step = self.student_optimizer.iterations if step is None else step
        return sample_latents(tf.shape(data)[0], self.latent_dim, self.seed, step)

    def _teacher_outputs(self, data):
        """z and what the losses read of the frozen teacher for a training batch.

        A batch with `teacher_images` (a dict from `TeacherCache.dataset`)
        brings z and the images; otherwise z is taken from the batch or drawn,
        and the teacher runs on it (also when a loss reads its feature maps).
        """
        if isinstance(data, dict) and "teacher_images" in data:
            if "z" not in data:
                raise InputError(f"A batch of cached pairs needs 'z' beside 'teacher_images'; it has {sorted(data)}.")
            z = tf.cast(data["z"], tf.float32)
            if z.shape.rank != 2 or z.shape[-1] != self.latent_dim:
                raise InputError(
                    f"Cached z must have shape (batch, {self.latent_dim}) (the student's latent size); got {tuple(z.shape)}."
                )
            if not self._taps.teacher_layers:
                return z, {IMAGES: tf.cast(data["teacher_images"], tf.float32)}
            return z, self._taps.teacher_outputs(z)
        z = self._latents(data)
        return z, self._taps.teacher_outputs(z)

    def _distillation(self, z, teacher_outputs):
        """The student's images on `z` (training mode), each loss's per-example
        value and their weighted sum."""
        student_outputs = self._taps.student_outputs(z, training=True)
        terms = {
            loss.name: loss.compute_loss(*self._taps.compared(loss, teacher_outputs, student_outputs))
            for loss in self.distillation_losses
        }
        scheduled = any(isinstance(w, arguments.Schedule) for w in self.distillation_loss_weights)
        step = self.student_optimizer.iterations if scheduled else None
        weighted = [
            tf.cast(arguments.weight_at(weight, step), terms[loss.name].dtype) * terms[loss.name]
            for loss, weight in zip(self.distillation_losses, self.distillation_loss_weights)
        ]
        return student_outputs[IMAGES], terms, tf.add_n(weighted)

    def train_step(self, data):
        if self.loss_name == JOINT:
            return self._joint_step(data)
        if self.loss_name == ADVERSARIAL:
            return self._adversarial_distillation_step(data)
        # z and the frozen teacher's outputs: cached pairs, or drawn and run now.
        z, teacher_outputs = self._teacher_outputs(data)
        # Step the student (and the losses' adapters) towards the teacher.
        with tf.GradientTape() as tape:
            _, terms, total = self._distillation(z, teacher_outputs)
            loss = self.student_optimizer.scale_loss(tf.nn.compute_average_loss(total))
        optimizers.minimize(tape, loss, self.student_optimizer, self._student_variables())
        terms["student_loss"] = total
        return self._logs(terms)

    def _logs(self, values):
        trackers = [self.loss_trackers[name] for name in self._train_metric_names]
        for tracker in trackers:
            tracker.update_state(values[tracker.name])
        return step_logs(self, trackers)

    def _joint_step(self, data):
        if isinstance(data, dict) and "image" not in data:
            raise InputError(
                f"loss='joint' needs real images beside the cached pairs: a batch with an 'image' entry "
                f"(TeacherCache.dataset zipped with the real data); this batch has {sorted(data)}."
            )
        real_images = images_from_batch(data)
        if real_images.shape.rank != 4:
            raise InputError(
                f"loss='joint' needs batches of real images (batch, height, width, channels); "
                f"got a batch of shape {tuple(real_images.shape)}."
            )
        # The discriminator's extra steps (WGAN-GP's critic), each on fresh z.
        self._critic_steps(real_images)
        # z and the frozen teacher's outputs: cached pairs, or drawn and run now.
        z, teacher_outputs = self._teacher_outputs(data)
        return self._adversarial_step(real_images, z, teacher_outputs)

    def _adversarial_distillation_step(self, data):
        # z and the frozen teacher's outputs: cached pairs, or drawn and run now.
        z, teacher_outputs = self._teacher_outputs(data)
        # The teacher's images are the discriminator's real data: the same z as the student's.
        teacher_images = tf.stop_gradient(teacher_outputs[IMAGES])
        # A discriminator conditioned on z sees each image with its z (its extra steps too).
        condition = z if self.conditioned else None
        self._critic_steps(teacher_images, condition)
        return self._adversarial_step(teacher_images, z, teacher_outputs, condition)

    def _critic_steps(self, real_images, condition=None):
        """The discriminator's extra steps (WGAN-GP's critic), each on fresh z (or on `condition`)."""
        for _ in range(self.critic_steps - 1):
            critic_update(
                self.student, self.discriminator, self.d_optimizer, real_images, self.latent_dim, self.seed,
                self.objective, condition,
            )

    def _adversarial_step(self, real_images, z, teacher_outputs, condition=None):
        """Simultaneous step of student and discriminator; the student's loss adds the distillation terms."""
        losses = adversarial_update(
            self.student, self.discriminator, self.student_optimizer, self.d_optimizer, real_images, z,
            objective=self.objective, seed=self.seed, distillation=lambda z: self._distillation(z, teacher_outputs),
            adversarial_weight=self.adversarial_weight, g_variables=self._student_variables(), condition=condition,
        )
        return self._logs(losses)

    def test_step(self, data):
        # z of image batches: keyed on -1 - batch index, a stream training's steps (>= 0) never draw.
        counter = self._test_batches()
        batch_index = counter.read_value()
        with tf.control_dependencies([batch_index]):
            counter.assign_add(1)
        z = self._latents(data, step=-1 - batch_index)
        # Student in inference mode against the teacher on the batch's z.
        tracker = self.loss_trackers["mse"]
        tracker.update_state(losses_lib.pixel_mse(generate(self.teacher, z), self.student(z, training=False)))
        return step_logs(self, [tracker])

    def get_config(self):
        if not isinstance(self.teacher, keras.layers.Layer):
            raise NotImplementedError(
                f"A Distiller with a {type(self.teacher).__name__} teacher cannot be serialized; "
                "save the student (`distiller.student.save(...)`) or use a Keras teacher."
            )
        config = super().get_config()
        serialize = keras.saving.serialize_keras_object
        config.update(
            teacher=serialize(self.teacher),
            student=serialize(self.student),
            discriminator=None if self.discriminator is None else serialize(self.discriminator),
            loss=self.loss_name,
            seed=self.seed,
            objective=self.objective,
            critic_steps=self.critic_steps,
            adversarial_weight=self.adversarial_weight,
        )
        if self._default_losses:
            config.update(mse_weight=arguments.serialize_weight(self.mse_weight))
        else:
            config.update(
                distillation_losses=[serialize(loss) for loss in self.distillation_losses],
                distillation_loss_weights=[arguments.serialize_weight(w) for w in self.distillation_loss_weights],
            )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("teacher", "student", "discriminator"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        config["check_teacher_range"] = False  # The teacher's weights are loaded after the model is built.
        if config.get("distillation_losses") is not None:
            config["distillation_losses"] = [keras.saving.deserialize_keras_object(c) for c in config["distillation_losses"]]
        return cls(**config)
