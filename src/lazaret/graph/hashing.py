"""File hashes recorded in provenance and checked before loading models and policies."""

from __future__ import annotations

import hashlib


def sha256_file(path: str) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (model and input files can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
