"""Image-quality formulas: Inception Score, FID, KID, precision/recall, sharpness.

Only the maths, on activations a classifier has already produced (the
networks are in `kd_gan.evaluation.classifiers`, the batching and caching in
`kd_gan.evaluation.scoring`), as tf-gan keeps `classifier_metrics` apart from the
Inception that feeds it:

* **Inception Score** `exp(E_x KL(p(y|x) || p(y)))` from a classifier's logits
  (tf-gan's `classifier_score_from_logits`). With the MNIST classifier it is
  the "MNIST score" (at most 10, the number of classes).
* **FID** `||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))` of two
  activation sets, in float64 with tf-gan's square root; from activations
  (tf-gan's `frechet_classifier_distance_from_activations`) or from stored
  moments (`Moments`: mean and unbiased covariance, as tf-gan computes them).
  FID is biased by the sample count: compare FIDs only at equal counts.
* **KID** (Binkowski et al. 2018): the unbiased MMD^2 with the cubic
  polynomial kernel `k(x, y) = (x.y / D + 1)^3`, tf-gan's block estimator, with
  its standard error. Unbiased, so it compares across sample counts.
* **Improved precision and recall** (Kynkaanniemi et al. 2019): each set's
  manifold is the union of balls around its points reaching their k-th
  nearest neighbour (k=3); precision is the share of generated points inside
  the real manifold (fidelity), recall the share of real points inside the
  generated one (diversity).
* **Variance of Laplacian** (VoL, the paper's sharpness measure): the variance
  of the 3x3 Laplacian of each grey image in [0, 255], averaged over images.
* **PSNR** of a mean squared error on images in [-1, 1].
"""

import math

import numpy as np
import tensorflow as tf

from kd_gan import _compat
from kd_gan.errors import check_integer
from kd_gan.evaluation import _tfgan as tfgan


def inception_score(logits):
    """Inception Score from logits `[N, classes]` (tf-gan)."""
    return float(tfgan.classifier_score_from_logits(tf.convert_to_tensor(logits, tf.float64)))


def frechet_distance(activations1, activations2):
    """FID from two activation sets `[N, D]`, in float64 (tf-gan)."""
    return float(
        tfgan.frechet_classifier_distance_from_activations(
            tf.convert_to_tensor(activations1, tf.float64), tf.convert_to_tensor(activations2, tf.float64)
        )
    )


class Moments:
    """Streaming mean and unbiased covariance of activations, in float64.

    Add batches with `update`; `mean` and `covariance` equal numpy's
    `mean(axis=0)` and `cov(rowvar=False)` of all rows (tf-gan's FID uses the
    same unbiased covariance), without keeping the rows.

    Example:

    ```python
    moments = Moments(2048)
    for batch in batches:
        moments.update(classifier(batch)[0])
    fid = frechet_distance_from_moments(moments.mean, moments.covariance, mu, sigma)
    ```
    """

    def __init__(self, dimension):
        self.count = 0
        self._sum = np.zeros(dimension, np.float64)
        self._outer = np.zeros((dimension, dimension), np.float64)
        self._shift = None  # The first row: summing deviations from it keeps float64 exact enough.

    def update(self, activations):
        rows = np.asarray(activations, np.float64).reshape(len(activations), -1)
        if self._shift is None:
            self._shift = rows[0].copy()
        rows = rows - self._shift
        self.count += len(rows)
        self._sum += rows.sum(axis=0)
        self._outer += rows.T @ rows

    def state(self):
        """The accumulators as arrays (`from_state` rebuilds the same moments): what a stopped pass saves."""
        return {"count": np.int64(self.count), "sum": self._sum, "outer": self._outer, "shift": self._shift}

    @classmethod
    def from_state(cls, count, sum, outer, shift):
        moments = cls(sum.shape[0])
        moments.count, moments._sum, moments._outer, moments._shift = int(count), sum, outer, shift
        return moments

    @property
    def mean(self):
        return self._shift + self._sum / self.count

    @property
    def covariance(self):
        if self.count < 2:
            raise ValueError(f"A covariance needs at least 2 rows; got {self.count}.")
        centred_sum = self._sum / self.count
        return (self._outer - self.count * np.outer(centred_sum, centred_sum)) / (self.count - 1)


def frechet_distance_from_moments(mean1, covariance1, mean2, covariance2):
    """FID from two (mean, covariance) pairs, in float64 with tf-gan's matrix square root.

    Equals `frechet_distance` of the activations the moments come from.
    """
    mean1, mean2 = (tf.convert_to_tensor(m, tf.float64) for m in (mean1, mean2))
    covariance1, covariance2 = (tf.convert_to_tensor(c, tf.float64) for c in (covariance1, covariance2))
    trace = tf.linalg.trace(covariance1 + covariance2) - 2.0 * tfgan.trace_sqrt_product(covariance1, covariance2)
    return float(tf.reduce_sum(tf.math.squared_difference(mean1, mean2)) + trace)


def kernel_inception_distance(reference_activations, activations, max_block_size=1024):
    """KID and its standard error `(kid, std)` between two activation sets (tf-gan's estimator).

    The block estimator assumes both sets are in random order (never sorted by
    class); it splits them into blocks of at most `max_block_size` rows.
    """
    # tf-gan calls tf.map_fn(back_prop=False), which TF 2.21 flags as deprecated on
    # every call: the warning is tf-gan's, not the user's to act on.
    with _compat.silenced_deprecations():
        kid, std = tfgan.kernel_classifier_distance_and_std_from_activations(
            tf.convert_to_tensor(reference_activations, tf.float64),
            tf.convert_to_tensor(activations, tf.float64),
            max_block_size=max_block_size,
        )
    return float(kid), float(std)


