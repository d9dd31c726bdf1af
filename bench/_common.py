"""Shared bench helpers: where the datasets are, reading them, peak memory."""

from __future__ import annotations

import gzip
import json
import os
import pathlib
import resource
import sys
from typing import Any, Dict, Iterator, List

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get("LAZARET_SHARED_DATA", ROOT.parent / "shared" / "data"))


def need_shared() -> pathlib.Path:
    if not SHARED.is_dir():
        sys.exit(f"benchmark needs the shared datasets at {SHARED} (set LAZARET_SHARED_DATA)")
    return SHARED


def read_jsonl(path: pathlib.Path, limit: int | None = None) -> List[Dict[str, Any]]:
    opener = gzip.open if str(path).endswith(".gz") else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            rows.append(json.loads(line))
            if limit and len(rows) >= limit:
                break
    return rows


def peak_rss_mb(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0


def machine() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"
