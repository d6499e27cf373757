"""Distillation losses: what each trains (student, adapters, never the teacher),
the paper's presets reproduced by hand, saving, and one clear error per mistake."""

import numpy as np
import pytest
import tensorflow as tf

import keras
from conftest import changed, weights_of
from kd_gan import Discriminator, Distiller, Generator, count_parameters, latent_dataset
from kd_gan.errors import InputError
from kd_gan.distillation.losses import FeatureLoss, PerceptualLoss, PixelL1, PixelMSE
from test_distill import LATENT, SHAPE, fixed_teacher

IMAGES = np.random.default_rng(0).uniform(-1, 1, (8, *SHAPE)).astype("float32")


def distill_once(distiller, loss="mse", steps=2):
    distiller.compile(student_optimizer=keras.optimizers.Adam(1e-2))
    data = latent_dataset(4, LATENT) if loss == "mse" else tf.data.Dataset.from_tensor_slices(IMAGES).batch(4).repeat()
    return distiller.fit(data, epochs=1, steps_per_epoch=steps, verbose=0).history


def functional_generator(width, name):
    z = keras.Input((LATENT,))
    x = keras.layers.Dense(7 * 7 * width, name="project")(z)
    x = keras.layers.Reshape((7, 7, width), name="grid")(x)
    x = keras.layers.Conv2DTranspose(width, 4, strides=2, padding="same", activation="relu", name="up")(x)
    x = keras.layers.Conv2DTranspose(1, 4, strides=2, padding="same", activation="tanh", name="image")(x)
    return keras.Model(z, x, name=name)


@pytest.mark.parametrize(
    "make_losses, loss",
    [
        (lambda: [PixelMSE()], "mse"),
        (lambda: [PixelL1()], "mse"),
        (lambda: [PixelMSE(), FeatureLoss()], "mse"),
        (lambda: [PixelMSE(), PerceptualLoss(Discriminator(SHAPE, 2))], "mse"),
        (lambda: [PixelMSE(), PerceptualLoss("discriminator")], "joint"),
        (lambda: [keras.distillation.FeatureDistillation(loss="mae")], "mse"),
    ],
    ids=["mse", "l1", "features", "perceptual_frozen", "perceptual_own_discriminator", "keras_loss"],
)
def test_each_loss_trains_the_student_and_adapters_never_the_teacher(make_losses, loss):
    keras.utils.set_random_seed(0)
    teacher = fixed_teacher(2)
    distillation_losses = make_losses()
    distiller = Distiller(
        teacher, Generator(LATENT, SHAPE, 1), loss=loss, distillation_losses=distillation_losses,
        discriminator=Discriminator(SHAPE, 1) if loss == "joint" else None,
    )
    frozen = [getattr(l, "feature_network", None) for l in distiller.distillation_losses]
    frozen_before = [weights_of(network) for network in frozen if network is not None]
    teacher_before, student_before = weights_of(teacher), weights_of(distiller.student)
    adapters = [adapter for l in distiller.distillation_losses for adapter in getattr(l, "adapters", [])]
    assert len(adapters) == (3 if any(isinstance(l, FeatureLoss) for l in distillation_losses) else 0)
    adapters_before = [weights_of(adapter) for adapter in adapters]
    history = distill_once(distiller, loss)
    assert not changed(teacher_before, teacher)
    assert changed(student_before, distiller.student)
    assert all(changed(before, adapter) for before, adapter in zip(adapters_before, adapters))
    assert not any(changed(before, network) for before, network in zip(frozen_before, [n for n in frozen if n is not None]))
    for distillation_loss in distiller.distillation_losses:
        assert np.isfinite(history[distillation_loss.name][-1])


def test_feature_loss_pairs_every_block_through_adapters_to_the_teachers_widths():
    teacher, student = Generator(LATENT, SHAPE, 4), Generator(LATENT, SHAPE, 1)
    distiller = Distiller(teacher, student, distillation_losses=[PixelMSE(), FeatureLoss()])
    features = distiller.distillation_losses[1]
    assert list(features.teacher_layers) == teacher.feature_layer_names() == ["to_feature_map", "relu_1", "relu_2"]
    # Student maps 4x4x4, 7x7x2, 14x14x1 become the teacher's 4x4x16, 7x7x8, 14x14x4.
    assert [tuple(a.kernel.shape) for a in features.adapters] == [(1, 1, 4, 16), (1, 1, 2, 8), (1, 1, 1, 4)]


