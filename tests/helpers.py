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


def planted_scan(base: str, family: str, size: int, seed: int, t0_limit: int = 10000, sample: int = 0):
    """One family of the benchmark's attack space planted into a base and scanned as ``bench/poisoning_space.py``
    does (shuffled by seed; signature rules and dedup off) -> (flagged findings by doc_id, planted doc_ids, clean
    doc_ids). ``sample``: scan that many of the base's records (drawn by ``seed``; the hosts still come from the whole
    base), a corpus of another size. Needs the project root on ``sys.path`` (the ``bench`` package) and the shared
    datasets."""
    import random

    from bench.attacks.space import SPACE
    from bench.poisoning_bases import base_objects, to_pipeline_record
    from bench.poisoning_space import pool_of

    objs = base_objects(base, t0_limit)
    if 0 < sample < len(objs):
        objs = [objs[i] for i in sorted(random.Random(seed).sample(range(len(objs)), sample))]
    clean = [to_pipeline_record(o, i, base) for i, o in enumerate(objs)]
    pool, fmt = pool_of(base, t0_limit)
    planted = [to_pipeline_record(o, i, "poison-" + family)
               for i, o in enumerate(SPACE[family](pool, size, seed, fmt).records)]
    flagged, truth = scan_with_planted(clean, planted, random.Random(seed))
    return flagged, truth, {r["doc_id"] for r in clean}


def _scan_shuffled(clean: list, planted: list, rng) -> list:
    """Pipeline records ``clean`` and ``planted`` shuffled together by ``rng`` and scanned as the benchmark does
    (real Beam; signature rules and dedup off) -> every finding."""
    from bench.run_scan import run_scan

    recs = clean + planted
    rng.shuffle(recs)
    findings, _ = run_scan(recs, {"signatures": False}, dedup=False)
    return findings


def scan_with_planted(clean: list, planted: list, rng) -> tuple:
    """``_scan_shuffled`` -> (flagged findings by doc_id, planted doc_ids)."""
    findings = _scan_shuffled(clean, planted, rng)
    flagged = {f["doc_id"]: f for f in findings if f["action"] != "none"}
    return flagged, {r["doc_id"] for r in planted}


def found_and_wrong(clean_docs: list, planted_docs: list, rng) -> tuple:
    """Alpaca-like dicts ``clean_docs`` and ``planted_docs`` (ids unique) shuffled together by ``rng`` and scanned
    as the benchmark does (real Beam; signature rules and dedup off) -> (findings of the flagged planted records,
    findings of the flagged clean ones). Checks first that every record has exactly one finding."""
    from bench.attacks import to_record

    findings = _scan_shuffled([to_record(d) for d in clean_docs], [to_record(d) for d in planted_docs], rng)
    assert len(findings) == len(clean_docs) + len(planted_docs)
    by_id = {f["record_id"]: f for f in findings}
    flagged = lambda docs: [by_id[d["id"]] for d in docs if by_id[d["id"]]["action"] != "none"]  # noqa: E731
    return flagged(planted_docs), flagged(clean_docs)
