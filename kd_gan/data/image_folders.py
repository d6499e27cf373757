"""Folders and tar archives of PNG/JPEG images, read for scoring and training.

A source is a folder (searched recursively) or a `.tar` / `.tar.gz` / `.tgz`
archive; its images are the files ending in `.png`, `.jpg` or `.jpeg` (any
case), in sorted path order. Every image is decoded to RGB (grey images tiled
to three channels, alpha dropped).

Example:

```python
source = ImageSource("my_faces/")
for batch in source.batches(num_samples=1000, seed=0):  # float32 [-1, 1], RGB
    ...
```
"""

import hashlib
import os
import tarfile

import numpy as np
import tensorflow as tf

from kd_gan.errors import InputError
from kd_gan._io import file_digest
from kd_gan.data.pixels import center_crop_resize, from_uint8

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def is_image_name(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def decode_image(name, encoded):
    """PNG/JPEG bytes -> uint8 `[H, W, 3]` (grey tiled to RGB, alpha dropped).

    Raises:
        InputError: the bytes are not a readable PNG or JPEG (names the file).
    """
    try:
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, ValueError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"Cannot decode image {name!r}: {message}.") from None
    return image.numpy()


class ImageSource:
    """The images of a folder or a tar archive (see module doc).

    Args:
        path: folder or `.tar`/`.tar.gz`/`.tgz` file.

    Raises:
        FileNotFoundError: `path` does not exist.
        InputError: it is neither a folder nor a tar archive, the archive cannot
            be read, or it holds no PNG/JPEG image.
    """

    def __init__(self, path):
        if not os.path.exists(path):
            raise FileNotFoundError(f"No folder or tar archive at {path!r}.")
        self.path = path
        self.is_archive = os.path.isfile(path)
        if self.is_archive:
            if not path.lower().endswith(TAR_SUFFIXES):
                raise InputError(
                    f"{path!r} is a file, not a folder or a tar archive ({', '.join(TAR_SUFFIXES)})."
                )
            try:
                with tarfile.open(path) as archive:
                    self.names = sorted(m.name for m in archive.getmembers() if m.isfile() and is_image_name(m.name))
            except (tarfile.TarError, OSError, EOFError) as error:
                raise InputError(f"Cannot read the tar archive {path!r}: {error}. It is truncated or corrupt.") from None
        else:
            self.names = sorted(
                os.path.relpath(os.path.join(root, name), path)
                for root, _, names in os.walk(path)
                for name in names
                if is_image_name(name)
            )
        if not self.names:
            raise InputError(f"{path!r} holds no PNG or JPEG images ({', '.join(IMAGE_EXTENSIONS)}, searched recursively).")

    def __len__(self):
        return len(self.names)

    def fingerprint(self):
        """sha256 of the images' names and bytes (of the archive file itself for a tar)."""
        if self.is_archive:
            return file_digest(self.path)
        digest = hashlib.sha256()
        for name, encoded in self.read(self.names):
            digest.update(name.encode() + b"\0" + hashlib.sha256(encoded).digest())
        return digest.hexdigest()

    def select(self, num_samples=None, seed=0):
        """The names of a seeded random subset of `num_samples` images (all when None), sorted.

        Raises:
            InputError: the source holds fewer than `num_samples` images.
        """
        if num_samples is None:
            return list(self.names)
        if num_samples > len(self.names):
            raise InputError(
                f"{self.path!r} holds {len(self.names)} images; num_samples={num_samples} asks for more. "
                f"Pass --num_samples of at most {len(self.names)}."
            )
        chosen = np.random.default_rng([seed, len(self.names)]).choice(len(self.names), num_samples, replace=False)
        return [self.names[i] for i in sorted(chosen)]

    def read(self, names):
        """`(name, bytes)` of `names`, in the source's order (one pass over an archive)."""
        wanted = set(names)
        if not self.is_archive:
            for name in names:
                with open(os.path.join(self.path, name), "rb") as file:
                    yield name, file.read()
            return
        try:
            with tarfile.open(self.path) as archive:
                for member in archive:
                    if member.name in wanted:
                        yield member.name, archive.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as error:
            raise InputError(f"Cannot read the tar archive {self.path!r}: {error}. It is truncated or corrupt.") from None

    def images(self, names, image_size=None):
        """uint8 RGB images of `names`: as stored (all one size), or centre-cropped and resized to `image_size`.

        Raises:
            InputError: an unreadable file, or (without `image_size`) sizes that differ.
        """
        first = None
        for name, encoded in self.read(names):
            image = decode_image(os.path.join(self.path, name), encoded)
            if image_size:
                image = center_crop_resize(image, image_size, crop_fraction=1.0).numpy()
            elif first is None:
                first = (name, image.shape)
            elif image.shape != first[1]:
                raise InputError(
                    f"Images in {self.path!r} differ in size: {first[0]} is {first[1][1]}x{first[1][0]}, "
                    f"{name} is {image.shape[1]}x{image.shape[0]}. Score images of one size, or resize them first."
                )
            yield image

    def batches(self, num_samples=None, seed=0, batch_size=100, image_size=None):
        """Float32 batches in [-1, 1] of the images `select(num_samples, seed)` names."""
        batch = []
        for image in self.images(self.select(num_samples, seed), image_size):
            batch.append(image)
            if len(batch) == batch_size:
                yield from_uint8(np.stack(batch))
                batch = []
        if batch:
            yield from_uint8(np.stack(batch))
