"""Local files -> a tfds data dir, once: the original files of the named data sets,
or a user's folder or tar of images.

Each split is read in full and stored in one seeded random order (original
files are often sorted: CIFAR-10's archive by class), so everything after
loading is the same tfds pipeline online and offline, and any slice or "first
N" of a split mixes every class. Conversions live under the cache folder
(`cache_dir`, `KD_GAN_CACHE_DIR`, default `~/.cache/kd_gan`), named by a
digest of their source files' bytes and of the conversion's version.
"""

import contextlib
import gzip
import hashlib
import io
import logging as std_logging
import os
import shutil
import tarfile
import time
import zlib

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from kd_gan.errors import InputError
from kd_gan._io import file_digest, folder_lock
from kd_gan.data.image_folders import ImageSource

IMAGES = "images"  # The data set name of a user's folder or tar of images.
# Original files accepted under `data_dir`, per data set: {split: [relative paths]}.
LOCAL_FILES = {
    "mnist": {
        "train": ["mnist/train-images-idx3-ubyte.gz", "mnist/train-labels-idx1-ubyte.gz"],
        "test": ["mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"],
    },
    "cifar10": {"train": ["cifar10/cifar10-train-png.tar.gz"]},
    "celeb_a": {"train": ["celeba/celeba-aligned-half-10k.tar.gz"]},
}
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
# 1.1.0: examples are shuffled once (seeded) at conversion; 1.0.0 kept the files'
# order, which is sorted by class for CIFAR-10 (all airplanes first).
LOCAL_VERSION = "1.1.0"
CONVERSION_SEED = 0

def cache_root(cache_dir=None):
    """`cache_dir`, else `$KD_GAN_CACHE_DIR`, else `~/.cache/kd_gan`."""
    return cache_dir or os.environ.get("KD_GAN_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "kd_gan"
    )


_INCOMPLETE = "incomplete."  # The prefix of tfds' folder for a version being written.


def prepared_dir(data_dir, name):
    """`<data_dir>/<name>/<version>` holding dataset_info.json (newest version), or None."""
    root = os.path.join(data_dir, name)
    if not os.path.isdir(root):
        return None
    versions = [  # tfds writes a version in an `incomplete.*` folder, then renames it.
        v for v in os.listdir(root)
        if not v.startswith(_INCOMPLETE) and os.path.isfile(os.path.join(root, v, "dataset_info.json"))
    ]
    if not versions:
        return None
    newest = max(versions, key=lambda v: tuple(int(p) if p.isdigit() else 0 for p in v.split(".")))
    return os.path.join(root, newest)


def _read_idx(path):
    """An IDX array (big-endian header: magic with the rank, then the dims)."""
    with gzip.open(path, "rb") as file:
        data = file.read()
    rank = data[3]
    dims = np.frombuffer(data, ">u4", rank, 4)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * rank).reshape(dims)


@tf.function(reduce_retracing=True)
def _encode_pngs(images):
    return tf.map_fn(tf.io.encode_png, images, fn_output_signature=tf.string)


def _png_bytes(images, block=10_000):
    """PNG files of uint8 images `[N, H, W, C]`, encoded in a graph a block at a time
    (tfds encodes an array with one eager op per image: ~4x slower for MNIST's 70,000)."""
    for start in range(0, len(images), block):
        yield from _encode_pngs(images[start : start + block]).numpy()


def _mnist_examples(data_dir, split):
    images_path, labels_path = (os.path.join(data_dir, p) for p in LOCAL_FILES["mnist"][split])
    images, labels = _read_idx(images_path), _read_idx(labels_path)
    # tfds stores PNG bytes as given, unchecked: the shapes are checked here.
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise ValueError(
            f"{images_path} holds images of shape {images.shape} and {labels_path} labels of shape "
            f"{labels.shape}; MNIST's are (N, 28, 28) and (N,)"
        )
    # The lossless PNG tfds' Image feature would write: the same pixels when read back.
    for index, (png, label) in enumerate(zip(_png_bytes(images[..., None]), labels)):
        yield index, {"image": png, "label": int(label)}


def _tar_members(path, suffix):
    """(name, bytes) of the files in a tar archive ending in `suffix`, sorted by name."""
    with tarfile.open(path) as archive:
        members = sorted(
            (m for m in archive.getmembers() if m.isfile() and m.name.endswith(suffix)),
            key=lambda m: m.name,
        )
        for member in members:
            yield member.name, archive.extractfile(member).read()


