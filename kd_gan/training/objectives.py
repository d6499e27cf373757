"""Adversarial objectives: the per-example losses of discriminator (critic) and
generator, and the WGAN-GP gradient penalty.

| objective | discriminator / critic                         | generator    |
|-----------|------------------------------------------------|--------------|
| "ns"      | -log D(x) - log(1 - D(G(z))) (softplus form)   | -log D(G(z)) |
| "hinge"   | max(0, 1 - D(x)) + max(0, 1 + D(G(z)))         | -D(G(z))     |
| "wgan-gp" | D(G(z)) - D(x) + 10 (norm of grad D(x_hat) - 1)^2 | -D(G(z))  |

"ns" is the non-saturating loss of Goodfellow et al. (2014) that DCGAN and the
paper train with; "hinge" is that of SAGAN / BigGAN (Lim & Ye, 2017); "wgan-gp"
is Gulrajani et al. (2017), the "W-DCGAN" of the paper's reviewers, with x_hat
drawn uniformly on the segments between real and generated images. The
losses take D's raw outputs (logits, critic values) and return float32
per-example losses whatever precision the networks compute in.

Each objective comes with the optimizer settings its authors used
(`OBJECTIVE_DEFAULTS`): WGAN-GP trains the critic 5 times per generator step
with Adam(1e-4, beta_1 = 0.5, beta_2 = 0.9).
"""

import tensorflow as tf

from kd_gan.errors import InputError, check_integer

NON_SATURATING, HINGE, WGAN_GP = "ns", "hinge", "wgan-gp"
OBJECTIVES = (NON_SATURATING, HINGE, WGAN_GP)
GRADIENT_PENALTY_WEIGHT = 10.0  # lambda of WGAN-GP (Gulrajani et al., 2017, Alg. 1).

# Adam settings and critic steps per generator step, from each objective's paper:
# DCGAN (Radford et al., 2016) for "ns"; SAGAN's single-step hinge setting with
# DCGAN's Adam for "hinge"; Gulrajani et al. (2017), Alg. 1, for "wgan-gp".
OBJECTIVE_DEFAULTS = {
    NON_SATURATING: dict(learning_rate=2e-4, beta_1=0.5, beta_2=0.999, critic_steps=1),
    HINGE: dict(learning_rate=2e-4, beta_1=0.5, beta_2=0.999, critic_steps=1),
    WGAN_GP: dict(learning_rate=1e-4, beta_1=0.5, beta_2=0.9, critic_steps=5),
}


def check_objective(objective):
    """`objective` if it is one of `OBJECTIVES`, else a ValueError naming it."""
    if objective not in OBJECTIVES:
        raise InputError(f"Unknown objective {objective!r}; choose one of {OBJECTIVES}.")
    return objective


def _per_example(values):
    return tf.reshape(tf.cast(values, tf.float32), [-1])


def discriminator_loss(real_outputs, fake_outputs, objective=NON_SATURATING):
    """Per-example discriminator (critic) loss of `objective`, without the gradient penalty."""
    real, fake = _per_example(real_outputs), _per_example(fake_outputs)
    if objective == NON_SATURATING:
        return tf.nn.softplus(-real) + tf.nn.softplus(fake)
    if objective == HINGE:
        return tf.nn.relu(1.0 - real) + tf.nn.relu(1.0 + fake)
    check_objective(objective)
    return fake - real


def generator_loss(fake_outputs, objective=NON_SATURATING):
    """Per-example generator loss of `objective`."""
    fake = _per_example(fake_outputs)
    if objective == NON_SATURATING:
        return tf.nn.softplus(-fake)
    check_objective(objective)
    return -fake  # Hinge and WGAN-GP: raise the critic's value of the fakes.


def gradient_penalty(discriminator, real_images, fake_images, weights, condition=None):
    """Per-example WGAN-GP penalty (||grad_x D(x_hat)||_2 - 1)^2, unweighted.

    x_hat = e * real + (1 - e) * fake with e ~ U[0, 1] per example, given as
    `weights` (shape `(batch, 1, 1, 1)`; `gan` draws them statelessly). The
    discriminator must treat examples independently (no batch norm), as
    `kd_gan.Discriminator` does; gradients flow into its weights, not into the
    generator (the fakes are constants).

    Args:
        discriminator: the critic, called with `training=True`.
        real_images, fake_images: `(batch, height, width, channels)` batches.
        weights: the interpolation weights e, `(batch, 1, 1, 1)`.
        condition: None, or the z of both batches for a discriminator
            conditioned on z (called on `(x_hat, z)`; the gradient is x_hat's).
    """
    real_images = tf.cast(real_images, tf.float32)
    fake_images = tf.stop_gradient(tf.cast(fake_images, tf.float32))
    mixed = weights * real_images + (1.0 - weights) * fake_images
    with tf.GradientTape() as tape:
        tape.watch(mixed)
        inputs = mixed if condition is None else (mixed, condition)
        outputs = tf.reduce_sum(tf.cast(discriminator(inputs, training=True), tf.float32))
    gradients = tf.cast(tape.gradient(outputs, mixed), tf.float32)
    norms = tf.sqrt(tf.reduce_sum(tf.square(gradients), axis=[1, 2, 3]) + 1e-12)
    return tf.square(norms - 1.0)


def check_critic_steps(critic_steps, objective):
    """`critic_steps`, or `objective`'s default when None; a ValueError unless an integer >= 1."""
    if critic_steps is None:
        return OBJECTIVE_DEFAULTS[check_objective(objective)]["critic_steps"]
    return check_integer("critic_steps", critic_steps, 1)
