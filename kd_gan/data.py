"""Data sets as `tf.data` pipelines of images in [-1, 1], through tensorflow-datasets.

Three sources, tried in this order:

1. `data_dir` (or the `KD_GAN_DATA_DIR` environment variable) holding a
   prepared tfds data dir: `<data_dir>/<name>/<version>/dataset_info.json`.
2. `data_dir` holding the original files (the layout of the project's shared
   data folder, see `LOCAL_FILES`): they are converted once into a tfds data dir
   under the cache folder (`cache_dir`, `KD_GAN_CACHE_DIR`, default
   `~/.cache/kd_gan`), so that everything after loading is the same tfds
   pipeline online and offline.
3. No `data_dir`: tfds' own download and preparation (needs the network).

The data set `"images"` is a user's own folder or tar of PNG/JPEG images
(`data_dir` points at it; `image_size` 32 or 64): each image is centre-cropped
to a square, resized, and the set converted once the same way, so the
experiment trains on someone's faces or products as on the named data sets.
"""

import gzip
import hashlib
import os
import socket
import tarfile
import zlib

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from kd_gan.errors import InputError

IMAGE_SHAPES = {
    "mnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
    "celeb_a": (64, 64, 3),
}
IMAGES = "images"  # A user's folder or tar of images (see module doc).
DATASETS = tuple(IMAGE_SHAPES) + (IMAGES,)
IMAGE_SIZES = (32, 64)  # Square sizes the generators are built for.

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
# CelebA: centre square crop of 140/178 of the aligned frame's width, as in the
# usual 64x64 pipelines; a fraction, so full- and half-size images crop alike.
CELEB_A_CROP_FRACTION = 140 / 178
# 1.1.0: examples are shuffled once (seeded) at conversion; 1.0.0 kept the files'
# order, which is sorted by class for CIFAR-10 (all airplanes first).
LOCAL_VERSION = "1.1.0"
CONVERSION_SEED = 0
# Bump when the images a split yields change (crop, resize): cached real-data
# statistics are keyed on it.
PREPROCESSING_VERSION = "1"
IN_MEMORY_CACHE_BYTES = 1 << 30  # Cache decoded images in RAM below 1 GiB.


def _check_name(name):
    if name not in DATASETS:
        raise InputError(f"Unknown dataset {name!r}; choose one of {DATASETS}.")


def image_shape(name, image_size=None):
    """`(height, width, channels)` of `name`'s images; `image_size` is required for "images" only.

    Raises:
        InputError: unknown name, or an `image_size` that is not allowed.
    """
    _check_name(name)
    if name == IMAGES:
        if image_size not in IMAGE_SIZES:
            raise InputError(
                f"dataset='images' needs image_size in {IMAGE_SIZES} (--image_size). Received: image_size={image_size!r}"
            )
        return (image_size, image_size, 3)
    shape = IMAGE_SHAPES[name]
    if image_size not in (None, shape[0]):
        raise InputError(f"{name} images are {shape[0]}x{shape[1]}; image_size={image_size!r} applies to dataset='images' only.")
    return shape


def resolve_data_dir(data_dir=None):
    """`data_dir`, else `$KD_GAN_DATA_DIR`, else None (tfds default)."""
    return data_dir or os.environ.get("KD_GAN_DATA_DIR") or None


def cache_root(cache_dir=None):
    """`cache_dir`, else `$KD_GAN_CACHE_DIR`, else `~/.cache/kd_gan`."""
    return cache_dir or os.environ.get("KD_GAN_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "kd_gan"
    )


