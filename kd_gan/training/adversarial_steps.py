"""The adversarial update steps: a discriminator step alone (the critic steps
of WGAN-GP) and the simultaneous step of generator and discriminator, with the
optional distillation term of the paper's joint loss. The losses themselves
are in `kd_gan.training.objectives`.
"""

import tensorflow as tf

from kd_gan.training import objectives
from kd_gan.training import optimizers
from kd_gan.training.steps import average_loss, replica_share, sample_latents

def _interpolation_weights(batch_size, seed, step):
    """This replica's share of WGAN-GP's U[0, 1] interpolation weights at `step`
    (keyed apart from z's draws), shaped to broadcast over images."""
    stateless_seed = tf.stack([tf.cast(seed, tf.int64) + 0x5EED, tf.cast(step, tf.int64)])
    weights = replica_share(lambda size: tf.random.stateless_uniform(tf.stack([size]), seed=stateless_seed), batch_size)
    return tf.reshape(weights, [-1, 1, 1, 1])


def _inputs(images, condition):
    """What the discriminator is called on: the images, or `(images, z)` for one conditioned on z."""
    return images if condition is None else (images, condition)


def critic_loss(discriminator, real_images, fake_images, objective, seed, step, condition=None):
    """Per-example loss of the discriminator on a real and a generated batch.

    Real and generated images go through it as one batch (it has no batch
    norm, so this equals two calls); WGAN-GP adds its penalty. With
    `condition` (the z both batches were drawn for), a discriminator
    conditioned on z is called on `(images, z)`.

    Returns:
        `(critic loss, generator's adversarial loss)`, per example, float32.
    """
    images = tf.concat([tf.cast(real_images, fake_images.dtype), fake_images], axis=0)
    both = None if condition is None else tf.concat([condition, condition], axis=0)
    logits = discriminator(_inputs(images, both), training=True)
    real_logits, fake_logits = tf.split(logits, 2, axis=0)
    d_loss = objectives.discriminator_loss(real_logits, fake_logits, objective)
    if objective == objectives.WGAN_GP:
        weights = _interpolation_weights(tf.shape(real_images)[0], seed, step)
        penalty = objectives.gradient_penalty(discriminator, real_images, fake_images, weights, condition)
        d_loss += objectives.GRADIENT_PENALTY_WEIGHT * penalty
    return d_loss, objectives.generator_loss(fake_logits, objective)


def critic_update(generator, discriminator, d_optimizer, real_images, latent_dim, seed, objective, condition=None):
    """One step of the discriminator alone, on fresh z drawn at its step count
    (the extra critic steps of WGAN-GP), or on `condition`, the z the real
    images were drawn for (a discriminator conditioned on z). Returns its
    per-example loss."""
    step = d_optimizer.iterations
    z = sample_latents(tf.shape(real_images)[0], latent_dim, seed, step) if condition is None else condition
    fake_images = tf.stop_gradient(generator(z, training=True))
    with tf.GradientTape() as tape:
        d_loss, _ = critic_loss(discriminator, real_images, fake_images, objective, seed, step, condition)
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
    objective=objectives.NON_SATURATING,
    seed=0,
    distillation=None,
    adversarial_weight=1.0,
    g_variables=None,
    condition=None,
):
    """One simultaneous gradient step of generator and discriminator.

    One generator pass feeds both losses (as in TensorFlow's DCGAN example).
    With `distillation`, the generator minimises `adversarial_weight *
    adversarial + distillation terms`: the paper's joint loss (Sec. 3.2)
    when the term is `mse_weight * MSE(G(z), T(z))`.

    Args:
        objective: "ns", "hinge" or "wgan-gp" (`kd_gan.training.objectives`).
        seed: integer seed of the run (WGAN-GP's interpolation draws).
        distillation: None, or a function `z -> (images, terms, total)`
            running the generator (training mode) and comparing it with its
            teacher: a dict of per-example terms to report and their
            weighted per-example sum.
        adversarial_weight: weight of the adversarial term of the generator.
        g_variables: what the generator's step updates (default: its
            trainable variables; a student adds its adapters).
        condition: None, or `z` for a discriminator conditioned on z (called
            on `(images, z)`; the real images were drawn for the same z).

    Returns:
        Dict of per-example losses: `d_loss` (with WGAN-GP's penalty),
        `g_loss` (adversarial part), and with `distillation` its terms and
        `student_loss` (the generator's total).
    """
    with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
        if distillation is None:
            fake_images, terms, distilled = generator(z, training=True), {}, None
        else:
            fake_images, terms, distilled = distillation(z)
        d_loss, g_loss = critic_loss(
            discriminator, real_images, fake_images, objective, seed, d_optimizer.iterations, condition
        )
        losses = {"d_loss": d_loss, "g_loss": g_loss, **terms}
        g_objective = g_loss
        if distilled is not None:
            losses["student_loss"] = g_objective = adversarial_weight * g_loss + distilled
        # Scaled for float16 (a no-op otherwise); the optimizers unscale.
        d_total = d_optimizer.scale_loss(average_loss(losses["d_loss"]))
        g_total = g_optimizer.scale_loss(average_loss(g_objective))
    optimizers.minimize(g_tape, g_total, g_optimizer, g_variables if g_variables is not None else generator)
    optimizers.minimize(d_tape, d_total, d_optimizer, discriminator)
    return losses
