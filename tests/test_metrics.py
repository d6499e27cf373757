"""Metrics against independent numpy/scipy code, the tf-gan shim, classifiers."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.linalg
import scipy.special
import scipy.stats
import tensorflow as tf

from kd_gan import Generator, metrics, tfgan


def reference_inception_score(logits):
    p = scipy.special.softmax(logits.astype(np.float64), axis=1)
    marginal = p.mean(axis=0)
    return float(np.exp(np.mean([scipy.stats.entropy(row, marginal) for row in p])))


def reference_fid(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    sigma_a, sigma_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(sigma_a @ sigma_b).real
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(sigma_a + sigma_b - 2 * covmean))


def test_inception_score_matches_scipy():
    logits = np.random.default_rng(0).normal(0, 3, (200, 10))
    assert metrics.inception_score(logits) == pytest.approx(reference_inception_score(logits), rel=1e-6)


def test_inception_score_of_uniform_logits_is_one():
    assert metrics.inception_score(np.zeros((50, 10))) == pytest.approx(1.0, abs=1e-9)


def test_inception_score_of_confident_balanced_classes_is_the_class_count():
    logits = np.eye(10)[np.arange(100) % 10] * 50.0
    assert metrics.inception_score(logits) == pytest.approx(10.0, rel=1e-6)


def test_fid_matches_scipy_is_symmetric_and_zero_on_itself():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 12))
    b = rng.normal(0.3, 1.5, size=(300, 12)) @ rng.normal(size=(12, 12))
    assert metrics.frechet_distance(a, b) == pytest.approx(reference_fid(a, b), rel=1e-6)
    assert metrics.frechet_distance(a, b) == pytest.approx(metrics.frechet_distance(b, a), rel=1e-9)
    assert abs(metrics.frechet_distance(a, a)) < 1e-6


def test_tfgan_shim_exports_tfgan_functions():
    assert metrics.tfgan is tfgan
    for function in (tfgan.classifier_score_from_logits, tfgan.frechet_classifier_distance_from_activations):
        assert function.__module__.startswith("tensorflow_gan")
    plain = subprocess.run([sys.executable, "-c", "import tensorflow_gan"], capture_output=True, timeout=300)
    # The plain import is used exactly when it works on the installed TensorFlow.
    assert (tfgan.SOURCE == "tensorflow_gan") == (plain.returncode == 0)


def test_variance_of_laplacian_drops_with_blur():
    image = np.random.default_rng(2).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    kernel = np.full((5, 5, 1, 1), 1 / 25, np.float32)
    blurred = tf.concat([tf.nn.conv2d(image[..., c : c + 1], kernel, 1, "SAME") for c in range(3)], axis=-1)
    assert metrics.variance_of_laplacian(blurred) < 0.2 * metrics.variance_of_laplacian(image)
    assert metrics.variance_of_laplacian(np.zeros((2, 8, 8, 1))) == 0.0


def test_variance_of_laplacian_matches_numpy():
    images = np.random.default_rng(3).uniform(-1, 1, (3, 10, 10, 3)).astype(np.float32)
    grey = ((images + 1) * 127.5).mean(-1)
    lap = grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1] + grey[:, 1:-1, :-2] + grey[:, 1:-1, 2:] - 4 * grey[:, 1:-1, 1:-1]
    assert metrics.variance_of_laplacian(images) == pytest.approx(float(lap.reshape(3, -1).var(axis=1).mean()), rel=1e-4)


def test_psnr():
    assert metrics.psnr(0.04) == pytest.approx(20.0)  # 10 log10(4 / 0.04)
    assert metrics.psnr(0.0) == float("inf")


class _FakeInception(tf.Module):
    """Same call signature as the FID network: [N, 299, 299, 3] -> {"pool_3", ("logits")}."""

    def __init__(self, with_logits):
        super().__init__()
        self.with_logits = with_logits

    @tf.function(input_signature=[tf.TensorSpec([None, 299, 299, 3], tf.float32)])
    def __call__(self, images):
        precise = tf.cast(images, tf.float64)  # float32 means of 299x299 values drift by ~1e-3
        mean, std = tf.reduce_mean(precise, [1, 2]), tf.math.reduce_std(precise, [1, 2])
        outputs = {"pool_3": tf.cast(tf.concat([mean, std], -1), tf.float32)}
        if self.with_logits:
            outputs["logits"] = tf.cast(mean * 10.0, tf.float32)
        return outputs


@pytest.mark.parametrize("with_logits", [False, True])
def test_local_inception_pipeline(tmp_path, with_logits):
    tf.saved_model.save(_FakeInception(with_logits), str(tmp_path / "net"))
    classifier = metrics.InceptionClassifier(str(tmp_path / "net"))
    assert classifier.has_logits is with_logits
    # Constant grey images: the network sees ((v + 1) * 127.5 - 128) / 128 on all 3 channels at 299x299.
    values = np.array([-1.0, 0.0, 0.5], np.float32)
    images = np.ones((3, 28, 28, 1), np.float32) * values[:, None, None, None]
    activations, logits = classifier(images)
    expected = ((values + 1) * 127.5 - 128) / 128
    np.testing.assert_allclose(activations[:, :3], np.repeat(expected[:, None], 3, 1), atol=1e-5)
    np.testing.assert_allclose(activations[:, 3:], 0, atol=1e-5)
    generator = Generator(8, (28, 28, 1), 1)
    reference = np.random.default_rng(0).normal(size=(20, 6))
    record, generated = metrics.evaluate_generator(generator, classifier, reference, num_samples=20)
    assert generated.shape == (20, 6) and record["num_samples"] == 20
    assert record["fid"] == pytest.approx(reference_fid(reference, generated), rel=1e-5)
    if with_logits:
        assert record["inception_score"] == pytest.approx(reference_inception_score(logits_of(classifier, generator)), rel=1e-5)
    else:
        assert record["inception_score"] is None and "no logits" in record["inception_score_note"]


def logits_of(classifier, generator):
    return np.concatenate([classifier(batch)[1] for batch in metrics.generator_batches(generator, 20)])


def test_missing_inception_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="saved_model.pb"):
        metrics.InceptionClassifier(str(tmp_path))


def test_preprocess_resizes_with_the_graphs_bilinear_op():
    images = np.random.default_rng(4).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    expected = (tf.compat.v1.image.resize_bilinear((images + 1) * 127.5, [299, 299], align_corners=False) - 128) / 128
    np.testing.assert_allclose(metrics.preprocess_for_inception(images), expected, atol=1e-5)


def test_latent_fidelity():
    teacher = Generator(8, (28, 28, 1), 2)
    same = metrics.latent_fidelity(teacher, teacher, num_samples=20, interpolation_pairs=3, interpolation_steps=4)
    assert same["mse"] == 0.0 and same["psnr_db"] == float("inf") and same["interpolation"]["mse"] == 0.0
    other = metrics.latent_fidelity(Generator(8, (28, 28, 1), 1), teacher, num_samples=20, interpolation_pairs=3)
    assert other["mse"] > 0 and np.isfinite(other["psnr_db"]) and other["interpolation"]["mse"] > 0


class _CountingClassifier:
    name, has_logits = "counting", True

    def __init__(self):
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        flat = np.asarray(images).reshape(len(images), -1)
        return flat[:, :4], flat[:, :10]


def test_real_statistics_are_cached(tiny_mnist):
    classifier = _CountingClassifier()
    first = metrics.real_activations(classifier, "mnist", "train", 30, data_dir=tiny_mnist[0])
    calls = classifier.calls
    second = metrics.real_activations(classifier, "mnist", "train", 30, data_dir=tiny_mnist[0])
    assert classifier.calls == calls > 0
    np.testing.assert_array_equal(first[0], second[0])
    assert first[0].shape == (30, 4) and first[2] == second[2]
    with pytest.raises(ValueError, match="only 40 images"):
        metrics.real_activations(classifier, "mnist", "train", 50, data_dir=tiny_mnist[0])


@pytest.fixture
def shared_inception(shared_data_dir):
    path = os.path.join(shared_data_dir, "inception", "fid_inception_v3")
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        pytest.skip(f"no FID Inception at {path}")
    return metrics.InceptionClassifier(path)


def test_shared_inception_fid_of_real_images_against_noise(shared_data_dir, shared_inception):
    count = 250  # Small: ~25 images/s on a 2-core CPU.
    real, _, _ = metrics.run_classifier(
        shared_inception, metrics.real_batches("cifar10", "train", count, data_dir=shared_data_dir), count
    )
    noise_images = np.random.default_rng(0).integers(0, 256, (count, 32, 32, 3)).astype(np.float32) / 127.5 - 1
    noise, _, _ = metrics.run_classifier(shared_inception, [noise_images[:125], noise_images[125:]], count)
    half = metrics.frechet_distance(real[:125], real[125:])
    against_noise = metrics.frechet_distance(real, noise)
    assert 150 < against_noise < 1000, against_noise
    assert half < 0.5 * against_noise


@pytest.mark.slow
def test_shared_inception_reproduces_the_reference_cifar10_fid(shared_data_dir, shared_inception):
    """Set A (first 1,000 per class, by path), even- vs odd-indexed: FID 9.976 (shared README)."""
    from kd_gan import data

    per_class = {name: [] for name in data.CIFAR10_CLASSES}
    builder = data.get_builder("cifar10", shared_data_dir)
    for example in builder.as_dataset(split="train", shuffle_files=False):
        name = data.CIFAR10_CLASSES[int(example["label"])]
        if len(per_class[name]) < 1000:
            per_class[name].append(example["image"].numpy())
    set_a = np.concatenate([np.stack(per_class[name]) for name in data.CIFAR10_CLASSES]).astype(np.float32) / 127.5 - 1
    start = time.perf_counter()
    even, _, _ = metrics.run_classifier(shared_inception, np.array_split(set_a[0::2], 50), 5000)
    odd, _, _ = metrics.run_classifier(shared_inception, np.array_split(set_a[1::2], 50), 5000)
    fid = metrics.frechet_distance(even, odd)
    print(f"FID(set A even, set A odd) = {fid:.3f}; Inception pass {10_000 / (time.perf_counter() - start):.1f} images/s")
    assert fid == pytest.approx(9.976, abs=0.05)


@pytest.mark.slow
def test_mnist_classifier_on_real_mnist(shared_data_dir):
    classifier = metrics.MnistClassifier(shared_data_dir)
    assert classifier.test_accuracy >= 0.99
    test, logits, _ = metrics.run_classifier(
        classifier, metrics.real_batches("mnist", "test", 10000, data_dir=shared_data_dir), 10000
    )
    assert metrics.inception_score(logits) > 9.5
    # Even- vs odd-indexed halves: MNIST test's first and last 5,000 come from
    # different writer populations (SD-3 and SD-1) and differ more (FID ~16).
    halves = metrics.frechet_distance(test[0::2], test[1::2])
    noise = np.random.default_rng(0).uniform(-1, 1, (5000, 28, 28, 1)).astype(np.float32)
    noise_activations, _, _ = metrics.run_classifier(classifier, np.array_split(noise, 50), 5000)
    assert halves < 0.02 * metrics.frechet_distance(test[0::2], noise_activations)


def test_evaluation_callback_logs_every_n_epochs(tmp_path):
    from kd_gan import GAN, Discriminator

    generator = Generator(8, (28, 28, 1), 1)
    model = GAN(generator, Discriminator((28, 28, 1), 1))
    model.compile()
    classifier = _CountingClassifier()
    reference = np.random.default_rng(0).normal(size=(16, 4))
    callback = metrics.EvaluationCallback(generator, classifier, reference, 16, str(tmp_path / "logs"), every_n_epochs=2)
    model.fit(np.zeros((4, 28, 28, 1), "float32"), batch_size=2, epochs=4, verbose=0, callbacks=[callback])
    assert [record["epoch"] for record in callback.history] == [2, 4]
    assert all(record["num_samples"] == 16 and record["fid"] > 0 for record in callback.history)
    events = [f for f in os.listdir(tmp_path / "logs") if f.startswith("events.out.tfevents")]
    assert events, "no TensorBoard event file"
    logged = [
        value.tag
        for event in tf.compat.v1.train.summary_iterator(str(tmp_path / "logs" / events[0]))
        for value in event.summary.value
    ]
    assert logged.count("eval/fid") == 2 and logged.count("eval/inception_score") == 2 and "eval/vol" in logged


def test_evaluate_command_scores_a_generator_and_a_real_split(tiny_mnist, tmp_path):
    from kd_gan import evaluate

    generator = Generator(8, (28, 28, 1), 1)
    generator.save(tmp_path / "g.keras")
    record = evaluate.evaluate("mnist", 8, generator_path=str(tmp_path / "g.keras"), data_dir=tiny_mnist[0])
    assert record["num_samples"] == 8 and record["reference_split"] == "test"
    assert record["classifier"].startswith("mnist_cnn") and 0 <= record["classifier_test_accuracy"] <= 1
    assert 1.0 <= record["mnist_score"] <= 10.0 and record["fid"] > 0
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    completed = subprocess.run(
        [sys.executable, "-m", "kd_gan.evaluate", "--dataset=mnist", "--real_split=test", "--num_samples=8",
         f"--data_dir={tiny_mnist[0]}", f"--output={tmp_path / 'real.json'}"],
        cwd=root, capture_output=True, text=True, timeout=300, env=dict(os.environ),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    real = json.loads((tmp_path / "real.json").read_text())
    assert real["real_split"] == "test" and real["reference_split"] == "train" and real["num_samples"] == 8
    with pytest.raises(ValueError, match="exactly one"):
        evaluate.evaluate("mnist", 8, data_dir=tiny_mnist[0])
    with pytest.raises(ValueError, match="disjoint --reference_split"):
        evaluate.evaluate("cifar10", 8, real_split="train[:8]")