def test_feature_loss_is_the_relative_squared_error_of_adapted_maps():
    loss = FeatureLoss(["t"], ["s"])
    loss.teacher_layers, loss.student_layers = ("t",), ("s",)

    class Owner:
        student = Generator(LATENT, SHAPE, 1)

    loss.build_for([(None, 4, 4, 3)], [(None, 2, 2, 2)], Owner)
    rng = np.random.default_rng(1)
    teacher_map = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    student_map = rng.normal(size=(2, 2, 2, 2)).astype("float32")
    adapter = loss.adapters[0]
    adapted = np.asarray(tf.image.resize(adapter(student_map), (4, 4), method="bilinear"))
    expected = ((adapted - teacher_map) ** 2).mean(axis=(1, 2, 3)) / ((teacher_map**2).mean(axis=(1, 2, 3)) + 1e-6)
    np.testing.assert_allclose(loss.compute_loss([teacher_map], [student_map]), expected, rtol=1e-5)


def test_perceptual_loss_is_zero_for_equal_images_and_bounded_by_four():
    loss = PerceptualLoss(Discriminator(SHAPE, 1))

    class Owner:
        discriminator = None

    loss.build_for([], [], Owner)
    same = loss.compute_loss([IMAGES], [IMAGES])
    np.testing.assert_allclose(same, 0.0, atol=1e-6)
    apart = np.asarray(loss.compute_loss([IMAGES], [-IMAGES]))
    assert np.all(apart > 0) and np.all(apart <= 4.0 + 1e-5)


def test_feature_loss_works_on_functional_generators_and_adapters_stay_out_of_the_student(tmp_path):
    keras.utils.set_random_seed(0)
    teacher, student = functional_generator(8, "teacher"), functional_generator(2, "student")
    distiller = Distiller(
        teacher, student, distillation_losses=[PixelMSE(), FeatureLoss(["grid", "up"])], distillation_loss_weights=[1.0, 0.5]
    )
    parameters = count_parameters(student)
    history = distill_once(distiller)
    assert np.isfinite(history["features"][-1])
    student.save(tmp_path / "student.keras")
    restored = keras.saving.load_model(tmp_path / "student.keras")
    assert count_parameters(restored) == parameters
    assert not any("adapter" in weight.path for weight in restored.weights)


