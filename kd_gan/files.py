"""Fingerprints of files and folders by their bytes: what keys local
conversions and caches, and names networks by content."""

import hashlib
import os


def file_digest(*paths):
    """sha256 of the files' bytes, in order (folders: every file under them, sorted by path)."""
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
