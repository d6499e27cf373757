"""Data: the named data sets through tensorflow-datasets, local files and your
image folders converted once into a tfds data dir, and the pixel conversions."""

from kd_gan.data.local_files import IMAGES
from kd_gan.data.loading import DATASETS, IMAGE_SHAPES, IMAGE_SIZES, image_shape, load_dataset, resolve_data_dir
from kd_gan.data.pixels import center_crop_resize, from_uint8, image_grid, save_png, to_uint8

__all__ = [
    "DATASETS",
    "IMAGES",
    "IMAGE_SHAPES",
    "IMAGE_SIZES",
    "center_crop_resize",
    "from_uint8",
    "image_grid",
    "image_shape",
    "load_dataset",
    "resolve_data_dir",
    "save_png",
    "to_uint8",
]
