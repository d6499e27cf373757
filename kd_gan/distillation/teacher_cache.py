"""A cache of a frozen teacher's outputs: (z, teacher(z)) pairs on disk.

For the MSE scheme the teacher's forward pass is nearly the whole cost of a
distillation step (a d=128 MNIST teacher against a d=1 student), and one
frozen teacher serves every student of a sweep. `TeacherCache` draws z,
runs the teacher once per pair and stores the pairs; students then train on
them (`Distiller` takes batches `{"z": ..., "teacher_images": ...}`, and for
the joint loss also `"image"`: the real batch).

The trade-off: a pool of N pairs shows the student N latent vectors instead
of a fresh draw every step. `refresh_epochs` replaces the pool by a fresh
one (new z) every so many epochs: more teacher passes, more of the latent
space. A pool is filled once and reused by every student and every rerun.

Files, under `directory`:

* `cache.json`: what the pairs depend on (teacher identity, latent size,
  image shape, seed, pool size, storage, version); a change deletes the
  pairs and fills them anew.
* `pool_<P>/shard_<S>.npz`: `z` (float32) and `images` (uint8: pixels in
  [-1, 1] stored as round((x + 1) * 127.5), at most 1/255 off; or float16).
  Each shard is written to a temporary name and renamed when complete, and
  its z are seeded by (seed, pool, shard): an interrupted fill resumes with
  the same pairs it would have written.
* `fill.json`: shards, pairs and seconds spent filling, summed over fills.

NumPy `.npz` shards rather than `tf.data.Dataset.save`: a shard is written
atomically and resumed by name, and a user can read it anywhere.
"""

import glob
import hashlib
import json
import math
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kd_gan.data.pixels import from_uint8, to_uint8
from kd_gan.models import any_generator
from kd_gan.errors import InputError, check_integer
from kd_gan._io import file_digest
from kd_gan._io import folder_lock, read_json, write_json, write_npz

CACHE_VERSION = 1
STORAGES = ("uint8", "float16")
DEFAULT_SHARD_SIZE = 4096
# Seed stream of the cache's z, apart from training's (step >= 0) and evaluation's draws.
_SEED_STREAM = 3 * 2**20


def teacher_identity(teacher):
    """A fingerprint of the teacher's function: file digest, or class, config and weights.

    A `.tflite` teacher (`export.TFLiteGenerator`) and a SavedModel behind a
    `keras.layers.TFSMLayer` are fingerprinted by their files (wherever they
    sit); any other Keras model or layer by its class, its config without
    names and dtype policies (at any depth), and its weights as float32 (so a
    model's mixed-precision copy has the model's identity).
    """
    path = getattr(teacher, "path", None)
    if isinstance(path, str) and os.path.isfile(path):
        return "file-" + file_digest(path)
    saved_model = getattr(teacher, "filepath", None)
    if isinstance(teacher, keras.layers.TFSMLayer) and isinstance(saved_model, str) and os.path.isdir(saved_model):
        paths = [os.path.join(saved_model, name) for name in ("saved_model.pb", "variables") if os.path.exists(os.path.join(saved_model, name))]
        return "file-" + file_digest(*paths)
    if isinstance(teacher, keras.layers.Layer):
        digest = hashlib.sha256(type(teacher).__name__.encode())
        try:
            config = _without_names(teacher.get_config())
        except NotImplementedError:
            config = {}
        digest.update(json.dumps(config, sort_keys=True, default=str).encode())
        for weight in teacher.weights:
            digest.update(np.ascontiguousarray(np.asarray(weight, dtype=np.float32)).tobytes())
        return "weights-" + digest.hexdigest()[:16]
    raise InputError(
        f"Cannot fingerprint a teacher of type {type(teacher).__name__}: pass identity= (e.g. the digest "
        "of the file it comes from) so that a changed teacher invalidates the cache."
    )


