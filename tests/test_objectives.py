"""Adversarial objectives (ns, hinge, wgan-gp) and the generator's weight average (EMA)."""

import numpy as np
import pytest
import tensorflow as tf

import keras
from conftest import changed, weights_of
from kd_gan import GAN, Discriminator, Distiller, Generator
from kd_gan.training import objectives
from kd_gan.training import weight_average
from kd_gan.training import adversarial_steps as adversarial
from kd_gan.training import optimizers

SHAPE = (28, 28, 1)


def test_hinge_and_wasserstein_losses_match_their_definitions():
    real, fake = np.array([[2.0], [0.3], [-1.0]]), np.array([[0.5], [-3.0], [1.5]])
    np.testing.assert_allclose(
        objectives.discriminator_loss(real, fake, "hinge"),
        (np.maximum(0, 1 - real) + np.maximum(0, 1 + fake)).ravel(), rtol=1e-6,
    )
    np.testing.assert_allclose(objectives.discriminator_loss(real, fake, "wgan-gp"), (fake - real).ravel(), rtol=1e-6)
    for objective in ("hinge", "wgan-gp"):
        np.testing.assert_allclose(objectives.generator_loss(fake, objective), -fake.ravel(), rtol=1e-6)


def test_gradient_penalty_of_a_linear_critic_is_known():
    # D(x) = w . x + b has gradient w everywhere: the penalty is (|w| - 1)^2 for every example.
    critic = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(1)])
    w = np.array([[3.0], [0.0], [4.0], [0.0]], "float32")
    critic.layers[-1].set_weights([w, np.array([0.7], "float32")])
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(5, 2, 2, 1)), rng.normal(size=(5, 2, 2, 1))
    penalty = objectives.gradient_penalty(critic, real, fake, rng.uniform(size=(5, 1, 1, 1)).astype("float32"))
    np.testing.assert_allclose(penalty, np.full(5, (5.0 - 1.0) ** 2), rtol=1e-5)


def test_gradient_penalty_is_taken_at_the_interpolates():
    # D(x) = |x|^2 / 2 has gradient x: the penalty is (|x_hat| - 1)^2 at x_hat = e real + (1 - e) fake.
    def critic(x, training):
        return 0.5 * tf.reduce_sum(tf.square(x), axis=[1, 2, 3])

    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(4, 3, 3, 2)), rng.normal(size=(4, 3, 3, 2))
    weights = rng.uniform(size=(4, 1, 1, 1))
    mixed = weights * real + (1 - weights) * fake
    expected = (np.sqrt(np.sum(mixed**2, axis=(1, 2, 3))) - 1.0) ** 2
    penalty = objectives.gradient_penalty(critic, real, fake, weights.astype("float32"))
    np.testing.assert_allclose(penalty, expected, rtol=1e-4)


def test_gradient_penalty_is_zero_for_a_unit_gradient_and_moves_only_the_critic():
    critic = keras.Sequential([keras.Input((1, 1, 1)), keras.layers.Flatten(), keras.layers.Dense(1)])
    critic.layers[-1].set_weights([np.array([[1.0]], "float32"), np.zeros(1, "float32")])
    fake = tf.Variable(np.ones((3, 1, 1, 1), "float32"))
    with tf.GradientTape() as tape:
        penalty = objectives.gradient_penalty(critic, np.zeros((3, 1, 1, 1)), fake, np.full((3, 1, 1, 1), 0.5, "float32"))
    np.testing.assert_allclose(penalty, 0.0, atol=1e-6)
    assert tape.gradient(penalty, fake) is None  # The fakes are constants: no gradient to the generator.


