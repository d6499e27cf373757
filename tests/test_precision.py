"""Mixed-precision training: float32 variables and losses, loss scaling under
float16, float32 copies for saving and export, the hardware check."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import changed, weights_of

from kd_gan import GAN, Discriminator, Distiller, Generator, load_generator
from kd_gan.training import adversarial_steps as adversarial
from kd_gan.distillation import losses
from kd_gan.models import precision
from kd_gan.training import steps as training
from kd_gan.errors import InputError

SHAPE = (8, 8, 1)
LATENT = 4


def generator(depth=1, dtype=None, seed=0):
    keras.utils.set_random_seed(seed)
    return Generator(LATENT, SHAPE, depth, dtype=dtype)


def real_images(count=4):
    images = np.random.default_rng(0).uniform(-1, 1, (count, *SHAPE)).astype("float32")
    return tf.data.Dataset.from_tensor_slices(images).batch(2).repeat()


def test_policy_names_and_unknown_precision():
    assert [precision.policy(p) for p in precision.PRECISIONS] == ["float32", "mixed_bfloat16", "mixed_float16"]
    with pytest.raises(InputError, match=r"precision 'int4'.*float32"):
        precision.policy("int4")


@pytest.mark.parametrize("dtype", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_models_keep_float32_weights_and_output(dtype):
    g = generator(2, dtype)
    d = Discriminator(SHAPE, 2, dtype=dtype)
    assert {layer.dtype_policy.name for layer in g.network[:-1]} == {dtype}
    assert all(weight.dtype == "float32" for weight in g.weights + d.weights)
    images = g(tf.zeros((2, LATENT)), training=False)
    assert images.dtype == tf.float32  # The tanh output layer stays float32.
    assert d(images).dtype == tf.float32


@pytest.mark.parametrize("dtype", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_gan_step_trains_with_float32_variables_and_losses(dtype):
    model = GAN(generator(1, dtype), Discriminator(SHAPE, 1, dtype=dtype))
    model.compile()
    before_g, before_d = weights_of(model.generator), weights_of(model.discriminator)
    losses = adversarial.adversarial_update(
        model.generator, model.discriminator, model.g_optimizer, model.d_optimizer,
        tf.zeros((2, *SHAPE)), tf.random.normal((2, LATENT)),
    )
    assert all(value.dtype == tf.float32 for value in losses.values())
    assert changed(before_g, model.generator) and changed(before_d, model.discriminator)
    assert all(weight.dtype == "float32" for weight in model.generator.weights)
    history = model.fit(real_images(), epochs=1, steps_per_epoch=2, verbose=0).history
    assert all(np.isfinite(v[-1]) for v in history.values())


def test_mixed_distiller_moves_the_student_only():
    teacher, student = generator(2, "mixed_bfloat16", seed=1), generator(1, "mixed_bfloat16")
    distiller = Distiller(teacher, student, loss="joint", discriminator=Discriminator(SHAPE, 1, dtype="mixed_bfloat16"))
    distiller.compile()
    before_teacher, before_student = weights_of(teacher), weights_of(student)
    logs = distiller.fit(real_images(), epochs=1, steps_per_epoch=2, verbose=0).history
    assert not changed(before_teacher, teacher) and changed(before_student, student)
    assert all(np.isfinite(v[-1]) for v in logs.values())


def _underflowing_pair():
    """A float16 student and a teacher 1e-6 from it: the MSE gradient at each
    output (2e-6 / 64 pixels / batch 2 = 1.6e-8) is below float16's smallest
    subnormal (6e-8)."""
    student = generator(1, "mixed_float16")
    return (lambda z: tf.stop_gradient(student(z, training=True)) + 1e-6), student


def test_float16_gradients_underflow_without_loss_scaling():
    teacher, student = _underflowing_pair()
    z = tf.random.normal((2, LATENT), seed=1)
    with tf.GradientTape() as tape:
        loss = training.average_loss(losses.pixel_mse(teacher(z), student(z, training=True)))
    gradients = tape.gradient(loss, student.trainable_variables)
    assert float(loss) > 0  # The premise: a real loss whose gradients vanish in float16.
    assert all(not np.any(np.asarray(g)) for g in gradients)


def test_float16_distiller_scales_the_loss_once_and_unscales_the_update():
    teacher, student = _underflowing_pair()
    z = tf.random.normal((2, LATENT), seed=1)
    # The update SGD must make: the gradient of the loss scaled by the
    # optimizer's first scale (2**15), then divided by it, in float32; a large
    # learning rate makes the step resolvable next to the weights in float32.
    learning_rate = 1e4
    scale = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD()).initial_scale
    with tf.GradientTape() as tape:
        loss = training.average_loss(losses.pixel_mse(teacher(z), student(z, training=True))) * scale
    expected = [np.asarray(g) / scale for g in tape.gradient(loss, student.trainable_variables)]
    assert any(np.any(g) for g in expected)
    distiller = Distiller(teacher, student, loss="mse")
    distiller.compile(student_optimizer=keras.optimizers.SGD(learning_rate))
    assert isinstance(distiller.student_optimizer, keras.optimizers.LossScaleOptimizer)
    before = [np.array(w) for w in student.trainable_weights]
    distiller.fit(tf.data.Dataset.from_tensors(z).repeat(), epochs=1, steps_per_epoch=1, verbose=0)
    for old, new, gradient in zip(before, student.trainable_weights, expected):
        np.testing.assert_allclose(old - new.numpy(), learning_rate * gradient, rtol=1e-2, atol=1e-6)


def test_float16_gan_wraps_both_optimizers_once():
    model = GAN(generator(1, "mixed_float16"), Discriminator(SHAPE, 1, dtype="mixed_float16"))
    scaled = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam())
    model.compile(g_optimizer=scaled)
    assert model.g_optimizer is scaled
    assert isinstance(model.d_optimizer, keras.optimizers.LossScaleOptimizer)
    float32_gan = GAN(generator(1), Discriminator(SHAPE, 1))
    float32_gan.compile()
    assert not isinstance(float32_gan.g_optimizer, keras.optimizers.LossScaleOptimizer)


def test_float32_copy_keeps_weights_and_saves_as_float32(tmp_path):
    mixed = generator(2, "mixed_bfloat16")
    copy = precision.float32_copy(mixed)
    assert precision.float32_copy(copy) is copy
    assert {layer.dtype_policy.name for layer in copy.network} == {"float32"}
    for old, new in zip(mixed.weights, copy.weights):
        np.testing.assert_array_equal(old.numpy(), new.numpy())
    z = tf.random.normal((3, LATENT), seed=2)
    np.testing.assert_allclose(copy(z), mixed(z), atol=0.05)  # bfloat16 keeps ~3 digits.
    # A mixed model saved directly loads as float32 too.
    mixed.save(tmp_path / "mixed.keras")
    loaded = load_generator(tmp_path / "mixed.keras")
    assert {layer.dtype_policy.name for layer in loaded.network} == {"float32"}
    np.testing.assert_allclose(loaded(z), copy(z), atol=1e-6)
    # Functional models are rebuilt layer by layer.
    functional = keras.Sequential([keras.Input((LATENT,)), keras.layers.Dense(3, dtype="mixed_bfloat16")])
    assert [layer.dtype_policy.name for layer in precision.float32_copy(functional).layers] == ["float32"]


class _IgnoresDtype(keras.Model):
    """A model that builds its layer without passing its dtype policy on."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2, dtype="float32")
        self.head = keras.layers.Dense(2, dtype="float32")
        self.build((None, 3))

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.head.build((None, 2))

    def call(self, x):
        return self.head(self.dense(x))