def _without_names(config):
    """A config without the entries that do not change the function: names, dtype policies, trainable."""
    if isinstance(config, dict):
        return {k: _without_names(v) for k, v in config.items() if k not in ("name", "dtype", "trainable")}
    if isinstance(config, (list, tuple)):
        return [_without_names(v) for v in config]
    return config


def encode_images(images, storage):
    """Images in [-1, 1] as stored: uint8 levels or float16."""
    images = np.asarray(images, dtype=np.float32)
    if storage == "uint8":
        return to_uint8(images)
    return images.astype(np.float16)


def decode_images(stored):
    """Inverse of `encode_images` (in TF, inside the input pipeline): float32 in [-1, 1]."""
    if stored.dtype == tf.uint8:
        return from_uint8(stored)
    return tf.cast(stored, tf.float32)


class TeacherCache:
    """(z, teacher(z)) pairs of one teacher, filled once, read by every student.

    Args:
        directory: folder of the cache (e.g. `<run>/teacher_cache`).
        teacher: the frozen generator (Keras model or layer, SavedModel layer,
            `.tflite` generator, or a callable with `identity` given).
        size: pairs per pool.
        latent_dim: size of z; default the teacher's.
        seed: seed of the z draws.
        storage: "uint8" (1 byte per pixel value, at most 1/255 off) or
            "float16".
        shard_size: pairs per file.
        identity: the teacher's fingerprint; default `teacher_identity(teacher)`.

    Example:

    ```python
    cache = TeacherCache("runs/x/teacher_cache", teacher, size=60_000)
    cache.fill(pools=1)
    distiller = Distiller(teacher, student, loss="mse")
    distiller.compile()
    distiller.fit(cache.dataset(batch_size=64), epochs=5, steps_per_epoch=930)
    ```
    """

    def __init__(
        self, directory, teacher, size, latent_dim=None, seed=0, storage="uint8",
        shard_size=DEFAULT_SHARD_SIZE, identity=None,
    ):
        _check_count("size", size, 1)  # Pairs per pool.
        if storage not in STORAGES:
            raise InputError(f"Unknown cache storage {storage!r}; choose one of {STORAGES}.")
        _check_count("shard_size", shard_size, 1)
        self.directory = os.fspath(directory)
        self.teacher = teacher
        self.size = int(size)
        self.latent_dim = int(latent_dim) if latent_dim is not None else any_generator.latent_size(teacher)
        self.seed = int(seed)
        self.storage = storage
        self.shard_size = min(int(shard_size), self.size)
        probe = np.asarray(any_generator.generate(teacher, tf.zeros((1, self.latent_dim))))
        self.image_shape = tuple(int(v) for v in probe.shape[1:])
        self.metadata = {
            "version": CACHE_VERSION,
            "teacher": identity or teacher_identity(teacher),
            "latent_dim": self.latent_dim,
            "image_shape": list(self.image_shape),
            "seed": self.seed,
            "size": self.size,
            "storage": self.storage,
            "shard_size": self.shard_size,
        }
        with self._lock():  # Not while another process fills it: its temporary files would go.
            self._open()

    @property
    def num_shards(self):
        return math.ceil(self.size / self.shard_size)

    def _open(self):
        """Keeps pairs made under the same metadata; deletes any others (and
        pairs whose metadata is missing), and temporary files of an interrupted fill."""
        path = os.path.join(self.directory, "cache.json")
        previous = read_json(path) if os.path.isfile(path) else None
        for temporary in glob.glob(os.path.join(self.directory, "pool_*", "*.tmp*")):
            os.remove(temporary)
        if previous == self.metadata:
            return
        pools = glob.glob(os.path.join(self.directory, "pool_*"))
        if pools:
            changed = sorted(key for key in self.metadata if (previous or {}).get(key) != self.metadata[key])
            logging.warning("Teacher cache %s was made with another %s: filling it anew.", self.directory, changed)
            for pool in pools:
                shutil.rmtree(pool)
        if os.path.isfile(fill_log_path(self.directory)):
            os.remove(fill_log_path(self.directory))
        os.makedirs(self.directory, exist_ok=True)
        write_json(path, self.metadata)

    def shard_path(self, pool, shard):
        return os.path.join(self.directory, f"pool_{pool}", f"shard_{shard:05d}.npz")

    def shard_count(self, shard):
        """Pairs in `shard` (the last one may be short)."""
        return min(self.shard_size, self.size - shard * self.shard_size)

    def shard_latents(self, pool, shard):
        """The z of one shard, seeded by (seed, pool, shard): the same in every fill."""
        count = self.shard_count(shard)
        seed = tf.constant([self.seed, _SEED_STREAM + pool * 2**20 + shard], tf.int64)
        return tf.random.stateless_normal((count, self.latent_dim), seed=seed).numpy()

    def missing_shards(self, pools):
        return [(p, s) for p in range(pools) for s in range(self.num_shards) if not os.path.isfile(self.shard_path(p, s))]

    def fill(self, pools=1, batch_size=256, verbose=1):
        """Writes the shards of pools 0 .. `pools` - 1 that are not on disk yet.

        One process fills a cache at a time: it holds the folder's lock
        (`<directory>/.lock`) while it writes, and a second filler stops at
        once naming the first. `fill.json` sums what every fill cost.

        Returns:
            Number of shards written (0 when the cache was complete).

        Raises:
            InputError: another process is filling the cache.
        """
        _check_count("pools", pools, 1)
        _check_count("batch_size", batch_size, 1)
        if not self.missing_shards(pools):
            return 0
        with self._lock():
            return self._fill(self.missing_shards(pools), pools, batch_size, verbose)

    def _lock(self):
        return folder_lock(self.directory, "teacher cache", "wait for it to finish or stop it")

    def _fill(self, missing, pools, batch_size, verbose):
        start = time.time()
        logging.info(
            "Teacher cache %s: %d of %d shards to write (%d pools of %d pairs, %s).",
            self.directory, len(missing), pools * self.num_shards, pools, self.size, self.storage,
        )
        progress = keras.utils.Progbar(sum(self.shard_count(s) for _, s in missing), verbose=verbose, unit_name="pair")
        log = read_fill_log(self.directory) or {"shards": 0, "pairs": 0, "seconds": 0.0}
        teacher = any_generator.inference_function(self.teacher)
        for pool, shard in missing:
            z = self.shard_latents(pool, shard)
            images = np.concatenate([np.asarray(teacher(z[i : i + batch_size])) for i in range(0, len(z), batch_size)])
            path = self.shard_path(pool, shard)
            write_npz(path, z=z.astype(np.float32), images=encode_images(images, self.storage))  # Whole, or not at all.
            # Counted shard by shard: a fill that is killed keeps what it wrote in the log.
            now = time.time()
            log = {"shards": log["shards"] + 1, "pairs": log["pairs"] + len(z), "seconds": round(log["seconds"] + now - start, 2)}
            write_json(fill_log_path(self.directory), log)
            start = now
            progress.add(len(z))
        return len(missing)

    def dataset(self, batch_size, pools=1, steps_per_pool=None, skip_batches=0):
        """Endless batches `{"z", "teacher_images"}` for `Distiller.fit`.

        Args:
            batch_size: pairs per batch.
            pools: pools to read, filled beforehand (`fill(pools)`).
            steps_per_pool: batches drawn from one pool before moving to the
                next (after the last, back to the first); None with one pool.
            skip_batches: batches already trained: a resumed run continues with
                the batches it would have seen (they are read and skipped).
        """
        _check_count("batch_size", batch_size, 1)
        _check_count("pools", pools, 1)
        _check_count("skip_batches", skip_batches, 0)
        missing = self.missing_shards(pools)
        if missing:
            raise InputError(
                f"The teacher cache {self.directory} lacks {len(missing)} shards of its {pools} pools "
                f"(first: pool {missing[0][0]}, shard {missing[0][1]}): call fill(pools={pools}) first."
            )
        if pools > 1 and not steps_per_pool:
            raise InputError(f"Reading {pools} pools needs steps_per_pool (batches per pool). Received: {steps_per_pool!r}")
        if pools == 1:
            return _skip_by_reading(self._batches(0, batch_size), skip_batches).prefetch(2)
        # steps_per_pool batches of each pool in turn, then again; each visit of
        # a pool (its `visit`) reads it in new orders.
        visits = tf.data.Dataset.range(2**62).flat_map(
            lambda index: self._batches(index % pools, batch_size, visit=index // pools).take(steps_per_pool)
        )
        return _skip_by_reading(visits, skip_batches).prefetch(2)

    def _batches(self, pool, batch_size, visit=0):
        """The pool's pairs, endlessly, in a new order every pass, batched.

        Each pass permutes the shards and the pairs inside each shard with
        stateless draws keyed on (seed, pool, visit, pass, shard), and reads four
        shards round-robin: the same order in every process and every rerun
        (a `shuffle` that reshuffles each pass keeps hidden state, which two
        pipelines over the same seeds can share).
        """
        pool = tf.cast(pool, tf.int64)  # A tensor inside `dataset`'s rotation.
        shard_names = tf.constant([os.path.basename(self.shard_path(0, shard)) for shard in range(self.num_shards)])
        folder = tf.strings.join([os.path.join(self.directory, "pool_"), tf.strings.as_string(pool)])
        paths = tf.strings.join([folder, shard_names], separator=os.sep)
        stored_dtype = tf.uint8 if self.storage == "uint8" else tf.float16
        base = tf.stack([tf.constant(self.seed, tf.int64), pool * 2**32 + tf.cast(visit, tf.int64)])

        def read(path):
            with np.load(path.decode()) as shard:
                return shard["z"], shard["images"]

        def shard_pairs(path, shard_seed):
            z, stored = tf.numpy_function(read, [path], (tf.float32, stored_dtype), stateful=False)
            z.set_shape((None, self.latent_dim))
            stored.set_shape((None,) + self.image_shape)
            order = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(z)[0]), seed=shard_seed)
            return tf.data.Dataset.from_tensor_slices((tf.gather(z, order), tf.gather(stored, order)))

        def one_pass(pass_index):
            pass_seed = tf.random.experimental.stateless_fold_in(base, pass_index)
            shard_order = tf.random.experimental.stateless_shuffle(tf.range(self.num_shards), seed=pass_seed)
            shard_seeds = tf.map_fn(
                lambda shard: tf.random.experimental.stateless_fold_in(pass_seed, tf.cast(shard, tf.int64)),
                shard_order, fn_output_signature=tf.TensorSpec([2], pass_seed.dtype),
            )
            return tf.data.Dataset.from_tensor_slices((tf.gather(paths, shard_order), shard_seeds)).interleave(
                shard_pairs, cycle_length=min(4, self.num_shards)
            )

        return (
            tf.data.Dataset.range(2**62)
            .flat_map(one_pass)
            .batch(batch_size, drop_remainder=True)
            .map(lambda z, stored: {"z": z, "teacher_images": decode_images(stored)})
        )


def fill_log_path(directory):
    return os.path.join(directory, "fill.json")


def read_fill_log(directory):
    """What filling the cache in `directory` cost, all fills summed: `{"shards",
    "pairs", "seconds"}`; None before the first fill."""
    path = fill_log_path(directory)
    return read_json(path) if os.path.isfile(path) else None


def _check_count(name, value, minimum):
    check_integer(name, value, minimum)


def _skip_by_reading(dataset, count):
    """`dataset` without its first `count` elements, which are produced and dropped.

    Not `Dataset.skip`, which may jump over a repetition without producing
    it: reading keeps the resumed stream identical to the uninterrupted one
    whatever the pipeline holds.
    """
    if not count:
        return dataset
    return dataset.enumerate().filter(lambda index, _: index >= count).map(lambda _, element: element)
