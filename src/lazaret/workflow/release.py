"""``lazaret release DIR --to FINAL``: write the fine-tuning set a person can account for.

FINAL gets ``data/part-*.jsonl.gz`` (the scan's clean/ records byte for byte, then the records reviewers
released, taken from held/ where they are already redacted per policy), ``manifest.jsonl`` (one line per
doc_id that went in, with why: ``clean`` or ``released`` with the reviewer, reason and decision hash)
and ``release.json`` (counts, hashes of every output file, the review-log head, the gate's verdict).
Refuses when the review log fails verification: released records are only as trustworthy as the log.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import json
import os
import shutil
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

from lazaret.workflow.report.safetext import term
from lazaret.workflow.review import load_state, verify_all, verify_chain
from lazaret.workflow.scandir import ScanDir, ScanError, sha256_file

SHARD_RECORDS = 100_000


class ReleaseError(Exception):
    pass


def _clean_doc_ids(scan: ScanDir) -> Dict[Tuple[str, int], Dict[str, Any]]:
    """(shard basename, 0-based line) -> clean_index row. Accepts shard as a name or a shard number and
    lines counted from 0 or 1 (normalised per shard)."""
    t = scan.clean_index()
    shards = [os.path.basename(f) for f in scan.clean_shards()]
    if t is None:
        if shards:
            raise ReleaseError("clean/ has records but clean_index/ is missing: cannot list their doc_ids")
        return {}
    rows = t.to_pylist()
    by_shard: Dict[str, List[Dict[str, Any]]] = {}
    for r in rows:
        s = r.get("shard")
        if isinstance(s, int):
            if not 0 <= s < len(shards):
                raise ReleaseError(f"clean_index: shard number {s} out of range ({len(shards)} shards)")
            name = shards[s]
        else:
            name = os.path.basename(str(s))
        by_shard.setdefault(name, []).append(r)
    out: Dict[Tuple[str, int], Dict[str, Any]] = {}
    for name, rs in by_shard.items():
        lines = sorted(int(r["line"]) for r in rs)
        base = 1 if lines and lines[0] == 1 and lines[-1] == len(lines) else 0
        for r in rs:
            out[(name, int(r["line"]) - base)] = r
    return out


class _ShardWriter:
    """Deterministic gzip shards (mtime 0, fixed names) so two releases of the same decisions are equal."""

    def __init__(self, folder: str, per_shard: int) -> None:
        self.folder, self.per_shard = folder, per_shard
        self.n_shard, self.in_shard, self.fh = -1, 0, None
        self.files: List[str] = []

    def _next(self) -> None:
        self.close()
        self.n_shard += 1
        name = f"part-{self.n_shard:05d}.jsonl.gz"
        self.files.append(name)
        raw = open(os.path.join(self.folder, name), "wb")
        self.fh = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
        self._raw = raw
        self.in_shard = 0

    def write(self, line: bytes) -> Tuple[str, int]:
        if self.fh is None or self.in_shard >= self.per_shard:
            self._next()
        self.fh.write(line + b"\n")
        pos = (self.files[-1], self.in_shard)
        self.in_shard += 1
        return pos

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self._raw.close()
            self.fh = None


def release(scan: ScanDir, final: str, per_shard: int = SHARD_RECORDS) -> Dict[str, Any]:
    problems = verify_all(scan)
    if problems:
        raise ReleaseError("review log fails verification, refusing to release:\n  " + "\n  ".join(problems))
    if os.path.exists(final) and os.listdir(final):
        raise ReleaseError(f"{final} exists and is not empty; choose a new folder")
    st = load_state(scan)
    released = st.released()
    qrows = scan.quarantine_by_id()
    held = scan.held_records(set(released))
    missing = sorted(set(released) - set(held))
    if missing:
        raise ReleaseError(f"{len(missing)} released record(s) are not in held/ (e.g. {missing[0]}); "
                           f"the scan did not keep them")
    index = _clean_doc_ids(scan)
    parent = os.path.dirname(os.path.abspath(final)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".release-", dir=parent)
    try:
        os.makedirs(os.path.join(tmp, "data"))
        writer = _ShardWriter(os.path.join(tmp, "data"), per_shard)
        seen = set()
        n_clean = 0
        with open(os.path.join(tmp, "manifest.jsonl"), "w", encoding="utf-8") as man:
            for shard, line_no, line in scan.iter_clean_lines():
                r = index.get((shard, line_no))
                if r is None:
                    raise ReleaseError(f"clean/{shard} line {line_no} has no clean_index row")
                out_shard, out_line = writer.write(line)
                seen.add(r["doc_id"])
                n_clean += 1
                man.write(json.dumps({"doc_id": r["doc_id"], "why": "clean", "source_path": r.get("source_path"),
                                      "source_index": r.get("source_index"), "shard": out_shard,
                                      "line": out_line}, ensure_ascii=True, sort_keys=True) + "\n")
            if n_clean != len(index):
                raise ReleaseError(f"clean_index lists {len(index)} records but clean/ holds {n_clean}")
            for doc_id, decision in released.items():
                if doc_id in seen:
                    raise ReleaseError(f"{doc_id} is both clean and released")
                h = held[doc_id]
                rec = json.dumps(h["record"], ensure_ascii=False, separators=(",", ":"))
                out_shard, out_line = writer.write(rec.encode("utf-8", "surrogatepass"))
                q = qrows.get(doc_id, {})
                man.write(json.dumps({
                    "doc_id": doc_id, "why": f"released by {decision['reviewer']}: {decision['reason']}",
                    "reviewer": decision["reviewer"], "reason": decision["reason"], "decision": decision["hash"],
                    "decision_seq": decision["seq"], "scan_action": q.get("action"),
                    "scan_reasons": sorted({f"{x['check']}:{x.get('rule') or ''}" for x in q.get("reasons", [])}),
                    "redacted": h.get("redacted"), "source_path": q.get("source_path"),
                    "source_index": q.get("source_index"), "shard": out_shard, "line": out_line,
                }, ensure_ascii=True, sort_keys=True) + "\n")
        writer.close()
        files = {os.path.join("data", f): sha256_file(os.path.join(tmp, "data", f)) for f in writer.files}
        files["manifest.jsonl"] = sha256_file(os.path.join(tmp, "manifest.jsonl"))
        _, nd, dhead = verify_chain(scan, "decisions")
        try:
            from lazaret.workflow.gate import check_policy, evaluate
            from lazaret.workflow.scandir import load_policy_sections

            crits = evaluate(scan, load_policy_sections(check_policy(scan, None)))
            gate = {"passed": all(c.ok for c in crits), "failed": [c.name for c in crits if not c.ok]}
        except Exception as exc:  # the gate is recorded, not enforced: `lazaret gate` is the gate
            gate = {"passed": False, "refused": str(exc)}
        info = {
            "scan": scan.path, "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
            "records": n_clean + len(released), "clean": n_clean, "released": len(released),
            "review": {"decisions": nd, "head": dhead}, "scan_fingerprint": scan.fingerprint(),
            "policy_sha256": (scan.provenance().get("policy") or {}).get("sha256"),
            "gate": gate, "files": files,
        }
        with open(os.path.join(tmp, "release.json"), "w", encoding="utf-8") as fh:
            json.dump(info, fh, indent=1, sort_keys=True)
            fh.write("\n")
        if os.path.exists(final):
            os.rmdir(final)
        os.replace(tmp, final)
        return info
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def main(argv: Optional[Sequence[str]] = None, out=None) -> int:
    out = out or sys.stdout
    p = argparse.ArgumentParser(prog="lazaret release", description=__doc__.split("\n\n")[0])
    p.add_argument("dir")
    p.add_argument("--to", required=True, dest="final", help="output folder (must not exist or be empty)")
    p.add_argument("--shard-records", type=int, default=SHARD_RECORDS)
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        info = release(ScanDir(args.dir), args.final, args.shard_records)
    except ScanError as exc:
        print(f"lazaret release: {term(exc)}", file=sys.stderr)
        return 2
    except ReleaseError as exc:
        print(f"lazaret release: REFUSED: {term(exc)}", file=sys.stderr)
        return 1
    print(f"released {info['records']} records to {term(args.final)}: {info['clean']} clean + "
          f"{info['released']} released by reviewers; review head {info['review']['head']}; "
          f"gate {'passed' if info['gate'].get('passed') else 'NOT passed'}", file=out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