def test_with_policy_refuses_a_model_that_ignores_its_dtype():
    with pytest.raises(InputError, match=r"does not pass its dtype policy.*mixed_bfloat16"):
        precision.with_policy(_IgnoresDtype(), "mixed_bfloat16")


def test_with_policy_leaves_non_keras_teachers_alone():
    def teacher(z):
        return z

    assert precision.with_policy(teacher, "mixed_bfloat16") is teacher


def test_check_hardware_warns_where_the_precision_is_slow():
    assert precision.check_hardware("bfloat16", flags={"avx512f"}, has_gpu=False) is not None
    assert precision.check_hardware("bfloat16", flags={"avx512_bf16"}, has_gpu=False) is None
    assert precision.check_hardware("bfloat16", flags={"amx_bf16"}, has_gpu=False) is None
    assert precision.check_hardware("bfloat16", flags=set(), has_gpu=False) is None  # Unknown CPU: no claim.
    assert precision.check_hardware("float16", flags={"avx512_bf16"}, has_gpu=False) is not None
    assert precision.check_hardware("float16", flags=set(), has_gpu=True) is None
    assert precision.check_hardware("float32", flags={"avx512f"}, has_gpu=False) is None


def test_bfloat16_is_kept_for_large_steps_on_cpus_with_bfloat16_units():
    large, small = 10 * precision.BFLOAT16_MIN_STEP_MACS, precision.BFLOAT16_MIN_STEP_MACS / 10
    amx = {"avx512f", "amx_bf16"}
    assert precision.step_precision("bfloat16", large, has_gpu=False, flags=amx) == "bfloat16"
    assert precision.step_precision("bfloat16", large, has_gpu=False, flags={"avx512_bf16"}) == "bfloat16"
    assert precision.step_precision("bfloat16", small, has_gpu=False, flags=amx) == "float32"
    assert precision.step_precision("bfloat16", small, has_gpu=True) == "bfloat16"  # GPUs: as asked.
    assert precision.step_precision("float32", large, has_gpu=False, flags=amx) == "float32"
    # A CPU without bfloat16 units emulates it (slower at every size, docs/RESULTS.md): float32.
    assert precision.step_precision("bfloat16", large, has_gpu=False, flags={"avx2", "avx512f"}) == "float32"
    assert precision.step_precision("bfloat16", large, has_gpu=True, flags={"avx2"}) == "bfloat16"
    assert precision.step_precision("bfloat16", large, has_gpu=False, flags=set()) == "bfloat16"  # Unknown CPU.
    with pytest.raises(InputError, match="'float8'"):
        precision.step_precision("float8", large)


