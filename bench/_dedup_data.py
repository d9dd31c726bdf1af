"""Shared loaders for the dedup benchmarks: T0 records shaped like pipeline records, and scaled copies."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pathlib
import random
from typing import Dict, List

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get("LAZARET_SHARED_DATA", ROOT.parent / "shared" / "data"))
T0 = SHARED / "instruct_t0_train_50k" / "t0_train_50k.jsonl.gz"


def doc_id(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def load_t0(limit: int | None = None, sample: int | None = None, seed: int = 0) -> List[Dict]:
    """T0 rows as records (text = instruction + "\\n\\n" + output); optional random sample of ``sample``."""
    rows = []
    with gzip.open(T0, "rt", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if limit is not None and i >= limit:
                break
            o = json.loads(line)
            text = (o.get("instruction") or "") + "\n\n" + (o.get("output") or "")
            rows.append({"doc_id": doc_id(f"t0:{i}"), "record_id": o.get("id"), "text": text})
    if sample is not None and sample < len(rows):
        rows = random.Random(seed).sample(rows, sample)
    return rows


def edit_words(text: str, rnd: random.Random, frac: float) -> str:
    """Replace, delete or insert about ``frac`` of the words (a near-duplicate at controlled distance)."""
    words = text.split()
    out = []
    for w in words:
        r = rnd.random()
        if r < frac / 3:
            out.append(f"x{rnd.randrange(10**6)}")
        elif r < 2 * frac / 3:
            continue
        elif r < frac:
            out.extend([w, f"y{rnd.randrange(10**6)}"])
        else:
            out.append(w)
    return " ".join(out)


def scaled(records: List[Dict], factor: int, seed: int = 0, frac: float = 0.02) -> List[Dict]:
    """``factor`` concatenated copies; copies 2.. get small random word edits (fresh doc_ids)."""
    rnd = random.Random(seed)
    out = list(records)
    for k in range(1, factor):
        for r in records:
            out.append({"doc_id": doc_id(f"copy{k}:{r['doc_id']}"), "record_id": r["record_id"],
                        "text": edit_words(r["text"], rnd, frac)})
    return out
