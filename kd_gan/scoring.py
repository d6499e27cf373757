"""Scoring plumbing: image batches through a classifier, statistics cached as `.npz`, metric records.

The protocol (the standard one for FID):

* The **reference** is a whole real split (or image folder): the mean and
  covariance of its activations over every image, computed once and stored as
  an `.npz` (`ImageStatistics`: mean, covariance, count, network, data
  fingerprint, preprocessing version). `reference_samples=N` takes a seeded
  random subset of N images instead, never "the first N".
* The **candidate** (a generator's `num_samples` images, or a folder) gets the
  same statistics.
* FID comes from the two (mean, covariance) pairs; KID and precision/recall
  from activations kept beside them (a seeded random sample of at most
  `KEPT_ACTIVATIONS` rows per set; precision/recall on equal counts). One
  Inception pass serves every metric.
"""

import hashlib
import json
import os
import queue
import sys
import threading
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kd_gan import classifiers, data, metrics
from kd_gan.generators import generate, latent_size
from kd_gan.image_files import ImageSource
from kd_gan.errors import InputError

STATISTICS_VERSION = 1
KEPT_ACTIVATIONS = 10_000  # Rows kept per set for KID and precision/recall.
PRECISION_RECALL_K = 3


class ImageStatistics:
    """What a set of images looks like to a classifier; save/load as `.npz`.

    Attributes:
        mean, covariance: float64 moments of the activations over all `count` images.
        count: images the moments cover.
        activations: a seeded random sample of the activations (at most
            `KEPT_ACTIVATIONS` rows), for KID and precision/recall.
        network: the classifier's name (content fingerprint of its files).
        source: what the images are (data set and split, folder, generator).
        fingerprint: content fingerprint of the data the images came from.
        preprocessing: version of the image preprocessing (`data.PREPROCESSING_VERSION`).
        score: Inception/MNIST score of the set, or None without logits.
        vol: mean variance of Laplacian.
    """

    FIELDS = ("mean", "covariance", "count", "activations", "network", "source", "fingerprint", "preprocessing", "score", "vol")

    def __init__(self, mean, covariance, count, activations, network, source, fingerprint="", preprocessing="", score=None, vol=None):
        self.mean, self.covariance, self.count = mean, covariance, int(count)
        self.activations, self.network, self.source = activations, network, source
        self.fingerprint, self.preprocessing = fingerprint, preprocessing
        self.score = None if score is None or (isinstance(score, float) and np.isnan(score)) else float(score)
        self.vol = None if vol is None or np.isnan(vol) else float(vol)
        # How long the classifier pass that computed them took (saved with them;
        # None when unknown): what the run's time estimate reads the classifier's speed from.
        self.seconds = None

    def save(self, path):
        """Writes the statistics to `path` (`.npz`) atomically."""
        if not path.endswith(".npz"):
            raise InputError(f"Statistics are saved as .npz (reused as --reference_images=PATH.npz); got {path!r}.")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        temporary = f"{path}.partial.npz"
        np.savez(
            temporary,
            version=STATISTICS_VERSION,
            **{name: getattr(self, name) for name in self.FIELDS if name not in ("score", "vol")},
            score=np.nan if self.score is None else self.score,
            vol=np.nan if self.vol is None else self.vol,
            seconds=np.nan if self.seconds is None else self.seconds,
        )
        os.replace(temporary, path)
        return path

    @classmethod
    def load(cls, path):
        """Reads statistics written by `save`.

        Raises:
            FileNotFoundError: no file.
            InputError: not a statistics file of this version.
        """
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No statistics file at {path!r}.")
        try:
            with np.load(path, allow_pickle=False) as stored:
                values = {name: stored[name] for name in stored.files}
        except (OSError, ValueError) as error:
            raise InputError(f"Cannot read statistics from {path!r}: {error}.") from None
        missing = [name for name in cls.FIELDS + ("version",) if name not in values]
        if missing or int(values["version"]) != STATISTICS_VERSION:
            raise InputError(
                f"{path!r} is not a kd_gan statistics file of version {STATISTICS_VERSION} "
                f"(missing {missing or 'nothing'}, version {values.get('version')}); recompute it with --save_stats."
            )
        strings = {name: str(values[name]) for name in ("network", "source", "fingerprint", "preprocessing")}
        statistics = cls(
            values["mean"], values["covariance"], int(values["count"]), values["activations"],
            score=float(values["score"]), vol=float(values["vol"]), **strings,
        )
        seconds = float(values["seconds"]) if "seconds" in values else np.nan  # Files written before it was kept.
        statistics.seconds = None if np.isnan(seconds) else seconds
        return statistics


