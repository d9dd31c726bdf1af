"""Test helpers: run the real CLI in-process and read its outputs."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pathlib
from typing import Any, Dict, List

import pyarrow.dataset as ds

from lazaret.cli import main as cli_main


def run_cli(*argv: str) -> int:
    return cli_main([str(a) for a in argv])


def scan(inputs, out, *extra: str) -> int:
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    return run_cli("scan", *inputs, "--out", out, "--quiet", *extra)


def quarantine_rows(out) -> List[Dict[str, Any]]:
    return ds.dataset(os.path.join(out, "quarantine"), format="parquet").to_table().to_pylist()


def findings_rows(out) -> List[Dict[str, Any]]:
    return ds.dataset(os.path.join(out, "findings"), format="parquet").to_table().to_pylist()


def clean_records(out) -> List[Dict[str, Any]]:
    rows = []
    for path in sorted(pathlib.Path(out, "clean").glob("part-*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            rows.extend(json.loads(line) for line in fh)
    return rows


def summary(out) -> Dict[str, Any]:
    return json.loads(pathlib.Path(out, "summary.json").read_text())


def tree_digest(out, parts=("clean", "quarantine", "findings", "clusters", "clean_index", "held", "held_index",
                             "summary.json")) -> Dict[str, str]:
    """sha256 of every output file that must be byte-identical across runs and runners."""
    digests = {}
    for part in parts:
        path = pathlib.Path(out, part)
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            digests[str(f.relative_to(out))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return digests
