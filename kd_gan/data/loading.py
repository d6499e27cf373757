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

import os
import socket

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from kd_gan._io import file_digest
from kd_gan.errors import InputError, check_integer
from kd_gan.data.pixels import CELEB_A_CROP_FRACTION, center_crop_resize, from_uint8  # noqa: F401 (CELEB_A_CROP_FRACTION re-exported)
from kd_gan.data.local_files import (  # noqa: F401 (CIFAR10_CLASSES, CONVERSION_SEED, LOCAL_VERSION re-exported)
    CIFAR10_CLASSES,
    CONVERSION_SEED,
    IMAGES,
    LOCAL_FILES,
    LOCAL_VERSION,
    cache_root,
    convert_images,
    convert_local,
    local_files_present,
    prepared_dir,
)

IMAGE_SHAPES = {
    "mnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
    "celeb_a": (64, 64, 3),
}
DATASETS = tuple(IMAGE_SHAPES) + (IMAGES,)
IMAGE_SIZES = (32, 64)  # Square sizes the generators are built for.

# CelebA: centre square crop of 140/178 of the aligned frame's width, as in the
# usual 64x64 pipelines; a fraction, so full- and half-size images crop alike.
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
        return tfds.builder_from_directory(convert_images(data_dir, image_size, cache_dir))
    data_dir = resolve_data_dir(data_dir)
    if data_dir is not None:
        if not os.path.isdir(data_dir):
            raise FileNotFoundError(f"data_dir {data_dir!r} is not a directory.")
        prepared = prepared_dir(data_dir, name)
        if prepared is None and local_files_present(data_dir, name):
            prepared = convert_local(data_dir, name, cache_dir)
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
    root = os.path.dirname(os.path.dirname(builder.data_dir))
    if os.path.dirname(os.path.abspath(root)) == os.path.abspath(os.path.join(cache_root(cache_dir), "tfds")):
        # A local conversion lives in `<name>-<fingerprint of the source files' bytes>`.
        source = os.path.basename(root)
    else:
        # A prepared tfds data dir (given, or tfds' own): its record of splits, shards and sizes, not its path.
        source = "info-" + file_digest(os.path.join(builder.data_dir, "dataset_info.json"))[:12]
    return f"{builder.info.full_name}|{source}|{split}|{builder.info.splits[split].num_examples}"


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
    check_integer("batch_size", batch_size, 1)
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
        lambda images: tf.ensure_shape(from_uint8(images), (None,) + shape),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)
