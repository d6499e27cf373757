"""Files the package writes and keys: strict JSON records written atomically,
and fingerprints of files and folders by their bytes.

Python's `json` writes NaN and Infinity by default, which no strict JSON
reader accepts; a metric that is undefined (a FID of a diverged model, the
PSNR of identical images) is `null` in every file the package writes.
"""

import hashlib
import json
import math
import os

import numpy as np


def json_safe(value):
    """`value` with every non-finite float (Python or numpy) replaced by None and
    numpy scalars and arrays as Python numbers and lists."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path, value):
    """Writes `value` to `path` as strict JSON (non-finite numbers as null), atomically."""
    temporary = f"{path}.tmp"
    with open(temporary, "w") as file:
        json.dump(json_safe(value), file, indent=2, allow_nan=False)
    os.replace(temporary, path)  # Never leave a half-written file behind.


def read_json(path):
    with open(path) as file:
        return json.load(file)


def file_digest(*paths):
    """sha256 of the files' bytes, in order (folders: every file under them, sorted
    by path): what keys local conversions and caches, and names networks by content."""
    digest = hashlib.sha256()
    for path in paths:
        files = [path] if os.path.isfile(path) else sorted(
            os.path.join(root, name) for root, _, names in os.walk(path) for name in names
        )
        for file_path in files:
            digest.update(os.path.relpath(file_path, path).encode() if file_path != path else b"")
            with open(file_path, "rb") as file:
                for block in iter(lambda: file.read(1 << 22), b""):
                    digest.update(block)
    return digest.hexdigest()