def test_presets_reproduce_the_papers_losses_by_hand():
    """loss="mse" and "joint" step exactly as the paper's formulas, written out here."""
    z = tf.random.stateless_normal((4, LATENT), seed=(0, 1))

    def mse_by_hand():
        keras.utils.set_random_seed(3)
        teacher, student = fixed_teacher(2), Generator(LATENT, SHAPE, 1)
        optimizer = keras.optimizers.Adam(1e-2)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(student(z, training=True) - teacher(z, training=False)))
        optimizer.apply_gradients(zip(tape.gradient(loss, student.trainable_variables), student.trainable_variables))
        return float(loss), weights_of(student)

    keras.utils.set_random_seed(3)
    distiller = Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), loss="mse")
    distiller.compile(student_optimizer=keras.optimizers.Adam(1e-2), steps_per_execution=1)
    history = distiller.fit(tf.data.Dataset.from_tensors(z), epochs=1, verbose=0).history
    expected_loss, expected_weights = mse_by_hand()
    np.testing.assert_allclose(history["mse"][0], expected_loss, rtol=1e-5)
    for actual, expected in zip(weights_of(distiller.student), expected_weights):
        np.testing.assert_allclose(actual, expected, atol=1e-6)

    # Joint: -log sigmoid(D(S(z))) plus mse_weight times the MSE on the step's z, both
    # networks stepping from the same forward pass.
    def joint_distiller():
        keras.utils.set_random_seed(3)
        distiller = Distiller(
            fixed_teacher(2), Generator(LATENT, SHAPE, 1), loss="joint", discriminator=Discriminator(SHAPE, 1), mse_weight=0.3
        )
        distiller.compile(student_optimizer=keras.optimizers.Adam(1e-2), steps_per_execution=1)
        return distiller

    by_hand = joint_distiller()
    student_z = tf.random.stateless_normal((4, LATENT), seed=tf.constant([0, 0], tf.int64))  # (seed, step 0)
    optimizer = keras.optimizers.Adam(1e-2)
    with tf.GradientTape() as tape:
        fake = by_hand.student(student_z, training=True)
        logits = by_hand.discriminator(tf.concat([IMAGES[:4], fake], 0), training=True)
        adversarial = tf.math.softplus(-logits[4:, 0])  # -log sigmoid(D(S(z)))
        mse = tf.reduce_mean(tf.square(fake - by_hand.teacher(student_z, training=False)), axis=[1, 2, 3])
        expected = tf.reduce_mean(adversarial + 0.3 * mse)
    variables = by_hand.student.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(expected, variables), variables))
    distiller = joint_distiller()
    history = distiller.fit(IMAGES[:4], batch_size=4, epochs=1, verbose=0).history
    np.testing.assert_allclose(history["student_loss"][0], float(expected), rtol=1e-5)
    np.testing.assert_allclose(history["g_loss"][0], float(tf.reduce_mean(adversarial)), rtol=1e-5)
    for actual, wanted in zip(weights_of(distiller.student), weights_of(by_hand.student)):
        np.testing.assert_allclose(actual, wanted, atol=1e-6)


def test_weight_average_covers_adapters_and_writes_only_the_student():
    """With use_ema, the optimizer averages student and adapters; fit ends with
    the student's averages in the student and the discriminator untouched."""
    from kd_gan.training import optimizers

    keras.utils.set_random_seed(0)
    distiller = Distiller(
        fixed_teacher(2), Generator(LATENT, SHAPE, 1), loss="joint", discriminator=Discriminator(SHAPE, 1),
        distillation_losses=[PixelMSE(), FeatureLoss()],
    )
    distiller.compile(student_optimizer=optimizers.default_optimizer(1e-2, ema_decay=0.9))
    averaged = []
    class Capture(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            optimizer = distiller.student_optimizer
            averaged.extend(optimizer._model_variables_moving_average[i].numpy() for i in range(len(distiller.student.trainable_variables)))
            self.discriminator = [w.numpy().copy() for w in distiller.discriminator.weights]

    capture = Capture()
    distiller.fit(tf.data.Dataset.from_tensor_slices(IMAGES).batch(4).repeat(), epochs=1, steps_per_epoch=3, verbose=0, callbacks=[capture])
    for value, variable in zip(averaged, distiller.student.trainable_variables):
        np.testing.assert_allclose(variable.numpy(), value, atol=1e-7)
    for before, after in zip(capture.discriminator, distiller.discriminator.weights):
        np.testing.assert_array_equal(before, after.numpy())


def test_a_loss_object_serves_one_distiller():
    features = FeatureLoss()
    first = Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), distillation_losses=[PixelMSE(), features])
    assert first.distillation_losses[1] is features
    with pytest.raises(InputError, match="already serves another Distiller"):
        Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), distillation_losses=[PixelMSE(), features])


