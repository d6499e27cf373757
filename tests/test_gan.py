"""GAN: adversarial training with fit updates both networks."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras
from conftest import ROOT, changed, weights_of
from kd_gan import GAN, Discriminator, Generator
from kd_gan.models import dcgan as models
from kd_gan.training import objectives
from kd_gan.training import optimizers
from kd_gan.training import steps as training


def tiny_gan(seed=0):
    return GAN(Generator(8, (28, 28, 1), 2), Discriminator((28, 28, 1), 2), seed=seed)


def test_one_epoch_changes_generator_and_discriminator():
    images = np.random.default_rng(0).uniform(-1, 1, (16, 28, 28, 1)).astype("float32")
    model = tiny_gan()
    model.compile()
    g_before, d_before = weights_of(model.generator), weights_of(model.discriminator)
    history = model.fit(images, batch_size=2, epochs=1, verbose=0).history
    assert changed(g_before, model.generator)
    assert changed(d_before, model.discriminator)
    assert set(history) == {"d_loss", "g_loss"}
    assert all(np.isfinite(v[-1]) for v in history.values())
    assert int(model.g_optimizer.iterations) == int(model.d_optimizer.iterations) == 8


def test_fit_accepts_image_label_batches():
    images = np.random.default_rng(1).uniform(-1, 1, (4, 28, 28, 1)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((images, np.zeros(4))).batch(2)
    model = tiny_gan()
    model.compile()
    model.fit(dataset, epochs=1, verbose=0)
    assert int(model.d_optimizer.iterations) == 2


def test_losses_match_their_definitions():
    real, fake = np.array([[2.0], [-1.0]]), np.array([[0.5], [-3.0]])
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    expected_d = -np.log(sigmoid(real)) - np.log(1 - sigmoid(fake))
    np.testing.assert_allclose(objectives.discriminator_loss(real, fake), expected_d.ravel(), rtol=1e-6)
    np.testing.assert_allclose(objectives.generator_loss(fake), -np.log(sigmoid(fake)).ravel(), rtol=1e-6)


def test_latents_are_deterministic_in_seed_and_step():
    a = training.sample_latents(4, 8, seed=3, step=5)
    np.testing.assert_array_equal(a, training.sample_latents(4, 8, seed=3, step=5))
    assert not np.array_equal(a, training.sample_latents(4, 8, seed=3, step=6))
    assert not np.array_equal(a, training.sample_latents(4, 8, seed=4, step=5))


def test_save_and_load_keeps_weights_and_optimizer_state(tmp_path):
    model = tiny_gan(seed=7)
    model.compile()
    model.fit(np.zeros((4, 28, 28, 1), "float32"), batch_size=2, epochs=1, verbose=0)
    model.save(tmp_path / "gan.keras")
    loaded = keras.saving.load_model(tmp_path / "gan.keras")
    assert loaded.seed == 7
    assert int(loaded.d_optimizer.iterations) == int(loaded.g_optimizer.iterations) == 2
    assert float(loaded.g_optimizer.learning_rate) == pytest.approx(optimizers.DEFAULT_LEARNING_RATE)
    for saved, restored in zip(model.d_optimizer.variables, loaded.d_optimizer.variables):
        np.testing.assert_array_equal(saved.numpy(), restored.numpy())
    z = np.random.normal(size=(2, 8)).astype("float32")
    np.testing.assert_array_equal(loaded(z), model(z))


def test_rejects_non_models():
    with pytest.raises(ValueError, match="generator must be a Keras model"):
        GAN(lambda z: z, Discriminator((28, 28, 1), 1))


class _Unbuilt(keras.Model):
    """A subclassed generator that tells neither `latent_dim` nor an input shape."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(28 * 28, activation="tanh")

    def call(self, z):
        return keras.ops.reshape(self.dense(z), (-1, 28, 28, 1))


def test_a_plain_keras_generator_trains_and_one_without_a_latent_size_is_refused():
    plain = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(28 * 28, activation="tanh"), keras.layers.Reshape((28, 28, 1))]
    )
    model = GAN(plain, Discriminator((28, 28, 1), 1))
    assert model.latent_dim == 8  # Read from the model's input.
    model.compile()
    before = weights_of(plain)
    model.fit(np.zeros((4, 28, 28, 1), "float32"), batch_size=2, epochs=1, verbose=0)
    assert changed(before, plain)
    with pytest.raises(ValueError, match="latent size of _Unbuilt"):
        GAN(_Unbuilt(), Discriminator((28, 28, 1), 1))


def test_leaky_relu_gradients_match_keras_to_second_order():
    """The discriminator's LeakyReLU (gradient read from its output) gives
    Keras' values, gradients and gradients of gradients (WGAN-GP's penalty)."""
    x = tf.constant(np.random.default_rng(0).normal(size=(64,)).astype("float32"))
    ours, reference = models.LeakyReLU(0.2), keras.layers.LeakyReLU(0.2)
    results = []
    for layer in (ours, reference):
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                y = layer(x) * x  # Second derivative 2 * slope where x < 0, 2 where x > 0.
            gradient = inner.gradient(y, x)
            total = tf.reduce_sum(gradient)
        results.append((y, gradient, outer.gradient(total, x)))
    for a, b in zip(*results):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


def test_gan_steps_run_without_grappler_errors(tmp_path):
    """Grappler's remapper used to fail on every discriminator step (LeakyRelu's
    gradient read a node it fuses away) and print an E0000 line."""
    script = tmp_path / "fit.py"
    script.write_text(
        "import numpy as np, tensorflow as tf\n"
        "from kd_gan import GAN, Generator, Discriminator\n"
        "model = GAN(Generator(8, (16, 16, 3), 1), Discriminator((16, 16, 3), 1))\n"
        "model.compile()\n"
        "x = np.zeros((8, 16, 16, 3), 'float32')\n"
        "model.fit(tf.data.Dataset.from_tensor_slices(x).batch(4).repeat(), epochs=1, steps_per_epoch=4, verbose=0)\n"
        "print('fitted')\n"
    )
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=environment, timeout=300)
    assert "fitted" in run.stdout, run.stderr[-2000:]
    assert "remapper failed" not in run.stderr
    assert "shuffle=True" not in run.stderr


@pytest.mark.parametrize("steps_per_execution, named", [(1, "step 7"), (5, "one of steps 6-10")])
def test_the_non_finite_stop_names_the_steps_the_bad_one_lies_in(steps_per_execution, named):
    from kd_gan.training.callbacks import StopOnNonFinite

    inputs = np.ones((12, 1), np.float32)
    inputs[6] = np.inf  # Step 7's batch (batch size 1).
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", steps_per_execution=steps_per_execution)
    with pytest.raises(FloatingPointError, match=rf"Stage 'probe': loss became (nan|inf) at epoch 1, {named}\. "):
        model.fit(inputs, np.ones((12, 1), np.float32), batch_size=1, epochs=1, verbose=0, shuffle=False,
                  callbacks=[StopOnNonFinite("probe")])
