"""A classifier's pass over images and what it leaves: `ImageStatistics`
(mean, covariance and kept activations, stored as `.npz`), computed by
`run_classifier` on batches produced in a background thread (`prefetched`)."""

import os
import queue
import sys
import threading
import time
import zipfile

import keras
import numpy as np
from absl import logging

from kd_gan._io import write_npz
from kd_gan.errors import InputError
from kd_gan.evaluation import formulas

STATISTICS_VERSION = 1
KEPT_ACTIVATIONS = 10_000  # Rows kept per set for KID and precision/recall.
PROGRESS_EVERY_S = 300.0  # A resumable pass saves its progress this often.
PROGRESS_VERSION = 1
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

    def __init__(
        self, mean, covariance, count, activations, network, source, fingerprint="", preprocessing="", score=None, vol=None, seconds=None,
    ):
        self.mean, self.covariance, self.count = mean, covariance, int(count)
        self.activations, self.network, self.source = activations, network, source
        self.fingerprint, self.preprocessing = fingerprint, preprocessing
        self.score = None if score is None or (isinstance(score, float) and np.isnan(score)) else float(score)
        self.vol = None if vol is None or np.isnan(vol) else float(vol)
        # How long the classifier pass that computed them took (saved with them;
        # None when unknown): what the run's time estimate reads the classifier's speed from.
        self.seconds = seconds
        self._radii = {}  # (rows, k) -> `formulas.manifold_radii` of the first `rows` kept activations.

    def manifold_radii(self, rows, k):
        """Radii of the manifold of the first `rows` kept activations (k-th neighbour), computed once:
        a run compares every model against the same reference rows. Kept per
        `(rows, k)`: statistics are not changed once made (a new set is a new object)."""
        if (rows, k) not in self._radii:
            self._radii[(rows, k)] = formulas.manifold_radii(self.activations[:rows], k)
        return self._radii[(rows, k)]

    def save(self, path):
        """Writes the statistics to `path` (`.npz`) atomically."""
        if not path.endswith(".npz"):
            raise InputError(f"Statistics are saved as .npz (reused as --reference_images=PATH.npz); got {path!r}.")
        return write_npz(
            path,
            version=STATISTICS_VERSION,
            **{name: getattr(self, name) for name in self.FIELDS if name not in ("score", "vol")},
            score=np.nan if self.score is None else self.score,
            vol=np.nan if self.vol is None else self.vol,
            seconds=np.nan if self.seconds is None else self.seconds,
        )

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
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # Truncated, or not an .npz.
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


def _save_progress(path, moments, kept, logits, sharpness, seconds, check):
    """The pass's state so far, written atomically to `path` (`.npz`)."""
    write_npz(
        path, version=PROGRESS_VERSION, check=np.asarray(check, np.int64),
        kept=np.concatenate(kept) if kept else np.zeros((0, 0), np.float32),
        logits=np.concatenate(logits) if logits else np.zeros((0, 0), np.float32),
        sharpness=sharpness, seconds=seconds, **(moments.state() if moments else {"count": np.int64(0)}),
    )


def _load_progress(path, check):
    """`(moments, kept, logits, sharpness, seconds)` saved by `_save_progress`; None
    when there is none, or (with a warning, the file removed) one of another pass or unreadable."""
    if not path or not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            state = {name: stored[name] for name in stored.files}
        if int(state["version"]) != PROGRESS_VERSION or state["check"].tolist() != list(check):
            raise ValueError("it belongs to another pass (count, kept rows or seed differ)")
        moments = None
        if int(state["count"]):
            moments = formulas.Moments.from_state(*(state[name] for name in ("count", "sum", "outer", "shift")))
        kept = [state["kept"]] if state["kept"].size else []
        logits = [state["logits"]] if state["logits"].size else []
        return moments, kept, logits, float(state["sharpness"]), float(state["seconds"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        logging.warning("The saved progress %s cannot be resumed (%s): discarded; the pass starts again.", path, error)
        os.remove(path)
        return None


def run_classifier(classifier, batches, num_samples, description="images", keep=KEPT_ACTIVATIONS, seed=0, progress_path=None):
    """Runs every batch through `classifier` with a progress bar; returns `ImageStatistics` fields.

    With `progress_path`, the pass saves its state there every
    `PROGRESS_EVERY_S` seconds and a pass stopped before its end resumes from
    it: the batches it covered are read again and skipped, not classified (the
    batches must come in the same order and sizes, as a split or folder's do).
    The caller removes the file once the statistics are stored.

    Returns:
        Dict with `mean`, `covariance`, `count`, `activations` (a seeded random
        sample of `keep` rows, all when fewer), `score`, `vol` and `seconds`
        (the pass's, over every invocation of a resumed one).
    """
    interactive = sys.stdout.isatty()
    progress = keras.utils.Progbar(num_samples, unit_name=description, verbose=1 if interactive else 2)
    next_report = num_samples // 10  # In logs (no live bar): a line every 10%.
    kept_rows = np.ones(num_samples, bool)
    if num_samples > keep:
        kept_rows[:] = False
        kept_rows[np.random.default_rng([seed, num_samples]).choice(num_samples, keep, replace=False)] = True
    check = (num_samples, keep, seed)
    moments, kept, logits, sharpness, count, seconds = None, [], [], 0.0, 0, 0.0
    resumed = _load_progress(progress_path, check)
    if resumed:
        moments, kept, logits, sharpness, seconds = resumed
        count = moments.count if moments else 0
        logging.info("Resuming the pass over %s after %d of %d (saved in %s)", description, count, num_samples, progress_path)
        progress.update(count)
    skip, started, saved = count, time.perf_counter(), time.perf_counter()
    for batch in prefetched(batches):
        if skip:  # Covered by the saved progress.
            if len(batch) > skip:
                raise InputError(f"The batches of {description} changed since {progress_path} was saved; delete it to start again.")
            skip -= len(batch)
            continue
        batch_activations, batch_logits = classifier(batch)
        if moments is None:
            moments = formulas.Moments(batch_activations.shape[-1])
        moments.update(batch_activations)
        if count + len(batch) > num_samples:
            raise InputError(f"Expected {num_samples} {description}; the batches hold more.")
        kept.append(batch_activations[kept_rows[count : count + len(batch)]])
        if batch_logits is not None:
            logits.append(batch_logits)
        sharpness += formulas.variance_of_laplacian(batch) * len(batch)
        count += len(batch)
        progress.add(len(batch))
        if not interactive and count >= next_report and count < num_samples:
            logging.info("%s: %d of %d", description, count, num_samples)
            next_report += max(1, num_samples // 10)
        if progress_path and count < num_samples and time.perf_counter() - saved >= PROGRESS_EVERY_S:
            _save_progress(progress_path, moments, kept, logits, sharpness, seconds + time.perf_counter() - started, check)
            saved = time.perf_counter()
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
        "score": formulas.inception_score(np.concatenate(logits)) if logits else None,
        "vol": sharpness / count,
        "seconds": seconds + time.perf_counter() - started,
    }
