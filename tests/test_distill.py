"""Distiller: the student learns, the teacher never moves, bad input is refused."""

import numpy as np
import pytest
import tensorflow as tf

import keras
from conftest import changed, weights_of
from kd_gan import Discriminator, Distiller, Generator, latent_dataset

LATENT = 8
SHAPE = (28, 28, 1)


def fixed_teacher(depth=4):
    """A teacher with widely spread outputs: random kernels scaled up, so its
    images span the tanh range instead of sitting near 0."""
    teacher = Generator(LATENT, SHAPE, depth)
    rng = np.random.default_rng(0)
    for weight in teacher.weights:
        if "kernel" in weight.path:
            weight.assign(rng.normal(0, 0.3, weight.shape).astype("float32"))
    return teacher


def held_out_mse(distiller, steps=4):
    return distiller.evaluate(latent_dataset(32, LATENT, seed=99), steps=steps, verbose=0)


def test_mse_student_learns_and_teacher_is_frozen():
    keras.utils.set_random_seed(0)
    teacher = fixed_teacher()
    distiller = Distiller(teacher, Generator(LATENT, SHAPE, 2), loss="mse")
    distiller.compile(student_optimizer=keras.optimizers.Adam(3e-3))
    teacher_before, student_before = weights_of(teacher), weights_of(distiller.student)
    initial = held_out_mse(distiller)
    history = distiller.fit(latent_dataset(16, LATENT), epochs=4, steps_per_epoch=100, verbose=0).history
    final = held_out_mse(distiller)
    assert not changed(teacher_before, teacher)
    assert changed(student_before, distiller.student)
    assert teacher.trainable is False
    # A random conv teacher is hard to fit; 400 steps of a d=2 student still
    # bring the held-out MSE to about 0.4 of its start (seeded).
    assert final < 0.5 * initial, (initial, final)
    assert history["mse"][-1] < history["mse"][0]


def test_mse_accepts_image_batches_and_draws_its_own_latents():
    distiller = Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), loss="mse")
    distiller.compile()
    distiller.fit(np.zeros((6, *SHAPE), "float32"), batch_size=3, epochs=1, verbose=0)
    assert int(distiller.student_optimizer.iterations) == 2


def test_fit_runs_exactly_the_requested_steps():
    # Ten steps per execution by default; Keras alone would round 25 up to 30.
    distiller = Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), loss="mse")
    distiller.compile()
    distiller.fit(latent_dataset(4, LATENT), epochs=3, steps_per_epoch=25, verbose=0)
    assert int(distiller.student_optimizer.iterations) == 75
    distiller.fit(latent_dataset(4, LATENT), epochs=1, steps_per_epoch=2, verbose=0)
    assert int(distiller.student_optimizer.iterations) == 77
    distiller.fit(latent_dataset(4, LATENT), epochs=2, steps_per_epoch=40, verbose=0)
    assert int(distiller.student_optimizer.iterations) == 157
    assert distiller.steps_per_execution == 10


@pytest.mark.parametrize("loss, against", [("joint", "real images"), ("adversarial", "the teacher's images")])
def test_discriminated_losses_require_a_discriminator(loss, against):
    with pytest.raises(ValueError, match=f"loss='{loss}' trains the student against a discriminator on {against}"):
        Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), loss=loss)


def test_joint_updates_student_and_discriminator_not_teacher():
    teacher = fixed_teacher(2)
    discriminator = Discriminator(SHAPE, 1)
    distiller = Distiller(teacher, Generator(LATENT, SHAPE, 1), loss="joint", discriminator=discriminator, mse_weight=2.0)
    distiller.compile()
    before = [weights_of(m) for m in (teacher, distiller.student, discriminator)]
    images = np.random.default_rng(0).uniform(-1, 1, (8, *SHAPE)).astype("float32")
    history = distiller.fit(images, batch_size=2, epochs=1, verbose=0).history
    assert not changed(before[0], teacher)
    assert changed(before[1], distiller.student)
    assert changed(before[2], discriminator)
    assert set(history) == {"student_loss", "mse", "g_loss", "d_loss"}
    # The student's loss is the adversarial loss plus the weighted MSE.
    assert history["student_loss"][0] == pytest.approx(history["g_loss"][0] + 2.0 * history["mse"][0], rel=1e-5)


def test_adversarial_distillation_needs_no_real_data_and_trains_student_and_discriminator_only():
    teacher = fixed_teacher(2)
    discriminator = Discriminator(SHAPE, 1)
    distiller = Distiller(
        teacher, Generator(LATENT, SHAPE, 1), loss="adversarial", discriminator=discriminator, mse_weight=2.0
    )
    distiller.compile()
    assert distiller.d_optimizer is not distiller.student_optimizer
    before = [weights_of(m) for m in (teacher, distiller.student, discriminator)]
    history = distiller.fit(latent_dataset(4, LATENT), epochs=1, steps_per_epoch=3, verbose=0).history
    assert not changed(before[0], teacher)
    assert changed(before[1], distiller.student)
    assert changed(before[2], discriminator)
    # Each network moved by its own optimizer, one step per batch.
    assert int(distiller.student_optimizer.iterations) == 3 and int(distiller.d_optimizer.iterations) == 3
    assert set(history) == {"student_loss", "mse", "g_loss", "d_loss"}
    assert history["student_loss"][0] == pytest.approx(history["g_loss"][0] + 2.0 * history["mse"][0], rel=1e-5)