def test_the_step_precision_names_why_it_keeps_float32():
    large, small = 10 * precision.BFLOAT16_MIN_STEP_MACS, precision.BFLOAT16_MIN_STEP_MACS / 10
    assert precision.step_precision_and_reason("bfloat16", large, has_gpu=False, flags={"amx_bf16"}) == ("bfloat16", None)
    assert precision.step_precision_and_reason("float32", small, has_gpu=False, flags={"avx2"}) == ("float32", None)
    chosen, why = precision.step_precision_and_reason("bfloat16", small, has_gpu=False, flags={"amx_bf16"})
    assert chosen == "float32" and "too small" in why and f"{small:.2g}" in why
    chosen, why = precision.step_precision_and_reason("bfloat16", large, has_gpu=False, flags={"avx2"})
    assert chosen == "float32" and "no bfloat16 units" in why


def test_auto_precision_is_bfloat16_where_the_machine_has_bfloat16_units_and_float32_elsewhere():
    assert precision.resolve("auto", flags={"amx_bf16", "avx512f"}, has_gpu=False) == "bfloat16"
    assert precision.resolve("auto", flags={"avx512_bf16"}, has_gpu=False) == "bfloat16"
    assert precision.resolve("auto", flags={"avx2", "fma"}, has_gpu=False) == "float32"  # Emulated bfloat16: slower.
    assert precision.resolve("auto", flags=set(), has_gpu=True) == "bfloat16"
    assert precision.resolve("float32", flags={"amx_bf16"}, has_gpu=False) == "float32"  # Asked for: kept.
    with pytest.raises(InputError, match="'float8'"):
        precision.resolve("float8")


def test_an_auto_run_records_what_it_chose(tiny_mnist, tmp_path, monkeypatch):
    from kd_gan import experiment

    monkeypatch.setattr(precision, "cpu_flags", lambda path="/proc/cpuinfo": {"avx2"})  # A CPU without bfloat16 units.
    config = experiment.ExperimentConfig(
        dataset="mnist", loss="mse", teacher_depths=(2,), student_depths=(1,), latent_dim=8, batch_size=4,
        teacher_epochs=1, student_epochs=1, steps_per_epoch=2, grid_columns=4, verbose=0, eval_samples=0,
        precision="auto", data_dir=tiny_mnist[0], output_dir=str(tmp_path / "run"),
    )
    results = experiment.run(config)
    assert results["precision"] == "float32" and results["config"]["precision"] == "auto"
    assert {entry["training"]["dtype_policy"] for entry in results["models"]} == {"float32"}
    assert "Trained in float32 (precision auto on this machine)" in (tmp_path / "run" / "report.md").read_text()