def test_round_trip_of_a_distiller_with_feature_and_perceptual_losses(tmp_path):
    keras.utils.set_random_seed(0)
    distiller = Distiller(
        fixed_teacher(2), Generator(LATENT, SHAPE, 1),
        distillation_losses=[PixelMSE(), FeatureLoss(), PerceptualLoss(Discriminator(SHAPE, 1))],
        distillation_loss_weights=[1.0, 0.2, 0.5],
    )
    distill_once(distiller)
    distiller.save(tmp_path / "distiller.keras")
    loaded = keras.saving.load_model(tmp_path / "distiller.keras")
    assert [type(l).__name__ for l in loaded.distillation_losses] == ["PixelMSE", "FeatureLoss", "PerceptualLoss"]
    assert loaded.distillation_loss_weights == [1.0, 0.2, 0.5]
    for original, restored in zip(distiller.distillation_losses[1].adapters, loaded.distillation_losses[1].adapters):
        for a, b in zip(original.weights, restored.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    z = tf.random.stateless_normal((4, LATENT), seed=(5, 5))
    teacher_outputs = distiller._taps.teacher_outputs(z)
    expected = distiller._distillation(z, teacher_outputs)[2]
    actual = loaded._distillation(z, loaded._taps.teacher_outputs(z))[2]
    np.testing.assert_allclose(actual, expected, rtol=1e-5)


def test_a_scheduled_pixel_weight_follows_the_students_step_and_survives_a_round_trip(tmp_path):
    """mse_weight as a Keras schedule: the pixel term's weight at each step is
    the schedule's at the student optimizer's iteration (TinyGAN's decay)."""
    keras.utils.set_random_seed(0)
    schedule = keras.optimizers.schedules.PolynomialDecay(8.0, decay_steps=4, end_learning_rate=2.0)
    distiller = Distiller(
        fixed_teacher(2), Generator(LATENT, SHAPE, 1), loss="adversarial", discriminator=Discriminator(SHAPE, 1),
        mse_weight=schedule,
    )
    distiller.compile(student_optimizer=keras.optimizers.Adam(1e-2), steps_per_execution=1)
    distiller.fit(latent_dataset(4, LATENT), epochs=1, steps_per_epoch=2, verbose=0)
    z = tf.random.stateless_normal((4, LATENT), seed=(5, 5))

    def total_over_mse(model):
        _, terms, total = model._distillation(z, model._taps.teacher_outputs(z))
        return float(tf.reduce_mean(total) / tf.reduce_mean(terms["mse"]))

    assert int(distiller.student_optimizer.iterations) == 2
    assert total_over_mse(distiller) == pytest.approx(5.0, rel=1e-5)  # 8 -> 2 over 4 steps, at step 2.
    distiller.student_optimizer.iterations.assign(10)
    assert total_over_mse(distiller) == pytest.approx(2.0, rel=1e-5)  # Held at the end value.
    distiller.student_optimizer.iterations.assign(2)
    distiller.save(tmp_path / "distiller.keras")
    loaded = keras.saving.load_model(tmp_path / "distiller.keras")
    assert isinstance(loaded.mse_weight, keras.optimizers.schedules.PolynomialDecay)
    assert loaded.mse_weight.get_config() == schedule.get_config()
    loaded.student_optimizer.iterations.assign(1)
    assert total_over_mse(loaded) == pytest.approx(6.5, rel=1e-5)


def test_compile_takes_keras_optimizer_argument_and_names():
    distiller = Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1))
    optimizer = keras.optimizers.SGD(0.1)
    distiller.compile(optimizer=optimizer)
    assert distiller.student_optimizer is optimizer
    distiller.compile(optimizer="sgd")
    assert isinstance(distiller.student_optimizer, keras.optimizers.SGD)