def _cifar10_examples(data_dir, split):
    path = os.path.join(data_dir, LOCAL_FILES["cifar10"][split][0])
    for index, (member, png) in enumerate(_tar_members(path, ".png")):
        class_name = member.split("/")[-2]
        yield index, {"image": png, "label": CIFAR10_CLASSES.index(class_name)}


def _celeb_a_examples(data_dir, split):
    path = os.path.join(data_dir, LOCAL_FILES["celeb_a"][split][0])
    for index, (_, jpeg) in enumerate(_tar_members(path, ".jpg")):
        yield index, {"image": jpeg}  # Original JPEG bytes, not re-encoded.


def _local_features(name):
    if name == "mnist":
        return tfds.features.FeaturesDict(
            {"image": tfds.features.Image(shape=(28, 28, 1)), "label": tfds.features.ClassLabel(num_classes=10)}
        )
    if name == "cifar10":
        return tfds.features.FeaturesDict(
            {"image": tfds.features.Image(shape=(32, 32, 3)), "label": tfds.features.ClassLabel(names=CIFAR10_CLASSES)}
        )
    return tfds.features.FeaturesDict(
        {"image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg")}
    )


_LOCAL_EXAMPLES = {"mnist": _mnist_examples, "cifar10": _cifar10_examples, "celeb_a": _celeb_a_examples}


def _shuffled_examples(name, data_dir, split):
    """The split's examples, read in full, in one seeded random order.

    Original files are often sorted (CIFAR-10's archive by class): a converted
    split in file order would make "the first N images" one class and a
    shuffle buffer sweep the classes in turn. Reading everything first also
    surfaces a truncated or corrupt file before anything is written.
    """
    paths = ", ".join(os.path.join(data_dir, p) for p in LOCAL_FILES[name][split])
    try:
        examples = [example for _, example in _LOCAL_EXAMPLES[name](data_dir, split)]
    except (OSError, EOFError, tarfile.TarError, zlib.error, ValueError) as error:
        raise InputError(
            f"Could not read the {name} {split} files ({paths}): {type(error).__name__}: {error}. "
            "The file is truncated or corrupt; replace it (the shared folder's SHA256SUMS checks it)."
        ) from error
    if not examples:
        raise InputError(f"The {name} {split} files ({paths}) hold no images.")
    order = np.random.default_rng([CONVERSION_SEED, len(examples)]).permutation(len(examples))
    return [(str(index), examples[position]) for index, position in enumerate(order)]


def local_files_present(data_dir, name):
    """True when every original file of `name` is in `data_dir`, False when none is.

    Raises:
        FileNotFoundError: some are there and some are missing (names the missing ones).
    """
    paths = [p for files in LOCAL_FILES[name].values() for p in files]
    missing = [p for p in paths if not os.path.isfile(os.path.join(data_dir, p))]
    if missing and len(missing) < len(paths):
        raise FileNotFoundError(
            f"data_dir {data_dir!r} holds part of the {name} files: missing "
            f"{', '.join(os.path.join(data_dir, p) for p in missing)}."
        )
    return not missing


_SOURCE_DIGESTS = {}  # (path, size, mtime) of the sources -> their digest.


class _TfdsChatter(std_logging.Filter):
    """Drops tfds' own records below ERROR (its builder warns that the folder
    it is about to write holds no dataset_info.json yet)."""

    def filter(self, record):
        return record.levelno >= std_logging.ERROR or "tensorflow_datasets" not in (record.pathname or "")


def _store(started, **arguments):
    """`tfds.dataset_builders.store_as_tfds_dataset` without tfds' progress bars
    (several per split, in the middle of a run's console), its "Downloading and
    preparing dataset" prints and its warnings about the folder it creates:
    timed in the log instead (what tfds printed at debug verbosity), from
    `started` (`time.monotonic()` when reading the files began)."""
    from tensorflow_datasets.core.utils import tqdm_utils

    shown = tqdm_utils._active
    tfds.display_progress_bar(False)
    chatter, logger = _TfdsChatter(), logging.get_absl_logger()
    logger.addFilter(chatter)
    try:
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            tfds.dataset_builders.store_as_tfds_dataset(**arguments)
    finally:
        logger.removeFilter(chatter)
        tfds.display_progress_bar(shown)
    logging.debug("tfds printed: %s", printed.getvalue().strip())
    logging.info("Converted %s in %.0f s.", arguments["name"], time.monotonic() - started)


def convert_local(data_dir, name, cache_dir):
    """Converts the original files once into a tfds data dir; returns its version dir."""
    tfds_dir = local_tfds_dir(data_dir, name, cache_dir)
    return _converted_once(tfds_dir, name, lambda: _convert_local(data_dir, name, tfds_dir))


