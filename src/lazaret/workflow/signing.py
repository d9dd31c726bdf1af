"""Optional signing with a secret key: what a hash chain cannot give on its own.

Why: the review log is a hash chain and ``provenance.json`` records the policy's sha256, but anyone who can
write the scan folder can recompute every hash (append decisions, rewrite ``review/HEAD.json``, delete the
log and write an empty one, or edit ``policy.sha256`` so the gate judges with a lenient policy). Only a
secret or an outside anchor stops that. With ``LAZARET_SIGNING_KEY`` set in the environment:

* the scan writes ``seal.json``: the sha256 of ``provenance.json``, ``summary.json`` and the quarantine
  and cluster manifests, with an HMAC-SHA256 over them;
* every review-log entry carries an HMAC of its hash, and ``review/HEAD.json`` an HMAC of the heads;
* ``review verify``, every review command and ``lazaret gate`` check all of them and fail on a missing or
  wrong signature, so a rewrite needs the key.

Without the key nothing here applies, and the chain detects only edits that leave the chain and its head
inconsistent (see docs/review.md). The key never reaches a file or a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any, Dict, List, Optional

from lazaret.graph.hashing import sha256_file

KEY_ENV = "LAZARET_SIGNING_KEY"
SEAL = "seal.json"
SEALED_FILES = ("provenance.json", "summary.json")
SEALED_DIRS = ("quarantine", "clusters")


def signing_key() -> Optional[bytes]:
    """The key from the environment, or None when unset or empty."""
    value = os.environ.get(KEY_ENV, "")
    return value.encode("utf-8") if value else None


def mac(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def mac_ok(key: bytes, data: bytes, value: Any) -> bool:
    return isinstance(value, str) and hmac.compare_digest(mac(key, data), value)


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def digests(scan_dir: str) -> Dict[str, str]:
    """sha256 of every sealed file (relative path -> hex); a missing file maps to ``missing``."""
    out: Dict[str, str] = {}
    for name in SEALED_FILES:
        path = os.path.join(scan_dir, name)
        out[name] = sha256_file(path) if os.path.isfile(path) else "missing"
    for sub in SEALED_DIRS:
        folder = os.path.join(scan_dir, sub)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                out[f"{sub}/{name}"] = sha256_file(path)
    return out


def write_seal(scan_dir: str, key: bytes) -> None:
    files = digests(scan_dir)
    with open(os.path.join(scan_dir, SEAL), "w", encoding="utf-8") as fh:
        json.dump({"v": 1, "files": files, "mac": mac(key, canonical(files))}, fh, indent=1, sort_keys=True)
        fh.write("\n")


def check_seal(scan_dir: str, key: bytes) -> List[str]:
    """Problems with ``seal.json`` under ``key`` (empty: the sealed files are as the scan wrote them)."""
    path = os.path.join(scan_dir, SEAL)
    if not os.path.isfile(path):
        return [f"{SEAL} is missing: the scan was not sealed with {KEY_ENV}, or the seal was deleted"]
    try:
        with open(path, "r", encoding="utf-8") as fh:
            seal = json.load(fh)
        files = seal["files"]
    except (ValueError, KeyError, TypeError):
        return [f"{SEAL} is not a valid seal"]
    if not mac_ok(key, canonical(files), seal.get("mac")):
        return [f"{SEAL}: signature does not match (edited, or sealed with another key)"]
    now = digests(scan_dir)
    return [f"{name} changed after the scan (sha256 differs from {SEAL})"
            for name in sorted(set(files) | set(now)) if files.get(name) != now.get(name)]