@pytest.mark.parametrize("cached, conditioned", [(False, False), (True, False), (True, True)])
def test_adversarial_discriminator_takes_the_teachers_images_for_the_batch_z_as_real(cached, conditioned):
    """The first step's logged losses equal the ones computed by hand with the
    teacher's images (run now, or read from the cached pairs) as the real batch
    and the student's on the same z as the fake one; a discriminator
    conditioned on z sees that z with both."""
    from kd_gan.training import objectives

    keras.utils.set_random_seed(0)
    teacher, student = fixed_teacher(2), Generator(LATENT, SHAPE, 1)
    discriminator = Discriminator(SHAPE, 1, latent_dim=LATENT if conditioned else None)
    distiller = Distiller(teacher, student, loss="adversarial", discriminator=discriminator, mse_weight=0.5)
    distiller.compile(steps_per_execution=1)
    z = np.random.default_rng(1).normal(size=(4, LATENT)).astype("float32")
    # Cached pairs stand for any stored teacher output: here the teacher's images of other z.
    other = teacher(np.random.default_rng(2).normal(size=(4, LATENT)).astype("float32"), training=False)
    real = other if cached else teacher(z, training=False)
    fake = student(z, training=True)  # Batch statistics, as in the step.
    real_logits, fake_logits = (discriminator((x, z) if conditioned else x) for x in (real, fake))
    d_loss = float(np.mean(objectives.discriminator_loss(real_logits, fake_logits, objectives.NON_SATURATING)))
    g_loss = float(np.mean(objectives.generator_loss(fake_logits, objectives.NON_SATURATING)))
    mse = float(np.mean((np.asarray(fake) - np.asarray(real)) ** 2))
    batch = {"z": z, "teacher_images": np.asarray(other)} if cached else z
    data = tf.data.Dataset.from_tensors(batch)
    history = distiller.fit(data, epochs=1, verbose=0).history
    assert history["d_loss"][0] == pytest.approx(d_loss, rel=1e-5)
    assert history["g_loss"][0] == pytest.approx(g_loss, rel=1e-5)
    assert history["mse"][0] == pytest.approx(mse, rel=1e-5)
    assert history["student_loss"][0] == pytest.approx(g_loss + 0.5 * mse, rel=1e-5)


def test_a_discriminator_conditioned_on_z_serves_adversarial_distillation_only():
    conditioned = Discriminator(SHAPE, 1, latent_dim=LATENT)
    with pytest.raises(ValueError, match="loss='adversarial' only.*Received: loss='joint'"):
        Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), loss="joint", discriminator=conditioned)
    with pytest.raises(ValueError, match="conditioned on z of size 16; the student's latent size is 8"):
        Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), loss="adversarial",
                  discriminator=Discriminator(SHAPE, 1, latent_dim=16))


def test_wgan_gp_critic_steps_of_a_conditioned_discriminator_reuse_the_batch_z():
    discriminator = Discriminator(SHAPE, 1, latent_dim=LATENT)
    distiller = Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), loss="adversarial",
                          discriminator=discriminator, objective="wgan-gp")
    distiller.compile()
    before = weights_of(discriminator)
    history = distiller.fit(latent_dataset(4, LATENT), epochs=1, steps_per_epoch=2, verbose=0).history
    assert int(distiller.d_optimizer.iterations) == 2 * 5 and int(distiller.student_optimizer.iterations) == 2
    assert changed(before, discriminator) and np.isfinite(history["d_loss"][0])


def test_joint_refuses_latent_batches():
    distiller = Distiller(
        fixed_teacher(2), Generator(LATENT, SHAPE, 1), loss="joint", discriminator=Discriminator(SHAPE, 1)
    )
    distiller.compile()
    with pytest.raises(ValueError, match="real images"):
        distiller.fit(latent_dataset(2, LATENT), steps_per_epoch=1, verbose=0)


def test_unknown_loss():
    with pytest.raises(ValueError, match="'kl'"):
        Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), loss="kl")


def test_latent_size_mismatch():
    with pytest.raises(ValueError, match="teacher latent_dim=16, student latent_dim=8"):
        Distiller(Generator(16, SHAPE, 2), Generator(LATENT, SHAPE, 1))


def test_image_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(32, 32, 3\).*\(28, 28, 1\)"):
        Distiller(Generator(LATENT, (32, 32, 3), 2), Generator(LATENT, SHAPE, 1))


def test_teacher_that_rejects_the_latent_size():
    teacher = keras.Sequential([keras.Input((16,)), keras.layers.Dense(28 * 28), keras.layers.Reshape(SHAPE)])
    with pytest.raises(ValueError, match="latent vectors of shape"):
        Distiller(teacher, Generator(LATENT, SHAPE, 1))


