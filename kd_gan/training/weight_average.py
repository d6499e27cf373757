"""The generator's weight average (EMA): checks, and what `fit` ends with.

The average is Keras' optimizer `use_ema` (`optimizers.default_optimizer(ema_decay=...)`).
Keras ends `fit` by writing the model optimizer's averages over the model's
trainable weights in order (`finalize_variable_values`); `GAN` and `Distiller`
list the generator's first and refuse an averaging discriminator optimizer,
then write the averages into the generator themselves (`finalize`), so the
result does not hang on how a backend pairs the lists.

Averaging covers trainable weights only: batch-norm statistics gathered while
the raw weights trained do not fit the averaged ones. `finalize` recomputes
them for the averaged generator (the "standing statistics" of Brock et al.,
2019) over batches of z in training mode.
"""

import keras
import tensorflow as tf

from kd_gan.errors import InputError

STATISTICS_BATCHES = 100  # Batches of z the standing statistics average over.
STATISTICS_BATCH_SIZE = 64


def uses_average(optimizer):
    """Whether `optimizer` (or the one a `LossScaleOptimizer` wraps) keeps a weight average."""
    return bool(getattr(getattr(optimizer, "inner_optimizer", optimizer), "use_ema", False))


def check(model, variables, d_optimizer):
    """Refuses an averaging discriminator optimizer, and a model whose trainable
    weights do not list `variables` (the generator optimizer's) first: Keras'
    own write at the end of `fit` pairs the two lists by position."""
    if d_optimizer is not None and uses_average(d_optimizer):
        raise InputError(
            "d_optimizer has use_ema=True: only the generator's weights can be averaged (pass ema to g_optimizer "
            "/ student_optimizer)."
        )
    leading = model.trainable_weights[: len(variables)]
    if [id(v) for v in leading] != [id(v) for v in variables]:
        raise ValueError(f"{type(model).__name__}'s trainable weights must list the generator's first.")


def batch_norm_layers(model):
    """Every `BatchNormalization` layer inside `model`, nested ones included."""
    found = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        else:
            found.extend(batch_norm_layers(layer))
    return found


def standing_statistics(generator, latent_dim, seed=0, batches=STATISTICS_BATCHES, batch_size=STATISTICS_BATCH_SIZE):
    """Replaces the batch-norm moving statistics of `generator` by their average
    over `batches` training-mode batches of z (seeded, apart from training's draws).

    The momentum of each layer follows i / (i + 1), making its moving mean and
    variance the plain average of the batches' statistics.
    """
    norms = batch_norm_layers(generator)
    if not norms:
        return
    momenta = [norm.momentum for norm in norms]
    try:
        for index in range(batches):
            for norm in norms:
                norm.momentum = index / (index + 1.0)
            z = tf.random.stateless_normal((batch_size, latent_dim), seed=(int(seed), -(2**20) - index))
            generator(z, training=True)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum


def finalize(generator, optimizer, latent_dim, seed=0):
    """After `fit`: the averages into `generator` (when `optimizer` keeps them),
    then batch-norm statistics that fit them, over z of size `latent_dim`. A
    no-op without an average."""
    if not uses_average(optimizer):
        return
    optimizer.finalize_variable_values(generator.trainable_variables)
    standing_statistics(generator, latent_dim, seed)