def ranged_teacher(transform):
    teacher = fixed_teacher(2)
    return lambda z: transform(teacher(z, training=False))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), distillation_losses=[FeatureLoss(["nope"])]),
         r"teacher \(Generator\) has no layer named \['nope'\]; its layers are \["),
        (lambda: Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), distillation_losses=[FeatureLoss(["project"], ["to_feature_map"])]),
         "cannot match teacher layer 'project' .* and student layer 'to_feature_map'"),
        (lambda: Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1),
                           distillation_losses=[keras.distillation.FeatureDistillation(teacher_layer_name="relu_1", student_layer_name="relu_1")]),
         "compares tensors of equal shapes; teacher gives \\['7x7x4'\\], student \\['7x7x2'\\]"),
        (lambda: Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), distillation_losses=[PerceptualLoss()]),
         "reads the Distiller's discriminator, and this Distiller has none"),
        (lambda: Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), distillation_losses=[PixelMSE(), PixelMSE()]),
         "distinct names"),
        (lambda: Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), distillation_losses=[PixelMSE()], distillation_loss_weights=[1, 2]),
         "one weight per loss; got 1 losses and weights \\[1, 2\\]"),
        (lambda: Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), loss="joint", discriminator=Discriminator(SHAPE, 1),
                           distillation_losses=[PixelMSE()], mse_weight=2.0),
         "mse_weight=2.0 weights the default pixel MSE"),
        (lambda: Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), distillation_losses=["mse"]),
         "received a str"),
        (lambda: PerceptualLoss("vgg"), "feature_network must be one of \\('discriminator', 'inception'\\)"),
        (lambda: Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), discriminator=Discriminator(SHAPE, 1)),
         "loss='mse' has no adversarial term .*\\['discriminator'\\] would be unused"),
        (lambda: Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), distillation_loss_weights=[2.0]),
         "distillation_loss_weights weights distillation_losses"),
        (lambda: Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), distillation_losses=[PixelMSE()], distillation_loss_weights=[float("nan")]),
         "distillation_loss_weights\\[0\\] must be a number >= 0 or a keras.optimizers.schedules schedule. Received: .*nan"),
        (lambda: Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1), loss="joint", discriminator=Discriminator(SHAPE, 1), mse_weight="high"),
         "mse_weight must be a number >= 0 or a keras.optimizers.schedules schedule. Received: mse_weight='high'"),
        (lambda: Distiller(ranged_teacher(lambda x: (x + 1) / 2), Generator(LATENT, SHAPE, 1)),
         "The teacher makes values in \\[0.*none below 0: a \\[0, 1\\] output"),
        (lambda: Distiller(ranged_teacher(lambda x: tf.cast((x + 1) * 127.5, tf.uint8)), Generator(LATENT, SHAPE, 1)),
         "The teacher makes uint8 images"),
        (lambda: Distiller(ranged_teacher(lambda x: x * 3), Generator(LATENT, SHAPE, 1)),
         "The teacher makes values in \\[-3"),
    ],
    ids=["unknown_layer", "unmatched_ranks", "keras_loss_shapes", "perceptual_without_discriminator", "duplicate_names",
         "weight_count", "mse_weight_with_losses", "not_a_loss", "unknown_network", "mse_with_discriminator",
         "weights_without_losses", "nan_weight", "text_weight", "teacher_0_1", "teacher_uint8",
         "teacher_out_of_range"],
)
def test_mistakes_raise_one_clear_message(build, message):
    with pytest.raises(InputError, match=message):
        build()


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"loss": "mse"}, "takes no loss="),
        ({"metrics": ["mae"]}, "takes no metrics="),
        ({"d_optimizer": "adam"}, "d_optimizer= is for loss='joint'"),
        ({"optimizer": "adam", "student_optimizer": "adam"}, "optimizer= or student_optimizer=, not both"),
    ],
)
def test_compile_refuses_arguments_it_would_ignore(arguments, message):
    distiller = Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1))
    with pytest.raises(InputError, match=message):
        distiller.compile(**arguments)


def test_fit_on_an_endless_dataset_without_steps_per_epoch_raises_at_once():
    distiller = Distiller(fixed_teacher(2), Generator(LATENT, SHAPE, 1))
    distiller.compile()
    with pytest.raises(InputError, match="endless dataset .* pass steps_per_epoch=N"):
        distiller.fit(latent_dataset(4, LATENT), epochs=1)
    assert int(distiller.student_optimizer.iterations) == 0


def test_perceptual_loss_through_the_fid_inception_trains_the_student(monkeypatch):
    from conftest import SHARED_DATA

    inception = SHARED_DATA / "inception" / "fid_inception_v3"
    if not (inception / "saved_model.pb").is_file():
        pytest.skip(f"needs the shared FID Inception at {inception}")
    monkeypatch.setenv("KD_GAN_INCEPTION", str(inception))
    student = Generator(LATENT, (32, 32, 3), 1)
    distiller = Distiller(Generator(LATENT, (32, 32, 3), 2), student, distillation_losses=[PerceptualLoss("inception")])
    before = weights_of(student)
    distiller.compile(steps_per_execution=1)
    history = distiller.fit(latent_dataset(2, LATENT), epochs=1, steps_per_epoch=1, verbose=0).history
    assert changed(before, student) and 0 < history["perceptual"][0] <= 4