def test_negative_mse_weight():
    with pytest.raises(ValueError, match="mse_weight must be a number >= 0 or a keras.optimizers.schedules schedule. Received: mse_weight=-1$"):
        Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), mse_weight=-1)


def test_savedmodel_teacher(tmp_path):
    teacher = fixed_teacher(2)
    z = tf.random.normal((4, LATENT))
    teacher(z)  # Keras exports subclassed models once they have been called.
    teacher.export(str(tmp_path / "teacher"), format="tf_saved_model", verbose=False)
    saved = tf.saved_model.load(str(tmp_path / "teacher"))  # Keep it alive: `serve` holds no reference.
    serving = saved.serve
    keras.utils.set_random_seed(0)
    distiller = Distiller(serving, Generator(LATENT, SHAPE, 2), loss="mse")
    distiller.compile(student_optimizer=keras.optimizers.Adam(3e-3))
    initial = held_out_mse(distiller)
    distiller.fit(latent_dataset(16, LATENT), epochs=3, steps_per_epoch=100, verbose=0)
    final = held_out_mse(distiller)
    assert final < 0.6 * initial, (initial, final)  # seeded: about 0.42
    np.testing.assert_allclose(serving(z), teacher(z, training=False), atol=1e-6)
    with pytest.raises(NotImplementedError, match="save the student"):
        distiller.get_config()


@pytest.mark.parametrize("loss", ["joint", "adversarial"])
def test_keras_round_trip(tmp_path, loss):
    distiller = Distiller(
        fixed_teacher(2), Generator(LATENT, SHAPE, 1), loss=loss, discriminator=Discriminator(SHAPE, 1),
        mse_weight=0.5, seed=3,
    )
    distiller.save(tmp_path / "distiller.keras")
    loaded = keras.saving.load_model(tmp_path / "distiller.keras")
    assert (loaded.loss_name, loaded.mse_weight, loaded.seed) == (loss, 0.5, 3)
    assert loaded.teacher.trainable is False
    z = np.random.normal(size=(2, LATENT)).astype("float32")
    np.testing.assert_array_equal(loaded.teacher(z), distiller.teacher(z))
    np.testing.assert_array_equal(loaded(z), distiller(z))


@pytest.mark.parametrize("loss", ["mse", "joint"])
def test_mirrored_strategy_matches_one_device(loss, mirrored):
    """Two replicas on the same global batch give the same student as one device."""
    images = np.random.default_rng(0).uniform(-1, 1, (16, *SHAPE)).astype("float32")

    def train(strategy):
        keras.utils.set_random_seed(1)
        with strategy.scope():
            distiller = Distiller(
                fixed_teacher(2), Generator(LATENT, SHAPE, 1), loss=loss,
                discriminator=Discriminator(SHAPE, 1) if loss == "joint" else None,
            )
            distiller.compile(
                student_optimizer=keras.optimizers.Adam(1e-3),
                d_optimizer=keras.optimizers.Adam(1e-3) if loss == "joint" else None,
            )
        data = latent_dataset(8, LATENT) if loss == "mse" else tf.data.Dataset.from_tensor_slices(images).batch(8)
        distiller.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
        return [w.numpy() for w in distiller.student.weights]

    on_two = train(mirrored)
    on_one = train(tf.distribute.get_strategy())
    for a, b in zip(on_two, on_one):
        np.testing.assert_allclose(a, b, atol=2e-5)


def test_evaluate_draws_a_new_z_per_image_batch_deterministic_in_the_batch_index():
    keras.utils.set_random_seed(0)
    distiller = Distiller(fixed_teacher(), Generator(LATENT, SHAPE, 1), loss="mse", seed=3)
    distiller.compile(run_eagerly=True)  # Eager steps, so the z of each batch can be recorded.
    drawn = []
    original = distiller._latents

    def recording(data, step=None):
        z = original(data, step)
        drawn.append(z)
        return z

    distiller._latents = recording
    images = np.zeros((12, *SHAPE), np.float32)
    first = distiller.evaluate(images, batch_size=4, verbose=0, return_dict=True)
    first_z = [np.asarray(z) for z in drawn]
    drawn.clear()
    second = distiller.evaluate(images, batch_size=4, verbose=0, return_dict=True)
    assert len(first_z) == 3
    assert not np.allclose(first_z[0], first_z[1]) and not np.allclose(first_z[1], first_z[2])
    for a, b in zip(first_z, drawn):
        np.testing.assert_array_equal(a, np.asarray(b))  # The same z sequence at every evaluation.
    assert first["mse"] == pytest.approx(second["mse"], rel=1e-6)
    # Batch i's z is the draw keyed on step -1 - i: a stream training's steps (>= 0) never use.
    from kd_gan.training import steps as training

    for index, z in enumerate(first_z):
        np.testing.assert_array_equal(z, training.sample_latents(4, LATENT, 3, -1 - index).numpy())