def _tiny_bfloat16_config(tiny_mnist, tmp_path):
    """A two-step MNIST run (teacher d=4, MSE student and scratch GAN d=1) asking for bfloat16."""
    from kd_gan import experiment

    return experiment.ExperimentConfig(
        dataset="mnist", loss="mse", teacher_depths=(4,), student_depths=(1,), latent_dim=8, batch_size=4,
        teacher_epochs=1, student_epochs=1, steps_per_epoch=2, grid_columns=4, verbose=0, eval_samples=0,
        precision="bfloat16", data_dir=tiny_mnist[0], output_dir=str(tmp_path / "run"),
    )


def test_a_bfloat16_run_trains_each_stage_at_the_precision_its_size_gains_from(tiny_mnist, tmp_path, monkeypatch):
    from kd_gan import experiment
    from kd_gan.experiment import progress

    config = _tiny_bfloat16_config(tiny_mnist, tmp_path)
    # A CPU with bfloat16 units (elsewhere every stage trains in float32: the test below this one).
    monkeypatch.setattr(precision, "cpu_flags", lambda *args: frozenset({"avx512f", "amx_bf16"}))
    teacher_step = progress.gan_step_cost(Generator(8, (28, 28, 1), 4), Discriminator((28, 28, 1), 4), 4)
    monkeypatch.setattr(precision, "BFLOAT16_MIN_STEP_MACS", teacher_step / 2)  # The teacher above, the d=1 stages below.
    results = experiment.run(config)
    policies = {entry["name"]: entry["training"]["dtype_policy"] for entry in results["teacher_candidates"] + results["models"]}
    assert policies == {"teacher_d4": "mixed_bfloat16", "student_mse_d1": "float32", "scratch_d1": "float32"}
    assert all(entry["training"]["seconds_per_step"] > 0 for entry in results["models"])
    text = (tmp_path / "run" / "report.md").read_text()
    assert "Trained in bfloat16 (student_mse_d1, scratch_d1 in float32" in text


def test_a_bfloat16_run_on_a_cpu_without_bfloat16_units_trains_every_stage_in_float32(tiny_mnist, tmp_path, monkeypatch):
    from kd_gan import experiment

    config = _tiny_bfloat16_config(tiny_mnist, tmp_path)
    monkeypatch.setattr(precision, "cpu_flags", lambda *args: frozenset({"avx2", "fma"}))
    monkeypatch.setattr(precision, "gpu_available", lambda: False)
    monkeypatch.setattr(precision, "BFLOAT16_MIN_STEP_MACS", 1.0)  # Every step is large enough by size.
    results = experiment.run(config)
    policies = {entry["training"]["dtype_policy"] for entry in results["teacher_candidates"] + results["models"]}
    assert policies == {"float32"}


def test_the_report_names_stages_an_earlier_invocation_trained_in_another_precision():
    from kd_gan.experiment import report

    def results(run_precision, **policies):
        models = [{"name": name, "training": {"dtype_policy": policy}} for name, policy in policies.items()]
        return {"precision": run_precision, "models": [{"name": "teacher", "training": None}] + models}

    auto = {"precision": "auto"}
    # Students trained in bfloat16 on one machine, their scratch GAN added on another where auto chose float32.
    assert report._precision_sentence(auto, results("float32", student_a="mixed_bfloat16", scratch_a="float32")) == (
        "float32 (precision auto on this machine) (student_a in bfloat16, trained by an earlier invocation)")
    assert report._precision_sentence(auto, results("bfloat16", student_a="mixed_bfloat16")) == (
        "bfloat16 (precision auto on this machine)")
    sentence = report._precision_sentence({"precision": "bfloat16"}, results("bfloat16", student_a="mixed_bfloat16", scratch_a="float32"))
    assert sentence.startswith("bfloat16 (scratch_a in float32: bfloat16 would slow them down")
