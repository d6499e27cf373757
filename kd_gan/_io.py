"""Files the package writes and keys: strict JSON records written atomically,
fingerprints of files and folders by their bytes, and one writer per folder.

Python's `json` writes NaN and Infinity by default, which no strict JSON
reader accepts; a metric that is undefined (a FID of a diverged model, the
PSNR of identical images) is `null` in every file the package writes.
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import socket
import tempfile
import time

import numpy as np
from absl import logging

from kd_gan.errors import InputError

LOCK_FILE = ".lock"  # Held (flock) by the process writing a folder (`folder_lock`).


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


def write_npz(path, **arrays):
    """Writes `arrays` to `path` (`.npz`) atomically: a unique temporary file
    (`*.tmp.npz`) beside it, renamed into place once whole."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=folder, suffix=".tmp.npz")
    with os.fdopen(descriptor, "wb") as file:
        np.savez(file, **arrays)
    os.replace(temporary, path)  # On disk whole, or not at all.
    return path


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


@contextlib.contextmanager
def folder_lock(folder, kind="folder", advice="wait for it to finish or stop it", holder="process", wait=False):
    """Holds `folder`'s exclusive writer lock while the block runs.

    The lock is an advisory `flock` on `<folder>/.lock`, released by the
    kernel when its process ends however it ends (a kill included), so a lock
    is never left stale. The file names its holder (pid, host, start time)
    for the refusal of a second writer, and is emptied when the block ends;
    a holder still named when the lock is taken was killed, and is reported.

    `kind` names the folder, `holder` what writes it, `advice` what to do in the refusal.
    With `wait`, a lock held by another process is waited for (logged) instead
    of refused: for work the second process would otherwise repeat.

    Raises:
        InputError: another process holds the lock (named) and `wait` is
            False, or the folder cannot be created or written.
    """
    try:
        os.makedirs(folder, exist_ok=True)
        handle = open(os.path.join(folder, LOCK_FILE), "a+")
    except OSError as error:
        raise InputError(f"Cannot write the {kind} {folder!r}: {error.strerror or error}.") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if not wait:
                raise InputError(f"The {kind} {folder!r} is being written by another {holder} ({_holder(handle)}); {advice}.") from None
            logging.info("The %s %s is being written by another %s (%s); waiting for it.", kind, folder, holder, _holder(handle))
            fcntl.flock(handle, fcntl.LOCK_EX)
        previous = _holder(handle)
        if previous != "unknown":  # Its process ended without releasing it: killed, or its machine stopped.
            logging.warning("The %s %s: taking over the writer lock of a %s that did not finish (%s).", kind, folder, holder, previous)
        handle.seek(0)
        handle.truncate()
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, handle)
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _holder(handle):
    """The holder a lock file names, in words."""
    handle.seek(0)
    try:
        holder = json.loads(handle.read() or "null")
    except ValueError:
        holder = None
    if not isinstance(holder, dict):
        return "unknown"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
