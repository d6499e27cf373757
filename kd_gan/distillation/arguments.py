"""The Distiller's arguments checked before anything is built: each refusal
names the value and what is allowed."""

import keras

from kd_gan.distillation import losses as losses_lib
from kd_gan.errors import InputError
from kd_gan.models.any_generator import latent_size

MSE, JOINT, ADVERSARIAL = "mse", "joint", "adversarial"
LOSSES = (MSE, JOINT, ADVERSARIAL)
DISCRIMINATED = (JOINT, ADVERSARIAL)  # The losses that train a discriminator beside the student.


Schedule = keras.optimizers.schedules.LearningRateSchedule


def loss_weight(name, value):
    """`value` as a loss weight: a float >= 0, or a `keras.optimizers.schedules`
    schedule of the student's step (e.g. `PolynomialDecay(100.0, steps, 10.0)`),
    or its serialized config."""
    if isinstance(value, dict):
        value = keras.optimizers.schedules.deserialize(value)
    if isinstance(value, Schedule):
        return value
    return _number(name, value, " or a keras.optimizers.schedules schedule")


def _number(name, value, or_else=""):
    try:
        weight = float(value)
    except (TypeError, ValueError):
        weight = None
    if weight is None or not weight >= 0:
        raise InputError(f"{name} must be a number >= 0{or_else}. Received: {name}={value!r}")
    return weight


def weight_at(weight, step):
    """The weight's value at the student's `step` (a schedule's, else the float)."""
    return weight(step) if isinstance(weight, Schedule) else weight


def describe_weight(weight):
    """A weight in words: the number, or the schedule's class and config."""
    return f"{type(weight).__name__}({weight.get_config()})" if isinstance(weight, Schedule) else repr(weight)


def serialize_weight(weight):
    return keras.optimizers.schedules.serialize(weight) if isinstance(weight, Schedule) else weight


def check(teacher, student, loss, discriminator, mse_weight, adversarial_weight, distillation_losses,
          distillation_loss_weights):
    """Refuses arguments that cannot work together; returns the two weights
    (`mse_weight` a float or a schedule, `adversarial_weight` a float)."""
    if loss not in LOSSES:
        raise InputError(f"loss must be one of {LOSSES}. Received: loss={loss!r}")
    if not isinstance(student, keras.layers.Layer):
        raise InputError(f"student must be a Keras model. Received: student of type {type(student).__name__}")
    if not callable(teacher):
        raise InputError(
            f"teacher must be a Keras model or a callable mapping z to images. "
            f"Received: teacher of type {type(teacher).__name__}"
        )
    mse_weight = loss_weight("mse_weight", mse_weight)
    adversarial_weight = _number("adversarial_weight", adversarial_weight)
    if loss in DISCRIMINATED and discriminator is None:
        against = "real images" if loss == JOINT else "the teacher's images"
        raise InputError(
            f"loss={loss!r} trains the student against a discriminator on {against}: pass "
            "discriminator=kd_gan.Discriminator(image_shape, depth) (student-sized)."
        )
    conditioned = bool(getattr(discriminator, "conditioned", False))
    if conditioned and loss != ADVERSARIAL:
        raise InputError(
            f"A discriminator conditioned on z (latent_dim={discriminator.latent_dim}) judges images against the z "
            f"they were drawn for: it serves loss='adversarial' only (real images have no z). Received: loss={loss!r}"
        )
    if conditioned and int(discriminator.latent_dim) != latent_size(student):
        raise InputError(
            f"The discriminator is conditioned on z of size {discriminator.latent_dim}; the student's latent size is "
            f"{latent_size(student)}."
        )
    if loss == MSE:
        # Arguments the MSE scheme would silently ignore.
        unused = {"discriminator": discriminator is not None, "mse_weight": mse_weight != 1.0, "adversarial_weight": adversarial_weight != 1.0}
        unused = [name for name, given in unused.items() if given]
        if unused:
            raise InputError(f"loss='mse' has no adversarial term and weights its losses by distillation_loss_weights: {unused} would be unused.")
    if distillation_losses is not None and mse_weight != 1.0:
        raise InputError(
            f"mse_weight={describe_weight(mse_weight)} weights the default pixel MSE; with distillation_losses pass "
            "distillation_loss_weights instead."
        )
    if distillation_losses is None and distillation_loss_weights is not None:
        raise InputError("distillation_loss_weights weights distillation_losses: pass those too (or mse_weight for the joint preset).")
    return mse_weight, adversarial_weight


def resolve_losses(distillation_losses, weights, default_weight):
    """The losses and weights the Distiller trains: `[PixelMSE()]` weighted
    `default_weight` when none are given, else each given loss with its weight."""
    if distillation_losses is None:
        return [losses_lib.PixelMSE()], [default_weight]
    distillation_losses = [losses_lib.as_distillation_loss(loss) for loss in distillation_losses]
    weights = [1.0] * len(distillation_losses) if weights is None else list(weights)
    if not distillation_losses or len(weights) != len(distillation_losses):
        raise InputError(
            f"distillation_losses needs at least one loss and one weight per loss; got "
            f"{len(distillation_losses)} losses and weights [{', '.join(describe_weight(w) for w in weights)}]."
        )
    weights = [loss_weight(f"distillation_loss_weights[{i}]", w) for i, w in enumerate(weights)]
    names = [loss.name for loss in distillation_losses]
    if len(set(names)) != len(names) or {"student_loss", "g_loss", "d_loss"} & set(names):
        raise InputError(f"Distillation losses need distinct names apart from student_loss, g_loss, d_loss; got {names}.")
    return distillation_losses, weights