def _prepared_dir(data_dir, name):
    """`<data_dir>/<name>/<version>` holding dataset_info.json (newest version), or None."""
    root = os.path.join(data_dir, name)
    if not os.path.isdir(root):
        return None
    versions = [
        v for v in os.listdir(root) if os.path.isfile(os.path.join(root, v, "dataset_info.json"))
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


def _mnist_examples(data_dir, split):
    images_path, labels_path = (os.path.join(data_dir, p) for p in LOCAL_FILES["mnist"][split])
    images, labels = _read_idx(images_path), _read_idx(labels_path)
    for index, (image, label) in enumerate(zip(images, labels)):
        yield index, {"image": image[..., None], "label": int(label)}


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


def _local_files_present(data_dir, name):
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


def _convert_local(data_dir, name, cache_dir):
    """Converts the original files once into a tfds data dir; returns its version dir."""
    sources = sorted(os.path.realpath(os.path.join(data_dir, p)) for f in LOCAL_FILES[name].values() for p in f)
    fingerprint = hashlib.sha256(
        "\n".join([LOCAL_VERSION, str(CONVERSION_SEED)] + [f"{p}:{os.path.getsize(p)}:{os.path.getmtime(p)}" for p in sources]).encode()
    ).hexdigest()[:12]
    tfds_dir = os.path.join(cache_root(cache_dir), "tfds", f"{name}-{fingerprint}")
    prepared = _prepared_dir(tfds_dir, name)
    if prepared:
        return prepared
    logging.info("Converting the local %s files in %s into a tfds data dir at %s (once).", name, data_dir, tfds_dir)
    split_datasets = {split: _shuffled_examples(name, data_dir, split) for split in LOCAL_FILES[name]}
    tfds.dataset_builders.store_as_tfds_dataset(
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
    return _prepared_dir(tfds_dir, name)


def _network_available(host="storage.googleapis.com", port=443, timeout=3.0):
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _missing_data_message(name, tfds_dir=None):
    local = ", ".join(p for files in LOCAL_FILES[name].values() for p in files)
    where = f"the tfds data dir {tfds_dir}" if tfds_dir else "tfds' default data dir"
    return (
        f"Dataset {name!r} is not prepared in {where} and cannot be downloaded (no network). "
        f"Either run once where the network is reachable (tfds downloads and prepares it), "
        f"or pass --data_dir / set KD_GAN_DATA_DIR to a folder holding a prepared tfds data "
        f"dir ({name}/<version>/dataset_info.json) or the original files: {local}."
    )


_PREPARED_IMAGES = {}  # (folder, size, cache) -> tfds dir, so one process fingerprints a folder once.


def _convert_images(path, image_size, cache_dir):
    """A user's image folder or tar, centre-cropped and resized, converted once into a tfds data dir."""
    key = (os.path.realpath(path), image_size, cache_root(cache_dir))
    if key not in _PREPARED_IMAGES:
        _PREPARED_IMAGES[key] = _prepare_images(path, image_size, cache_dir)
    return _PREPARED_IMAGES[key]


def _prepare_images(path, image_size, cache_dir):
    from kd_gan.image_files import ImageSource

    source = ImageSource(path)
    fingerprint = hashlib.sha256(
        "\n".join([LOCAL_VERSION, str(CONVERSION_SEED), str(image_size), source.fingerprint()]).encode()
    ).hexdigest()[:12]
    tfds_dir = os.path.join(cache_root(cache_dir), "tfds", f"{IMAGES}-{fingerprint}")
    prepared = _prepared_dir(tfds_dir, IMAGES)
    if prepared:
        return prepared
    logging.info("Converting %d images of %s at %dx%d into a tfds data dir at %s (once).", len(source), path, image_size, image_size, tfds_dir)
    images = list(source.images(source.names, image_size))
    order = np.random.default_rng([CONVERSION_SEED, len(images)]).permutation(len(images))
    tfds.dataset_builders.store_as_tfds_dataset(
        name=IMAGES,
        version=LOCAL_VERSION,
        features=tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(image_size, image_size, 3))}),
        split_datasets={"train": [(str(i), {"image": images[p]}) for i, p in enumerate(order)]},
        data_dir=tfds_dir,
        description=f"{len(images)} images of {os.path.abspath(path)}, centre-cropped to {image_size}x{image_size}, shuffled once.",
        disable_shuffling=True,
    )
    return _prepared_dir(tfds_dir, IMAGES)


def get_builder(name, data_dir=None, cache_dir=None, download=True, image_size=None):
    """The tfds builder of `name` from the first source that has it (see module doc).

    Raises:
        ValueError: unknown `name`.
        FileNotFoundError: `data_dir` holds neither layout, or there is no data
            and no network to download it.
    """
    _check_name(name)
    if name == IMAGES:
        image_shape(name, image_size)
        if not data_dir:
            raise InputError("dataset='images' reads a folder or tar of your images: pass it as --data_dir.")
        return tfds.builder_from_directory(_convert_images(data_dir, image_size, cache_dir))
    data_dir = resolve_data_dir(data_dir)
    if data_dir is not None:
        if not os.path.isdir(data_dir):
            raise FileNotFoundError(f"data_dir {data_dir!r} is not a directory.")
        prepared = _prepared_dir(data_dir, name)
        if prepared is None and _local_files_present(data_dir, name):
            prepared = _convert_local(data_dir, name, cache_dir)
        if prepared is None:
            expected = ", ".join(os.path.join(data_dir, p) for f in LOCAL_FILES[name].values() for p in f)
            raise FileNotFoundError(
                f"data_dir {data_dir!r} holds no {name!r} data: looked for a prepared tfds "
                f"dataset ({os.path.join(data_dir, name, '<version>', 'dataset_info.json')}) "
                f"and for the original files ({expected})."
            )
        return tfds.builder_from_directory(prepared)
    builder = tfds.builder(name)
    if not builder.is_prepared():
        if not download or not _network_available():
            raise FileNotFoundError(_missing_data_message(name))
        builder.download_and_prepare()
    return builder


