"""Teachers kept with the package: loadable by name, each file checked against
the sha256 of its manifest (`pretrained/manifest.json`: data, command, time)."""

import json
import os

from kd_gan._io import file_digest
from kd_gan.errors import InputError
from kd_gan.models.any_generator import load_generator

PRETRAINED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")


def pretrained_manifest(folder=PRETRAINED_DIR):
    """The manifest: name -> record (file, sha256, data, command, training, FID)."""
    with open(os.path.join(folder, "manifest.json")) as file:
        return json.load(file)


def pretrained_path(name, folder=PRETRAINED_DIR):
    """The checked path of a kept teacher's `.keras` file (for `--teacher_path`).

    Raises:
        InputError: an unknown name, or a file whose sha256 is not its manifest's.
    """
    manifest = pretrained_manifest(folder)
    if name not in manifest:
        raise InputError(f"Unknown pretrained generator {name!r}; choose one of {sorted(manifest)}.")
    record = manifest[name]
    path = os.path.join(folder, record["file"])
    digest = file_digest(path)
    if digest != record["sha256"]:
        raise InputError(
            f"{path} has sha256 {digest}, not the {record['sha256']} of its manifest: the file was changed or damaged."
        )
    return path


def pretrained(name, folder=PRETRAINED_DIR):
    """A kept teacher, e.g. `kd_gan.pretrained("celeb_a_d32")`, checked and loaded in float32.

    Example:

    ```python
    teacher = kd_gan.pretrained("celeb_a_d32")
    student = kd_gan.prune_generator(teacher, widths=(4, 12, 12, 12))
    ```
    """
    return load_generator(pretrained_path(name, folder))
