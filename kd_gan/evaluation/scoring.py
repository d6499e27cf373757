"""Scoring plumbing: the statistics of data sets, folders and generators
(`statistics.ImageStatistics`, cached as `.npz`), and the metric records made from them.

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

import numpy as np
import tensorflow as tf
from absl import logging

from kd_gan.evaluation import classifiers
from kd_gan.data import loading as data
from kd_gan.evaluation import formulas
from kd_gan.models.any_generator import generate, inference_function, latent_size
from kd_gan.data.image_folders import ImageSource
from kd_gan.errors import InputError
from kd_gan.evaluation.statistics import (  # noqa: F401 (STATISTICS_VERSION, ImageStatistics re-exported)
    PRECISION_RECALL_K,
    STATISTICS_VERSION,
    ImageStatistics,
    run_classifier,
)

# Real images the FID is measured against: MNIST's test split; CIFAR-10 and
# CelebA train (the shared local files hold no other split of them).
REFERENCE_SPLITS = {"mnist": "test", "cifar10": "train", "celeb_a": "train", "images": "train"}
def _key(*parts):
    return hashlib.sha256(json.dumps([STATISTICS_VERSION, *parts]).encode()).hexdigest()[:16]


def _cached(path, compute):
    """The statistics cached at `path`, or `compute()`'s, cached there (also in
    place of a cached file that cannot be read, with a warning)."""
    if os.path.isfile(path):
        try:
            return ImageStatistics.load(path)
        except InputError as error:
            logging.warning("%s Computing them again.", error)
    # A pass stopped before its end resumes from its saved progress, removed once the statistics are stored.
    progress = f"{path}.progress.npz"
    statistics = compute(progress)  # Timed by its classifier pass (`run_classifier`), kept by `save`.
    statistics.save(path)
    if os.path.isfile(progress):
        os.remove(progress)
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

    def compute(progress_path=None):
        logging.info("Computing the statistics of %s with %s (once; cached at %s)", source, classifier.name, path)
        batches = real_batches(dataset, split, reference_samples, data_dir=data_dir, cache_dir=cache_dir, seed=seed, image_size=image_size)
        fields = run_classifier(classifier, batches, count, "real images", seed=seed, progress_path=progress_path)
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

    def compute(progress_path=None):
        logging.info("Computing the statistics of %s with %s", source, classifier.name)
        batches = source_images.batches(num_samples, seed)
        if getattr(classifier, "name", "").startswith(classifiers.MNIST_CLASSIFIER_VERSION):
            batches = (np.mean(batch, axis=-1, keepdims=True) for batch in batches)  # The MNIST network reads grey.
        fields = run_classifier(classifier, batches, len(names), "images", seed=seed, progress_path=progress_path)
        return ImageStatistics(**fields, network=classifier.name, source=source, fingerprint=fingerprint, preprocessing=data.PREPROCESSING_VERSION)

    if not cache:
        return compute()
    key = _key(fingerprint, data.PREPROCESSING_VERSION, classifier.name, num_samples, seed)
    return _cached(os.path.join(data.cache_root(cache_dir), "stats", f"folder-{key}.npz"), compute)


def generator_batches(generator, num_samples, batch_size=100, seed=0):
    """Batches of generated images for `num_samples` z drawn from (seed)."""

    latent_dim = latent_size(generator)
    images = inference_function(generator)
    for start in range(0, num_samples, batch_size):
        count = min(batch_size, num_samples - start)
        z = tf.random.stateless_normal((count, latent_dim), seed=(seed, start))
        yield np.asarray(images(z))


def generator_statistics(generator, classifier, num_samples, seed=0, description="samples"):
    """Statistics of `num_samples` images of a generator (z seeded by `seed`)."""
    fields = run_classifier(classifier, generator_batches(generator, num_samples, seed=seed), num_samples, description, seed=seed)
    return ImageStatistics(**fields, network=classifier.name, source=f"{getattr(generator, 'name', 'generator')} (seed {seed})")


def quality(candidate, reference=None, score_name="inception_score"):
    """The metric record of `candidate` statistics against `reference` statistics.

    Record: `num_samples`, `classifier`, `fid`, `kid`, `kid_std`, `precision`,
    `recall` (None without a reference), the score (None without logits, with a
    note), `vol`, the reference's source and count, and `caveats` (logged as
    warnings) when the counts make the numbers unreliable (`caveats`).

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
        record["fid"] = formulas.frechet_distance_from_moments(reference.mean, reference.covariance, candidate.mean, candidate.covariance)
        kid, kid_std = formulas.kernel_inception_distance(reference.activations, candidate.activations)
        # Too few rows for the blocks (< 2 per block) give NaN, one block no
        # spread: null then, never NaN in JSON.
        record["kid"], record["kid_std"] = _finite(kid), _finite(kid_std)
        # Equal counts: the kept rows are in random order, so a prefix is a random subset.
        equal = min(len(reference.activations), len(candidate.activations))
        record["precision"] = record["recall"] = None  # Undefined with k or fewer rows.
        if equal > PRECISION_RECALL_K:
            record["precision"], record["recall"] = formulas.precision_recall(
                reference.activations[:equal], candidate.activations[:equal], k=PRECISION_RECALL_K,
                reference_radii=reference.manifold_radii(equal, PRECISION_RECALL_K),
            )
        record.update(reference=reference.source, reference_count=reference.count)
        notes = caveats(candidate, reference, record["kid"])
        if notes:
            record["caveats"] = notes
            for note in notes:
                logging.warning("%s", note)
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


def caveats(candidate, reference, kid=None):
    """What makes a comparison of `candidate` with `reference` unreliable, in words ([] when nothing)."""
    features = int(np.shape(candidate.mean)[0])
    notes = [
        f"FID from {stats.count:,} {label} images, not more than the network's {features:,} features: their "
        f"covariance is singular and the FID is biased high and unstable; use well over {features:,} "
        "(10,000 is the standard)."
        for label, stats in (("generated", candidate), ("reference", reference))
        if stats.count <= features
    ]
    if kid is not None and kid < 0:
        notes.append(
            f"KID {kid:.4g} < 0: the unbiased estimate fell below zero by chance ({candidate.count:,} against "
            f"{reference.count:,} images); the sets are not told apart at this count."
        )
    return notes


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
        "psnr_db": formulas.psnr(mse),
        "interpolation": {"pairs": interpolation_pairs, "steps": interpolation_steps, "mse": path_mse, "psnr_db": formulas.psnr(path_mse)},
    }