def test_critic_loss_of_wgan_gp_adds_ten_times_the_penalty():
    critic = Discriminator(SHAPE, 1)
    rng = np.random.default_rng(2)
    real, fake = (rng.uniform(-1, 1, (4, *SHAPE)).astype("float32") for _ in range(2))
    with_penalty, _ = adversarial.critic_loss(critic, real, tf.constant(fake), "wgan-gp", seed=0, step=3)
    without, _ = adversarial.critic_loss(critic, real, tf.constant(fake), "hinge", seed=0, step=3)
    weights = adversarial._interpolation_weights(4, 0, 3)
    penalty = objectives.gradient_penalty(critic, real, fake, weights)
    logits = critic(np.concatenate([real, fake]), training=True).numpy().ravel()
    np.testing.assert_allclose(with_penalty, logits[4:] - logits[:4] + 10.0 * penalty.numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(with_penalty, without)


def test_unknown_objective_names_the_choices():
    with pytest.raises(ValueError, match="Unknown objective 'wgan'.*hinge"):
        GAN(Generator(8, SHAPE, 2), Discriminator(SHAPE, 2), objective="wgan")
    with pytest.raises(ValueError, match="critic_steps must be an integer >= 1"):
        GAN(Generator(8, SHAPE, 2), Discriminator(SHAPE, 2), critic_steps=0)


@pytest.mark.parametrize("objective", objectives.OBJECTIVES)
def test_each_objective_trains_both_networks_with_finite_losses(objective):
    images = np.random.default_rng(0).uniform(-1, 1, (8, *SHAPE)).astype("float32")
    model = GAN(Generator(8, SHAPE, 2), Discriminator(SHAPE, 2), objective=objective, critic_steps=2)
    model.compile()
    g_before, d_before = weights_of(model.generator), weights_of(model.discriminator)
    history = model.fit(images, batch_size=2, epochs=1, verbose=0).history
    assert changed(g_before, model.generator) and changed(d_before, model.discriminator)
    assert all(np.isfinite(values[-1]) for values in history.values())
    # Each batch: one critic-only step on fresh z, then the simultaneous step.
    assert int(model.d_optimizer.iterations) == 2 * int(model.g_optimizer.iterations) == 8


def test_wgan_gp_takes_its_authors_settings():
    model = GAN(Generator(8, SHAPE, 2), Discriminator(SHAPE, 2), objective="wgan-gp")
    model.compile()
    assert model.critic_steps == 5
    for optimizer in (model.g_optimizer, model.d_optimizer):
        assert float(optimizer.learning_rate) == pytest.approx(1e-4)
        assert (optimizer.beta_1, optimizer.beta_2) == (0.5, 0.9)
    restored = GAN.from_config(model.get_config())
    assert (restored.objective, restored.critic_steps) == ("wgan-gp", 5)


def test_joint_student_trains_with_the_critic_steps_of_its_objective():
    teacher, student = Generator(8, SHAPE, 4), Generator(8, SHAPE, 1)
    distiller = Distiller(teacher, student, loss="joint", discriminator=Discriminator(SHAPE, 1), objective="hinge", critic_steps=3)
    distiller.compile()
    teacher_before, student_before = weights_of(teacher), weights_of(student)
    history = distiller.fit(np.zeros((4, *SHAPE), "float32"), batch_size=2, epochs=1, verbose=0).history
    assert not changed(teacher_before, teacher) and changed(student_before, student)
    assert int(distiller.d_optimizer.iterations) == 3 * int(distiller.student_optimizer.iterations) == 6
    assert all(np.isfinite(values[-1]) for values in history.values())
    assert Distiller.from_config(distiller.get_config()).objective == "hinge"


class _RawWeights(keras.callbacks.Callback):
    """The weights and moving averages at the end of the last epoch (before fit writes the averages)."""

    def __init__(self, generator, discriminator, optimizer):
        super().__init__()
        self.networks, self.optimizer = (generator, discriminator), optimizer

    def on_epoch_end(self, epoch, logs=None):
        self.generator, self.discriminator = (network.get_weights() for network in self.networks)
        self.trainable = [v.numpy() for v in self.networks[0].trainable_variables]
        # finalize_variable_values writes the averages into the variables it is given: copies here.
        copies = [tf.Variable(v) for v in self.networks[0].trainable_variables]
        self.optimizer.finalize_variable_values(copies)
        self.averages = [v.numpy() for v in copies]


def test_moving_average_is_what_the_generator_holds_after_fit_and_the_discriminator_keeps_its_own():
    images = np.random.default_rng(1).uniform(-1, 1, (8, *SHAPE)).astype("float32")
    model = GAN(Generator(8, SHAPE, 2), Discriminator(SHAPE, 2))
    model.compile(g_optimizer=optimizers.default_optimizer(ema_decay=0.5))
    record = _RawWeights(model.generator, model.discriminator, model.g_optimizer)
    model.fit(images, batch_size=2, epochs=2, verbose=0, callbacks=[record])
    after = [v.numpy() for v in model.generator.trainable_variables]
    assert any(not np.allclose(a, r) for a, r in zip(record.averages, record.trainable))  # EMA differs from raw.
    for held, average in zip(after, record.averages):
        np.testing.assert_array_equal(held, average)
    for held, raw in zip(model.discriminator.get_weights(), record.discriminator):
        np.testing.assert_array_equal(held, raw)


class _StepWeights(keras.callbacks.Callback):
    def __init__(self, generator):
        super().__init__()
        self.generator, self.steps = generator, []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append([v.numpy() for v in self.generator.trainable_variables])


def test_the_average_is_the_exponential_moving_average_of_the_steps_weights():
    images = np.random.default_rng(3).uniform(-1, 1, (8, *SHAPE)).astype("float32")
    model = GAN(Generator(8, SHAPE, 2), Discriminator(SHAPE, 2))
    model.compile(g_optimizer=optimizers.default_optimizer(ema_decay=0.9), steps_per_execution=1)
    record = _StepWeights(model.generator)
    model.fit(images, batch_size=2, epochs=1, verbose=0, callbacks=[record])
    expected = record.steps[0]  # The first step starts the average at its weights.
    for weights in record.steps[1:]:
        expected = [0.9 * average + 0.1 * w for average, w in zip(expected, weights)]
    for held, average, raw in zip(model.generator.trainable_variables, expected, record.steps[-1]):
        np.testing.assert_allclose(held.numpy(), average, rtol=1e-5, atol=1e-7)
    assert any(not np.allclose(a, r) for a, r in zip(expected, record.steps[-1]))


def test_student_moving_average_is_what_the_student_holds_after_fit():
    teacher, student = Generator(8, SHAPE, 4), Generator(8, SHAPE, 1)
    distiller = Distiller(teacher, student, loss="joint", discriminator=Discriminator(SHAPE, 1))
    distiller.compile(student_optimizer=optimizers.default_optimizer(1e-3, ema_decay=0.5))
    record = _RawWeights(student, distiller.discriminator, distiller.student_optimizer)
    distiller.fit(np.zeros((4, *SHAPE), "float32"), batch_size=2, epochs=1, verbose=0, callbacks=[record])
    for held, average in zip(student.trainable_variables, record.averages):
        np.testing.assert_array_equal(held.numpy(), average)
    assert any(not np.allclose(a, r) for a, r in zip(record.averages, record.trainable))


def test_discriminator_average_and_bad_decay_are_refused():
    model = GAN(Generator(8, SHAPE, 2), Discriminator(SHAPE, 2))
    with pytest.raises(ValueError, match="d_optimizer has use_ema=True"):
        model.compile(d_optimizer=optimizers.default_optimizer(ema_decay=0.9))
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\).*1.0"):
        optimizers.default_optimizer(ema_decay=1.0)