def _squared_distances(rows, columns):
    """`[len(rows), len(columns)]` squared Euclidean distances (float64 tensors in, float64 out)."""
    return tf.maximum(
        tf.reduce_sum(tf.square(rows), 1)[:, None] + tf.reduce_sum(tf.square(columns), 1)[None, :]
        - 2.0 * tf.matmul(rows, columns, transpose_b=True),
        0.0,
    )


# Blocks of rows against a whole set, compiled once per shape: the k-th
# neighbour by top-k over both cores rather than numpy's single-threaded
# partition (benchmarks/bench_precision_recall.py, docs/EVALUATION.md).
@tf.function(reduce_retracing=True)
def _block_radii(rows, points, k):
    # Column 0 of the nearest is the point itself (distance 0): the k-th neighbour is entry k.
    return -tf.math.top_k(-_squared_distances(rows, points), k + 1, sorted=True).values[:, k]


@tf.function(reduce_retracing=True)
def _block_coverage(rows, rows_radii, manifold, manifold_radii):
    """One block of generated rows against the reference: how many rows lie in the
    reference's balls, and which reference points lie in these rows' balls."""
    distances = _squared_distances(rows, manifold)
    rows_inside = tf.reduce_sum(tf.cast(tf.reduce_any(distances <= manifold_radii[None, :], axis=1), tf.int64))
    return rows_inside, tf.reduce_any(distances <= rows_radii[:, None], axis=0)


def _blocks(points, chunk):
    return (points[start : start + chunk] for start in range(0, int(points.shape[0]), chunk))


def manifold_radii(points, k=3, chunk=1000):
    """Squared distance of each point `[N, D]` to its k-th nearest neighbour in the set (itself excluded).

    The radii of the balls whose union is the set's manifold in `precision_recall`;
    compute them once for a reference that several sets are compared against.

    Args:
        points: activations `[N, D]`, N > k.
        k: the neighbour (the paper's 3).
        chunk: rows per block of the distance matrix (memory `chunk x N` doubles).

    Returns:
        float64 array `[N]`.
    """
    check_integer("chunk", chunk, 1, "chunk (rows per block of the distance matrix)")
    points = tf.cast(tf.convert_to_tensor(points), tf.float64)  # No copy for a float64 tensor.
    if points.shape[0] <= k:
        raise ValueError(f"manifold_radii needs more than k={k} rows; got {points.shape[0]}.")
    return np.concatenate([_block_radii(rows, points, k).numpy() for rows in _blocks(points, chunk)])


def precision_recall(reference_activations, activations, k=3, chunk=1000, reference_radii=None):
    """Improved precision and recall (Kynkaanniemi et al. 2019) of `activations` against a reference.

    Args:
        reference_activations: real activations `[N, D]`.
        activations: generated activations `[M, D]`; compare sets of equal size.
        k: the neighbour whose distance sets each ball's radius (the paper's 3).
        chunk: rows per block of the distance matrix (memory `chunk x N` doubles).
        reference_radii: `manifold_radii(reference_activations, k)` when already
            computed (the reference is the same for every model of a run).

    Returns:
        `(precision, recall)` in [0, 1].
    """
    check_integer("chunk", chunk, 1, "chunk (rows per block of the distance matrix)")
    reference = np.asarray(reference_activations, np.float64)
    generated = np.asarray(activations, np.float64)
    for name, points in (("reference_activations", reference), ("activations", generated)):
        if len(points) <= k:
            raise ValueError(f"precision_recall needs more than k={k} rows in {name}; got {len(points)}.")
    if reference_radii is None:
        reference_radii = manifold_radii(reference, k, chunk)
    elif np.shape(reference_radii) != (len(reference),):
        raise ValueError(
            f"reference_radii must hold one radius per reference row ({len(reference)}); got shape {np.shape(reference_radii)}."
        )
    # Both shares from one pass over the generated-to-reference distances:
    # a generated row is precise when inside some reference ball, a reference
    # point recalled when inside some generated ball.
    reference, generated = tf.constant(reference), tf.constant(generated)
    generated_radii = tf.constant(manifold_radii(generated, k, chunk))
    reference_radii = tf.constant(np.asarray(reference_radii, np.float64))
    precise, recalled = 0, tf.zeros(reference.shape[0], tf.bool)
    for rows, rows_radii in zip(_blocks(generated, chunk), _blocks(generated_radii, chunk)):
        inside, covered = _block_coverage(rows, rows_radii, reference, reference_radii)
        precise, recalled = precise + int(inside), tf.logical_or(recalled, covered)
    recall = int(tf.reduce_sum(tf.cast(recalled, tf.int64))) / int(reference.shape[0])
    return precise / int(generated.shape[0]), recall


_LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32).reshape(3, 3, 1, 1)


def variance_of_laplacian(images):
    """Mean over images of the variance of the Laplacian of the grey image.

    Args:
        images: `[N, H, W, C]` in [-1, 1].
    """
    grey = tf.reduce_mean((tf.convert_to_tensor(images, tf.float32) + 1.0) * 127.5, axis=-1, keepdims=True)
    laplacian = tf.nn.conv2d(grey, _LAPLACIAN, strides=1, padding="VALID")
    return float(tf.reduce_mean(tf.math.reduce_variance(laplacian, axis=[1, 2, 3])))


def psnr(mse, peak_to_peak=2.0):
    """PSNR in dB of a mean squared error on images spanning `peak_to_peak` ([-1, 1]: 2)."""
    return float("inf") if mse == 0 else float(10 * math.log10(peak_to_peak**2 / mse))