def split_size(name, split, data_dir=None, cache_dir=None, image_size=None):
    """Number of images in `split` (slices allowed) of `name`."""
    return get_builder(name, data_dir, cache_dir, image_size=image_size).info.splits[split].num_examples


def dataset_identity(name, split, data_dir=None, cache_dir=None, image_size=None):
    """A string that changes when the images of `split` change: source, version, split, size."""
    builder = get_builder(name, data_dir, cache_dir, image_size=image_size)
    # Local conversions live in `<name>-<fingerprint of the source files>`; tfds' own data in its version dir.
    source = os.path.basename(os.path.dirname(os.path.dirname(builder.data_dir)))
    return f"{builder.info.full_name}|{source}|{split}|{builder.info.splits[split].num_examples}"


def _to_unit_range(image):
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return tf.cast(image, tf.float32) / 127.5 - 1.0


def center_crop_resize(image, size, crop_fraction=CELEB_A_CROP_FRACTION):
    """Centre square crop of `crop_fraction` of the width, resized to `size`, as uint8."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    crop = tf.cast(tf.round(tf.cast(width, tf.float32) * crop_fraction), tf.int32)
    image = tf.image.crop_to_bounding_box(image, (height - crop) // 2, (width - crop) // 2, crop, crop)
    image = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def load_dataset(
    name,
    split="train",
    batch_size=64,
    data_dir=None,
    shuffle=True,
    seed=0,
    drop_remainder=True,
    cache_dir=None,
    download=True,
    image_size=None,
):
    """Batches of images of `name` in [-1, 1], shape `(batch, *image_shape(name, image_size))`.

    Args:
        name: one of `DATASETS`: "mnist", "cifar10", "celeb_a" (centre-cropped
            and resized to 64x64), or "images" (your folder or tar as
            `data_dir`, centre-cropped and resized to `image_size`).
        split: a tfds split, slices allowed ("train", "test", "train[:90%]").
            The shared local files have: mnist train/test; cifar10 train only
            (hold out a slice of it, e.g. "train[90%:]"); celeb_a train (the
            first 10,000 aligned faces).
        batch_size: images per batch.
        data_dir: prepared tfds data dir or folder of original files; default
            `$KD_GAN_DATA_DIR`, else tfds' own (download when missing).
        shuffle: shuffle files and examples (seeded by `seed`).
        seed: shuffle seed.
        drop_remainder: drop the last incomplete batch (GAN steps want equal batches).
        cache_dir: where local files are converted; default `$KD_GAN_CACHE_DIR`
            or `~/.cache/kd_gan`.
        download: allow tfds to download when nothing local is found.
        image_size: 32 or 64, for "images" only.

    Returns:
        A `tf.data.Dataset` of float32 image batches, prefetched.

    Example:

    ```python
    dataset = load_dataset("mnist", "train", batch_size=64, data_dir="../shared/data")
    ```
    """
    _check_name(name)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1. Received: batch_size={batch_size!r}")
    shape = image_shape(name, image_size)
    builder = get_builder(name, data_dir, cache_dir, download, image_size)
    split_name = split.split("[")[0]
    if split_name not in builder.info.splits:
        raise InputError(
            f"Split {split!r} is not in {name!r} from {builder.data_dir}; available splits: "
            f"{sorted(builder.info.splits)}."
        )
    dataset = builder.as_dataset(
        split=split,
        # Local conversions keep the files' order (ordered datasets refuse file shuffling).
        shuffle_files=shuffle and not builder.info.disable_shuffling,
        read_config=tfds.ReadConfig(shuffle_seed=seed),
    )
    if name == "celeb_a":
        decode = lambda example: center_crop_resize(example["image"], shape[0])  # noqa: E731
    else:
        decode = lambda example: example["image"]  # noqa: E731
    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    num_examples = builder.info.splits[split].num_examples
    if drop_remainder and batch_size > num_examples:
        raise InputError(
            f"batch_size={batch_size} is larger than {name} {split!r} ({num_examples} images): "
            "an epoch would have no full batch. Use a batch_size of at most the split's size."
        )
    in_memory = num_examples * int(np.prod(shape)) <= IN_MEMORY_CACHE_BYTES
    if in_memory:
        dataset = dataset.cache()  # Decoded uint8 images: decode once, not every epoch.
    if shuffle:
        # In memory: a buffer of the whole split, a uniform shuffle whatever the
        # stored order. Otherwise tfds shuffles the files and a 10k buffer mixes within.
        buffer = num_examples if in_memory else min(num_examples, 10_000)
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(
        lambda images: tf.ensure_shape(_to_unit_range(images), (None,) + shape),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)