def local_tfds_dir(data_dir, name, cache_dir):
    """The tfds data dir that `convert_local` writes for the files of `name` in `data_dir`."""
    sources = sorted(os.path.join(data_dir, p) for f in LOCAL_FILES[name].values() for p in f)
    # Keyed on the files' bytes, not their paths or times: the same data copied
    # elsewhere (or provisioned again) keeps its conversion and cached statistics.
    stamp = tuple((os.path.realpath(p), os.path.getsize(p), os.path.getmtime(p)) for p in sources)
    if stamp not in _SOURCE_DIGESTS:  # Read once per process while the files are unchanged.
        _SOURCE_DIGESTS[stamp] = file_digest(*sources)
    return _tfds_dir(cache_dir, name, _SOURCE_DIGESTS[stamp])


def _tfds_dir(cache_dir, name, *keys):
    """`<cache>/tfds/<name>-<fingerprint>`: the fingerprint of the conversion's version, its
    seed and `keys` (what the converted images depend on)."""
    fingerprint = hashlib.sha256("\n".join([LOCAL_VERSION, str(CONVERSION_SEED), *keys]).encode()).hexdigest()[:12]
    return os.path.join(cache_root(cache_dir), "tfds", f"{name}-{fingerprint}")


def _converted_once(tfds_dir, name, convert):
    """The prepared version dir of `name` in `tfds_dir`, `convert()` run first
    where there is none. Processes that start at once take turns: the first
    converts, the others wait for it and read its result (tfds refuses to
    write a dataset that another process has just prepared)."""
    prepared = prepared_dir(tfds_dir, name)
    if prepared:
        return prepared
    with folder_lock(tfds_dir, "data conversion", holder="process converting it", wait=True):
        if not prepared_dir(tfds_dir, name):
            root = os.path.join(tfds_dir, name)
            for stale in os.listdir(root) if os.path.isdir(root) else ():  # Left by a conversion that was killed.
                if stale.startswith(_INCOMPLETE):
                    shutil.rmtree(os.path.join(root, stale))
            convert()
    return prepared_dir(tfds_dir, name)


def _convert_local(data_dir, name, tfds_dir):
    logging.info("Converting the local %s files in %s into a tfds data dir at %s (once).", name, data_dir, tfds_dir)
    started = time.monotonic()
    split_datasets = {split: _shuffled_examples(name, data_dir, split) for split in LOCAL_FILES[name]}
    _store(
        started,
        name=name,
        version=LOCAL_VERSION,
        features=_local_features(name),
        split_datasets=split_datasets,
        data_dir=tfds_dir,
        description=(
            f"{name} converted by kd_gan from the original files in {data_dir}, "
            f"shuffled once with seed {CONVERSION_SEED}."
        ),
        # The stored order is the seeded random one above, the same on every machine.
        disable_shuffling=True,
    )


_PREPARED_IMAGES = {}  # (folder, size, cache) -> tfds dir, so one process fingerprints a folder once.


def convert_images(path, image_size, cache_dir):
    """A user's image folder or tar, centre-cropped and resized, converted once into a tfds data dir."""
    key = (os.path.realpath(path), image_size, cache_root(cache_dir))
    if key not in _PREPARED_IMAGES:
        _PREPARED_IMAGES[key] = _prepare_images(path, image_size, cache_dir)
    return _PREPARED_IMAGES[key]


def _prepare_images(path, image_size, cache_dir):
    source = ImageSource(path)
    tfds_dir = _tfds_dir(cache_dir, IMAGES, str(image_size), source.fingerprint())
    return _converted_once(tfds_dir, IMAGES, lambda: _convert_images(source, image_size, path, tfds_dir))


def _convert_images(source, image_size, path, tfds_dir):
    logging.info("Converting %d images of %s at %dx%d into a tfds data dir at %s (once).", len(source), path, image_size, image_size, tfds_dir)
    started = time.monotonic()
    images = list(source.images(source.names, image_size))
    order = np.random.default_rng([CONVERSION_SEED, len(images)]).permutation(len(images))
    _store(
        started,
        name=IMAGES,
        version=LOCAL_VERSION,
        features=tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(image_size, image_size, 3))}),
        split_datasets={"train": [(str(i), {"image": images[p]}) for i, p in enumerate(order)]},
        data_dir=tfds_dir,
        description=f"{len(images)} images of {os.path.abspath(path)}, centre-cropped to {image_size}x{image_size}, shuffled once.",
        disable_shuffling=True,
    )
