"""Images as pixels: the one [-1, 1] <-> uint8 conversion, the centre crop,
sample grids written as PNG."""

import os

import numpy as np
import tensorflow as tf


def to_uint8(images):
    """Images in [-1, 1] -> uint8 [0, 255] (clipped)."""
    images = np.asarray(images, dtype=np.float32)
    return np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def from_uint8(images, dtype=np.float32):
    """uint8 [0, 255] -> [-1, 1] (`to_uint8`'s inverse up to rounding), numpy or TF."""
    if isinstance(images, (tf.Tensor, tf.Variable)):
        return tf.cast(images, dtype) / 127.5 - 1.0
    return np.asarray(images, dtype) / 127.5 - 1.0


def image_grid(rows, padding=2):
    """Tiles `rows` (a list of arrays `(columns, h, w, c)` in [-1, 1]) into one uint8 image.

    Row r, column c of the grid is `rows[r][c]`, so rows of different models on
    the same latent vectors line up column by column.
    """
    rows = [to_uint8(row) for row in rows]
    shapes = {row.shape for row in rows}
    if len(shapes) != 1:
        raise ValueError(f"All rows must have the same shape; got {sorted(shapes)}.")
    columns, height, width, channels = rows[0].shape
    grid = np.full(
        (len(rows) * (height + padding) + padding, columns * (width + padding) + padding, channels),
        255,
        dtype=np.uint8,
    )
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            top, left = padding + r * (height + padding), padding + c * (width + padding)
            grid[top : top + height, left : left + width] = image
    return grid


def save_png(image, path):
    """Writes a uint8 `(h, w, c)` array as PNG, creating the folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tf.io.write_file(path, tf.io.encode_png(image))


CELEB_A_CROP_FRACTION = 140 / 178  # CelebA's aligned faces: the centre 140 of 178 pixels' width.


def center_crop_resize(image, size, crop_fraction=CELEB_A_CROP_FRACTION):
    """Centre square crop of `crop_fraction` of the shorter side, resized to `size`, as uint8.

    CelebA's portrait frames crop 140/178 of their width; a user's images
    (`crop_fraction=1`) their largest central square.
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    crop = tf.cast(tf.round(tf.cast(tf.minimum(height, width), tf.float32) * crop_fraction), tf.int32)
    image = tf.image.crop_to_bounding_box(image, (height - crop) // 2, (width - crop) // 2, crop, crop)
    image = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