def prefetched(iterable, depth=2):
    """`iterable`'s items, the next `depth` produced in a background thread.

    Overlaps making batches (a generator's forward pass, decoding files) with
    the classifier's pass on the previous one. An exception raised while
    producing is raised here, at the item it stopped on.
    """
    items = queue.Queue(maxsize=depth)
    finished = threading.Event()
    end = object()

    def produce():
        try:
            for item in iterable:
                while not finished.is_set():
                    try:
                        items.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if finished.is_set():
                    return
            items.put((end, None))
        except BaseException as error:  # Handed to the consumer, raised there.
            items.put((end, error))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item, error = items.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        finished.set()  # A consumer that stops early lets the producer go.


def run_classifier(classifier, batches, num_samples, description="images", keep=KEPT_ACTIVATIONS, seed=0):
    """Runs every batch through `classifier` with a progress bar; returns `ImageStatistics` fields.

    Returns:
        Dict with `mean`, `covariance`, `count`, `activations` (a seeded random
        sample of `keep` rows, all when fewer), `score` and `vol`.
    """
    interactive = sys.stdout.isatty()
    progress = keras.utils.Progbar(num_samples, unit_name=description, verbose=1 if interactive else 2)
    next_report = num_samples // 10  # In logs (no live bar): a line every 10%.
    kept_rows = np.ones(num_samples, bool)
    if num_samples > keep:
        kept_rows[:] = False
        kept_rows[np.random.default_rng([seed, num_samples]).choice(num_samples, keep, replace=False)] = True
    moments, kept, logits, sharpness, count = None, [], [], 0.0, 0
    for batch in prefetched(batches):
        batch_activations, batch_logits = classifier(batch)
        if moments is None:
            moments = metrics.Moments(batch_activations.shape[-1])
        moments.update(batch_activations)
        if count + len(batch) > num_samples:
            raise InputError(f"Expected {num_samples} {description}; the batches hold more.")
        kept.append(batch_activations[kept_rows[count : count + len(batch)]])
        if batch_logits is not None:
            logits.append(batch_logits)
        sharpness += metrics.variance_of_laplacian(batch) * len(batch)
        count += len(batch)
        progress.add(len(batch))
        if not interactive and count >= next_report and count < num_samples:
            logging.info("%s: %d of %d", description, count, num_samples)
            next_report += max(1, num_samples // 10)
    if count != num_samples:
        raise InputError(f"Expected {num_samples} {description}; the batches held {count}.")
    # Kept rows in a seeded random order: images often come sorted (folders by
    # class), and KID's blocks and precision/recall's equal-count prefix need
    # a random order.
    kept = np.concatenate(kept).astype(np.float32)
    kept = kept[np.random.default_rng([seed, num_samples, 1]).permutation(len(kept))]
    return {
        "mean": moments.mean,
        "covariance": moments.covariance,
        "count": count,
        "activations": kept,
        "score": metrics.inception_score(np.concatenate(logits)) if logits else None,
        "vol": sharpness / count,
    }


def _key(*parts):
    return hashlib.sha256(json.dumps([STATISTICS_VERSION, *parts]).encode()).hexdigest()[:16]


def _cached(path, compute):
    if os.path.isfile(path):
        return ImageStatistics.load(path)
    start = time.perf_counter()
    statistics = compute()
    statistics.seconds = time.perf_counter() - start  # Before `save`, which keeps it.
    statistics.save(path)
    logging.info("Statistics of %s cached at %s", statistics.source, path)
    return statistics


def real_batches(dataset, split, num_samples=None, batch_size=100, data_dir=None, cache_dir=None, seed=0, image_size=None):
    """Real images of a split in [-1, 1], in batches: all of them, or a seeded random subset of `num_samples`."""
    total = data.split_size(dataset, split, data_dir, cache_dir, image_size)
    if num_samples is not None and num_samples > total:
        raise InputError(f"{dataset} {split!r} has {total} images; asked for {num_samples}.")
    keep = None
    if num_samples is not None and num_samples < total:
        keep = np.zeros(total, bool)
        keep[np.random.default_rng([seed, total]).choice(total, num_samples, replace=False)] = True
    images = data.load_dataset(
        dataset, split, batch_size, data_dir=data_dir, shuffle=False, drop_remainder=False, cache_dir=cache_dir,
        image_size=image_size,
    )
    start = 0
    for batch in images:
        batch = batch.numpy()
        selected = batch if keep is None else batch[keep[start : start + len(batch)]]
        start += len(batch)
        if len(selected):
            yield selected


def dataset_statistics(classifier, dataset, split, reference_samples=None, data_dir=None, cache_dir=None, seed=0, image_size=None):
    """Statistics of a real split (all of it, or `reference_samples` seeded random images), cached.

    The cache file (`$KD_GAN_CACHE_DIR/stats/`) is keyed on the data's identity
    (source, version, size), the split, the preprocessing version, the
    network, the count and the seed: a change to any of them computes anew.
    """
    identity = data.dataset_identity(dataset, split, data_dir, cache_dir, image_size)
    count = reference_samples or data.split_size(dataset, split, data_dir, cache_dir, image_size)
    key = _key(identity, data.PREPROCESSING_VERSION, classifier.name, reference_samples, seed)
    label = "all" if reference_samples is None else str(reference_samples)
    path = os.path.join(data.cache_root(cache_dir), "stats", f"{dataset}-{split.replace('/', '_')}-{label}-{key}.npz")
    source = f"{dataset} {split} ({'all' if reference_samples is None else 'random'} {count:,} images)"

    def compute():
        logging.info("Computing the statistics of %s with %s (once; cached at %s)", source, classifier.name, path)
        batches = real_batches(dataset, split, reference_samples, data_dir=data_dir, cache_dir=cache_dir, seed=seed, image_size=image_size)
        fields = run_classifier(classifier, batches, count, "real images", seed=seed)
        return ImageStatistics(**fields, network=classifier.name, source=source, fingerprint=identity, preprocessing=data.PREPROCESSING_VERSION)

    return _cached(path, compute)


def folder_statistics(classifier, path, num_samples=None, seed=0, cache_dir=None, cache=True):
    """Statistics of the images of a folder or tar (all, or `num_samples` seeded random ones).

    Cached by content fingerprint when `cache`. Images are fed at their own
    size (the Inception's resize to 299 is the protocol); grey is tiled to RGB.
    """

    source_images = ImageSource(path)
    names = source_images.select(num_samples, seed)  # Checks the count before any work.
    # The content fingerprint keys the cache; uncached statistics skip reading every file twice.
    fingerprint = source_images.fingerprint() if cache else ""
    source = f"{os.path.abspath(path)} ({len(names):,} of {len(source_images):,} images)"

    def compute():
        logging.info("Computing the statistics of %s with %s", source, classifier.name)
        batches = source_images.batches(num_samples, seed)
        if getattr(classifier, "name", "").startswith(classifiers.MNIST_CLASSIFIER_VERSION):
            batches = (np.mean(batch, axis=-1, keepdims=True) for batch in batches)  # The MNIST network reads grey.
        fields = run_classifier(classifier, batches, len(names), "images", seed=seed)
        return ImageStatistics(**fields, network=classifier.name, source=source, fingerprint=fingerprint, preprocessing=data.PREPROCESSING_VERSION)

    if not cache:
        return compute()
    key = _key(fingerprint, data.PREPROCESSING_VERSION, classifier.name, num_samples, seed)
    return _cached(os.path.join(data.cache_root(cache_dir), "stats", f"folder-{key}.npz"), compute)


def generator_batches(generator, num_samples, batch_size=100, seed=0):
    """Batches of generated images for `num_samples` z drawn from (seed)."""

    latent_dim = latent_size(generator)
    for start in range(0, num_samples, batch_size):
        count = min(batch_size, num_samples - start)
        z = tf.random.stateless_normal((count, latent_dim), seed=(seed, start))
        yield np.asarray(generate(generator, z))


def generator_statistics(generator, classifier, num_samples, seed=0, description="samples"):
    """Statistics of `num_samples` images of a generator (z seeded by `seed`)."""
    fields = run_classifier(classifier, generator_batches(generator, num_samples, seed=seed), num_samples, description, seed=seed)
    return ImageStatistics(**fields, network=classifier.name, source=f"{getattr(generator, 'name', 'generator')} (seed {seed})")


def quality(candidate, reference=None, score_name="inception_score"):
    """The metric record of `candidate` statistics against `reference` statistics.

    Record: `num_samples`, `classifier`, `fid`, `kid`, `kid_std`, `precision`,
    `recall` (None without a reference), the score (None without logits, with a
    note), `vol`, and the reference's source and count.

    Raises:
        InputError: the two were computed with different networks.
    """
    record = {"num_samples": candidate.count, "classifier": candidate.network}
    if reference is not None:
        if reference.network != candidate.network:
            raise InputError(
                f"Statistics from different networks cannot be compared: {candidate.network} "
                f"({candidate.source}) against {reference.network} ({reference.source})."
            )
        record["fid"] = metrics.frechet_distance_from_moments(reference.mean, reference.covariance, candidate.mean, candidate.covariance)
        kid, kid_std = metrics.kernel_inception_distance(reference.activations, candidate.activations)
        # Too few rows for the blocks (< 2 per block) give NaN, one block no
        # spread: null then, never NaN in JSON.
        record["kid"], record["kid_std"] = _finite(kid), _finite(kid_std)
        # Equal counts: the kept rows are in random order, so a prefix is a random subset.
        equal = min(len(reference.activations), len(candidate.activations))
        record["precision"] = record["recall"] = None  # Undefined with k or fewer rows.
        if equal > PRECISION_RECALL_K:
            record["precision"], record["recall"] = metrics.precision_recall(
                reference.activations[:equal], candidate.activations[:equal], k=PRECISION_RECALL_K
            )
        record.update(reference=reference.source, reference_count=reference.count)
    else:
        record.update(fid=0.0, kid=None, kid_std=None, precision=None, recall=None)  # The reference itself.
    record["vol"] = candidate.vol
    record[score_name] = candidate.score
    if candidate.score is None:
        record[f"{score_name}_note"] = (
            f"not computed: the classifier {candidate.network} has no logits (a pool_3-only FID network); "
            "the Inception Score needs the full Inception's logits (TF-Hub tfgan/eval/inception/1)"
        )
    return record


def _finite(value):
    return float(value) if np.isfinite(value) else None


def evaluate_generator(generator, classifier, reference, num_samples, seed=0):
    """The metric record of `num_samples` images of a generator against reference statistics."""
    candidate = generator_statistics(generator, classifier, num_samples, seed)
    return quality(candidate, reference, classifier.score_name)


def latent_fidelity(
    student, teacher, num_samples=1000, interpolation_pairs=50, interpolation_steps=8, seed=1, z=None
):
    """How closely the student reproduces the teacher on held-out z.

    Returns MSE and PSNR over `num_samples` z (seeded apart from training's
    draws, or the given `z`), and along `interpolation_pairs` straight lines
    between latent pairs at `interpolation_steps` points each.
    """

    latent_dim = latent_size(student)
    if z is None:
        # The same seed gives both generators the same z, batch by batch.
        pairs = zip(generator_batches(student, num_samples, seed=seed), generator_batches(teacher, num_samples, seed=seed))
    else:
        num_samples = len(z)
        batches = [z[start : start + 100] for start in range(0, num_samples, 100)]
        pairs = ((np.asarray(generate(student, b)), np.asarray(generate(teacher, b))) for b in batches)
    squared_errors = [
        np.mean((student_images - teacher_images) ** 2, axis=(1, 2, 3)) for student_images, teacher_images in pairs
    ]
    mse = float(np.mean(np.concatenate(squared_errors)))
    ends = tf.random.stateless_normal((2, interpolation_pairs, latent_dim), seed=(seed, -1))
    weights = tf.reshape(tf.linspace(0.0, 1.0, interpolation_steps), (-1, 1, 1))
    path = tf.reshape((1 - weights) * ends[0] + weights * ends[1], (-1, latent_dim))
    path_mse = float(np.mean((np.asarray(generate(student, path)) - np.asarray(generate(teacher, path))) ** 2))
    return {
        "num_samples": num_samples,
        "mse": mse,
        "psnr_db": metrics.psnr(mse),
        "interpolation": {"pairs": interpolation_pairs, "steps": interpolation_steps, "mse": path_mse, "psnr_db": metrics.psnr(path_mse)},
    }
