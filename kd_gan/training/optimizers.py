"""Optimizers of the adversarial pair and the students: Adam with each
objective's settings and the weight average, float16 loss scaling, and
their (de)serialization in a model's compile config."""

import keras

from kd_gan.training import objectives
from kd_gan.errors import InputError

DEFAULT_LEARNING_RATE = 2e-4  # DCGAN (Radford et al., 2016): Adam, lr 2e-4, beta_1 0.5.
DEFAULT_BETA_1 = 0.5


def check_ema_decay(ema_decay):
    """`ema_decay` if it is in [0, 1) (0: no moving average), else an InputError naming it."""
    if not 0.0 <= ema_decay < 1.0:
        raise InputError(f"ema_decay must be in [0, 1) (0: no moving average). Received: ema_decay={ema_decay}")
    return ema_decay


def default_optimizer(learning_rate=DEFAULT_LEARNING_RATE, beta_1=DEFAULT_BETA_1, beta_2=0.999, ema_decay=0.0):
    """Adam with the DCGAN settings (beta_1 = 0.5) unless told otherwise.

    Args:
        learning_rate, beta_1, beta_2: Adam's settings.
        ema_decay: > 0 keeps an exponential moving average of the weights
            (Keras' `use_ema`, momentum `ema_decay`, e.g. 0.999). `fit` ends by
            writing the averages into the model (`finalize_variable_values`):
            the network then holds the averaged weights, while a checkpoint
            written during training (`BackupAndRestore`) holds the raw ones
            and the averages beside them.
    """
    if check_ema_decay(ema_decay):
        return keras.optimizers.Adam(
            learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, use_ema=True, ema_momentum=ema_decay
        )
    return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2)


def objective_optimizer(objective, learning_rate=None, ema_decay=0.0):
    """`default_optimizer` with `objective`'s Adam settings (`OBJECTIVE_DEFAULTS`);
    `learning_rate` replaces the objective's when given."""
    settings = objectives.OBJECTIVE_DEFAULTS[objectives.check_objective(objective)]
    return default_optimizer(
        learning_rate or settings["learning_rate"], settings["beta_1"], settings["beta_2"], ema_decay
    )


def loss_scaled(optimizer, network):
    """`optimizer`, wrapped in a `LossScaleOptimizer` when `network` computes in float16.

    What `keras.Model.compile` does for its one optimizer under "mixed_float16":
    float16 gradients of small losses underflow to zero without loss scaling.
    The train steps scale each loss with `optimizer.scale_loss`; the wrapper
    unscales the gradients (and skips steps whose gradients are not finite).
    """
    if network.dtype_policy.compute_dtype == "float16" and not isinstance(
        optimizer, keras.optimizers.LossScaleOptimizer
    ):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def minimize(tape, loss, optimizer, network):
    """One optimizer step of `network` (a model, or a list of variables) on
    `loss`, whose scaling (`scale_loss`) was recorded on `tape`: the float16
    path of Keras' own `train_step`."""
    weights = list(network) if isinstance(network, (list, tuple)) else network.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))


def optimizers_config(model, names):
    """`get_compile_config` of a model whose `compile` takes the optimizers `names`."""
    return {
        name: keras.saving.serialize_keras_object(getattr(model, name))
        for name in names
        if getattr(model, name, None) is not None
    }


def deserialize_optimizers(config):
    """Inverse of `optimizers_config`: keyword arguments for `compile`."""
    return {name: keras.saving.deserialize_keras_object(value) for name, value in config.items()}


class NamedOptimizers:
    """`get_compile_config` / `compile_from_config` for a model whose `compile()`
    takes its optimizers by the names in `OPTIMIZER_NAMES` (a `.keras` file
    restores them, with their state)."""

    OPTIMIZER_NAMES = ()

    def get_compile_config(self):
        return optimizers_config(self, self.OPTIMIZER_NAMES)

    def compile_from_config(self, config):
        self.compile(**deserialize_optimizers(config))
