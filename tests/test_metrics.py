"""The metric formulas against independent numpy/scipy code, and the tf-gan shim."""

import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
import scipy.special
import scipy.stats
import tensorflow as tf

from kd_gan.evaluation import formulas as metrics
from kd_gan.evaluation import _tfgan as tfgan


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


def test_moments_match_numpy_over_batches():
    rng = np.random.default_rng(5)
    rows = rng.normal(50.0, 3.0, (301, 7)) @ rng.normal(size=(7, 7))  # A large offset: the shift keeps precision.
    moments = metrics.Moments(7)
    for batch in np.array_split(rows, 4):
        moments.update(batch)
    assert moments.count == 301
    np.testing.assert_allclose(moments.mean, rows.mean(0), rtol=1e-12)
    np.testing.assert_allclose(moments.covariance, np.cov(rows, rowvar=False), rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="at least 2 rows"):
        one = metrics.Moments(7)
        one.update(rows[:1])
        one.covariance


def test_fid_from_moments_equals_tfgan_on_the_activations():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(200, 10))
    b = rng.normal(0.5, 2.0, size=(150, 10)) @ rng.normal(size=(10, 10))
    moments = [metrics.Moments(10), metrics.Moments(10)]
    moments[0].update(a)
    moments[1].update(b)
    from_moments = metrics.frechet_distance_from_moments(
        moments[0].mean, moments[0].covariance, moments[1].mean, moments[1].covariance
    )
    assert from_moments == pytest.approx(metrics.frechet_distance(a, b), rel=1e-9)
    assert from_moments == pytest.approx(reference_fid(a, b), rel=1e-6)


def reference_kid(a, b):
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 (Binkowski et al. 2018), one block."""
    d = a.shape[1]
    kernel = lambda x, y: (x @ y.T / d + 1) ** 3  # noqa: E731
    kaa, kbb, kab = kernel(a, a), kernel(b, b), kernel(a, b)
    n, m = len(a), len(b)
    return (kaa.sum() - np.trace(kaa)) / (n * (n - 1)) + (kbb.sum() - np.trace(kbb)) / (m * (m - 1)) - 2 * kab.mean()


def test_kid_matches_numpy_and_separates_distributions():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(120, 8)), rng.normal(0.8, 1.0, size=(100, 8))
    kid, std = metrics.kernel_inception_distance(a, b)
    assert kid == pytest.approx(reference_kid(a, b), rel=1e-6)
    same, _ = metrics.kernel_inception_distance(a[:60], rng.normal(size=(60, 8)))
    assert abs(same) < 0.2 * kid
    _, spread = metrics.kernel_inception_distance(rng.normal(size=(400, 8)), rng.normal(0.8, 1.0, size=(400, 8)), max_block_size=100)
    assert np.isfinite(spread) and spread > 0  # Several blocks give a standard error.


def reference_precision_recall(real, fake, k):
    def radii(points):
        distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
        return np.sort(distances, axis=1)[:, k]  # Column 0 is the point itself.

    def coverage(points, manifold, manifold_radii):
        distances = np.linalg.norm(points[:, None] - manifold[None], axis=-1)
        return float(np.mean(np.any(distances <= manifold_radii[None], axis=1)))

    return coverage(fake, real, radii(real)), coverage(real, fake, radii(fake))


def test_precision_recall_matches_brute_force_and_reads_fidelity_and_diversity():
    rng = np.random.default_rng(8)
    real = rng.normal(size=(150, 5))
    shifted = rng.normal(0.7, 1.0, size=(150, 5))
    expected = reference_precision_recall(real, shifted, 3)
    assert metrics.precision_recall(real, shifted, k=3, chunk=40) == pytest.approx(expected, abs=1e-12)
    # Mode collapse: every sample near one real point -> high precision, low recall.
    collapsed = real[0] + 0.01 * rng.normal(size=(150, 5))
    precision, recall = metrics.precision_recall(real, collapsed)
    assert precision > 0.9 and recall < 0.1
    # Samples off the data: low precision.
    precision, _ = metrics.precision_recall(real, rng.normal(6.0, 1.0, size=(150, 5)))
    assert precision < 0.05
    with pytest.raises(ValueError, match="more than k=3 rows"):
        metrics.precision_recall(real[:3], shifted)


def test_precision_recall_counts_points_on_a_ball_edge_and_divides_by_each_sets_size():
    # Integer points: distances are exact, so a point on a ball's edge is a tie (<= counts it).
    real = np.arange(6.0)[:, None]
    fake = np.array([[-3.0]] * 4 + [[0.0]])
    expected = reference_precision_recall(real, fake, 3)
    assert expected == pytest.approx((1.0, 4 / 6))  # With < instead: (0.2, 0.5).
    assert metrics.precision_recall(real, fake, k=3, chunk=2) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="chunk .* must be an integer >= 1. Received: chunk=0"):
        metrics.precision_recall(real, fake, chunk=0)


def test_manifold_radii_match_brute_force_and_given_radii_give_the_same_precision_recall():
    rng = np.random.default_rng(9)
    real, fake = rng.normal(size=(130, 6)), rng.normal(0.5, 1.2, size=(130, 6))
    distances = np.linalg.norm(real[:, None] - real[None], axis=-1)
    # Squared distance to the k-th neighbour; blocks of 40 rows (a last block of 10) give the same.
    expected = np.sort(distances, axis=1)[:, 3] ** 2
    np.testing.assert_allclose(metrics.manifold_radii(real, k=3, chunk=40), expected, rtol=1e-12)
    radii = metrics.manifold_radii(real, k=3)
    assert metrics.precision_recall(real, fake, reference_radii=radii) == metrics.precision_recall(real, fake)
    # Radii too small for the reference: nothing generated lies inside its balls.
    assert metrics.precision_recall(real, fake, reference_radii=np.zeros(130))[0] == 0.0
    with pytest.raises(ValueError, match=r"one radius per reference row \(130\); got shape \(129,\)"):
        metrics.precision_recall(real, fake, reference_radii=radii[:129])
    with pytest.raises(ValueError, match="more than k=3 rows; got 3"):
        metrics.manifold_radii(real[:3])