def test_standing_statistics_are_the_average_of_the_batches_statistics():
    generator = Generator(8, SHAPE, 2)
    weight_average.standing_statistics(generator, 8, seed=3, batches=4, batch_size=5)
    norm = generator.get_layer("project_norm")
    # The first batch norm normalises z @ W: its moving mean is the mean of the batches' means.
    (kernel,) = generator.get_layer("project").get_weights()
    means = [
        np.mean(tf.random.stateless_normal((5, 8), seed=(3, -(2**20) - index)).numpy() @ kernel, axis=0)
        for index in range(4)
    ]
    np.testing.assert_allclose(norm.moving_mean.numpy(), np.mean(means, axis=0), rtol=1e-4, atol=1e-6)
    assert norm.momentum == 0.99  # Restored.


def test_fit_with_an_average_recomputes_the_batch_norm_statistics_and_without_one_does_not(monkeypatch):
    calls = []
    monkeypatch.setattr(weight_average, "standing_statistics", lambda generator, *args, **kwargs: calls.append(generator))
    images = np.zeros((4, *SHAPE), "float32")
    for decay in (0.0, 0.9):
        model = GAN(Generator(8, SHAPE, 2), Discriminator(SHAPE, 2))
        model.compile(g_optimizer=optimizers.default_optimizer(ema_decay=decay))
        model.fit(images, batch_size=2, epochs=1, verbose=0)
    assert calls == [model.generator]
