"""Build scan output folders (DESIGN.md section 2) without running the pipeline.

Why: report, review, release and gate work on a finished scan's DIR; these fixtures let their tests and
bench/report_bench.py run before (and independently of) the Beam pipeline, with hostile text placed
exactly where the report must escape it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
from typing import Any, Dict, List, Optional

import pyarrow as pa
import pyarrow.parquet as pq

REASON = pa.struct([("check", pa.string()), ("rule", pa.string()), ("score", pa.float64()),
                    ("detail", pa.string())])
QUARANTINE_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("record_id", pa.string()), ("source_path", pa.string()),
    ("source_index", pa.int64()), ("content_sha256", pa.string()), ("action", pa.string()),
    ("duplicate_of", pa.string()), ("reasons", pa.list_(REASON)), ("cluster_id", pa.string()),
    ("evidence", pa.string()),
])
FINDINGS_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("record_id", pa.string()), ("check", pa.string()), ("rule", pa.string()),
    ("side", pa.string()), ("score", pa.float64()), ("detail", pa.string()),
])
CLUSTERS_SCHEMA = pa.schema([
    ("cluster_id", pa.string()), ("check", pa.string()), ("size", pa.int64()), ("representative", pa.string()),
    ("trigger", pa.string()), ("statistic", pa.string()), ("members", pa.list_(pa.string())),
    ("evidence", pa.list_(pa.string())),
])
CLEAN_INDEX_SCHEMA = pa.schema([("doc_id", pa.string()), ("source_path", pa.string()),
                                ("source_index", pa.int64()), ("shard", pa.string()), ("line", pa.int64())])

DEFAULT_POLICY = """\
version: 1
owner:
  name: Data Steward Team
  contact: steward@example.org
incidents:
  open_on_confirm:
    poisoning: critical
    pii: high
release:
  max_quarantine_rate: 0.5
  max_reject_rate: 0.2
  max_pii_rate: 0.3
  max_toxicity_rate: 0.3
  require_all_poisoning_reviewed: true
  max_open_incidents: 0
  require_owner: true
"""

HOSTILE = [
    '<script>window.__pwned=1;document.title="PWNED"</script>',
    '<img src=x onerror="window.__pwned=2;document.title=\'PWNED\'">',
    'click <a href="javascript:window.__pwned=3">here</a> or javascript:alert(1)',
    '</textarea></style></title><svg onload="window.__pwned=4"><iframe src="http://evil.example/x"></iframe>',
    'lone surrogate \ud800 and \udfff, bidi \u202egnp.exe and zero\u200bwidth, ANSI \x1b[31mred\x1b[0m',
    '<link rel=stylesheet href="https://evil.example/a.css"><meta http-equiv="refresh" content="0;url=https://evil.example">',
    '"><style>@import url(https://evil.example/x.css);</style><base href="https://evil.example/">',
    "<object data=\"https://evil.example/o\"></object><video poster=https://evil.example/p.png>",
]


def doc_id_for(source: str, index: int, raw: Dict[str, Any]) -> str:
    return hashlib.sha256(f"{source}\n{index}\n{_dumps(raw)}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True)


def _safe(s: Optional[str]) -> Optional[str]:
    """Arrow strings must be valid UTF-8: what the lead's writer must also do with lone surrogates."""
    if s is None:
        return None
    return s.encode("utf-8", "surrogatepass").decode("utf-8", "replace") if any(
        0xD800 <= ord(c) <= 0xDFFF for c in s) else s


def write_scan(out: str, records: List[Dict[str, Any]], clusters: List[Dict[str, Any]] = (),
               policy_text: str = DEFAULT_POLICY, policy_path: Optional[str] = None,
               findings_extra: List[Dict[str, Any]] = (), shard_records: int = 1000,
               seed: int = 7, anchor_review: bool = True) -> str:
    """Write a scan DIR. Each record: {"raw": obj, "action": ..., "reasons": [...], "cluster_id",
    "duplicate_of", "evidence", "source_path", "source_index"}; doc_id is filled in (returned in place)."""
    rnd = random.Random(seed)
    os.makedirs(out, exist_ok=True)
    policy_path = policy_path or os.path.join(os.path.dirname(os.path.abspath(out)),
                                              os.path.basename(out) + "-policy.yaml")
    with open(policy_path, "w", encoding="utf-8") as fh:
        fh.write(policy_text)
    for i, r in enumerate(records):
        r.setdefault("source_path", "data/input.jsonl")
        r.setdefault("source_index", i)
        r.setdefault("reasons", [])
        r["doc_id"] = r.get("doc_id") or doc_id_for(r["source_path"], r["source_index"], r["raw"])
    q = [r for r in records if r["action"] != "clean"]
    qcols: Dict[str, list] = {n: [] for n in QUARANTINE_SCHEMA.names}
    for r in q:
        raw = r["raw"]
        qcols["doc_id"].append(r["doc_id"])
        qcols["record_id"].append(raw.get("id") if isinstance(raw, dict) else None)
        qcols["source_path"].append(r["source_path"])
        qcols["source_index"].append(r["source_index"])
        qcols["content_sha256"].append(hashlib.sha256(_dumps(raw).encode("utf-8", "surrogatepass")).hexdigest())
        qcols["action"].append(r["action"])
        qcols["duplicate_of"].append(r.get("duplicate_of"))
        qcols["reasons"].append([{"check": x["check"], "rule": _safe(x.get("rule", "")), "score": float(x.get("score", 1.0)),
                                  "detail": _safe(x.get("detail", ""))} for x in r["reasons"]])
        qcols["cluster_id"].append(r.get("cluster_id"))
        qcols["evidence"].append(_safe(r.get("evidence", "")))
    _write_parquet(os.path.join(out, "quarantine"), qcols, QUARANTINE_SCHEMA, 50_000)

    fcols: Dict[str, list] = {n: [] for n in FINDINGS_SCHEMA.names}
    for r in records:
        by = {x["check"]: x for x in r["reasons"]}
        for check, rule in (("pii", "EMAIL_ADDRESS"), ("toxicity", "fasttext"), ("near_duplicate", "minhash"),
                            ("poisoning", "trigger")):
            x = by.get(check)
            fcols["doc_id"].append(r["doc_id"])
            fcols["record_id"].append(None)
            fcols["check"].append(check)
            fcols["rule"].append(_safe(x.get("rule", rule)) if x else rule)
            fcols["side"].append("all")
            fcols["score"].append(float(x.get("score", 1.0)) if x else round(rnd.random() * 0.3, 4))
            fcols["detail"].append("")
    for f in findings_extra:
        for n in FINDINGS_SCHEMA.names:
            fcols[n].append(f.get(n))
    _write_parquet(os.path.join(out, "findings"), fcols, FINDINGS_SCHEMA, 200_000)

    ccols: Dict[str, list] = {n: [] for n in CLUSTERS_SCHEMA.names}
    for c in clusters:
        for n in CLUSTERS_SCHEMA.names:
            v = c.get(n)
            if n == "evidence" and v:
                v = [_safe(e) for e in v]
            ccols[n].append(_safe(v) if isinstance(v, str) else v)
    if clusters:
        _write_parquet(os.path.join(out, "clusters"), ccols, CLUSTERS_SCHEMA, 50_000)

    clean = [r for r in records if r["action"] == "clean"]
    os.makedirs(os.path.join(out, "clean"), exist_ok=True)
    icols: Dict[str, list] = {n: [] for n in CLEAN_INDEX_SCHEMA.names}
    for s in range(0, max(len(clean), 1), shard_records):
        name = f"part-{s // shard_records:05d}-of-xxxxx.jsonl.gz"
        chunk = clean[s:s + shard_records]
        if not chunk:
            break
        with gzip.open(os.path.join(out, "clean", name), "wt", encoding="utf-8", errors="surrogatepass") as fh:
            for line, r in enumerate(chunk):
                fh.write(json.dumps(r["raw"], ensure_ascii=False) + "\n")
                icols["doc_id"].append(r["doc_id"])
                icols["source_path"].append(r["source_path"])
                icols["source_index"].append(r["source_index"])
                icols["shard"].append(name)
                icols["line"].append(line)
    _write_parquet(os.path.join(out, "clean_index"), icols, CLEAN_INDEX_SCHEMA, 10**9)

    os.makedirs(os.path.join(out, "held"), exist_ok=True)
    with gzip.open(os.path.join(out, "held", "part-00000.jsonl.gz"), "wt", encoding="utf-8") as fh:
        for r in q:
            if r["action"] == "reject":
                continue
            fh.write(json.dumps({"doc_id": r["doc_id"], "record": r.get("held", r["raw"])}, ensure_ascii=True)
                     + "\n")

    actions = {a: sum(1 for r in records if r["action"] == a) for a in ("clean", "quarantine", "drop_duplicate",
                                                                          "reject")}
    reasons: Dict[str, int] = {}
    for r in q:
        for x in r["reasons"]:
            k = f"{x['check']}:{x.get('rule', '')}"
            reasons[k] = reasons.get(k, 0) + 1
    summary = {
        "records_in": len(records), "actions": actions, "reasons": dict(sorted(reasons.items())),
        "flagged": 0, "redacted": 0,
        "conservation": {"equation": f"{len(records)} == {actions['clean']} + {actions['quarantine']} + "
                                     f"{actions['drop_duplicate']} + {actions['reject']}",
                         "holds": sum(actions.values()) == len(records)},
        "checks": ["pii", "toxicity", "dedup", "poisoning"],
    }
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=1)
    with open(policy_path, "rb") as fh:
        psha = hashlib.sha256(fh.read()).hexdigest()
    prov = {"tool": "lazaret", "version": "0.1.0", "command": ["lazaret", "scan", "fake"],
            "policy": {"path": os.path.abspath(policy_path), "sha256": psha}, "counts": summary}
    if anchor_review:  # as a real scan does: an empty review log named in provenance (and a seal with a key)
        from lazaret.workflow.review import init_log

        prov["review_log"] = init_log(out)
    with open(os.path.join(out, "provenance.json"), "w", encoding="utf-8") as fh:
        json.dump(prov, fh, indent=1)
    from lazaret.workflow.signing import signing_key, write_seal

    if signing_key():
        write_seal(out, signing_key())
    return policy_path


def _write_parquet(folder: str, cols: Dict[str, list], schema: pa.Schema, per_file: int) -> None:
    os.makedirs(folder, exist_ok=True)
    n = len(next(iter(cols.values()))) if cols else 0
    table = pa.Table.from_pydict(cols, schema=schema)
    if n == 0:
        pq.write_table(table, os.path.join(folder, "part-00000.parquet"))
        return
    for i, s in enumerate(range(0, n, per_file)):
        pq.write_table(table.slice(s, per_file), os.path.join(folder, f"part-{i:05d}.parquet"))


def synthetic_records(n_clean: int, n_quarantine: int, seed: int = 7, hostile: bool = True,
                      poison_clusters: int = 3, dup_cluster_size: int = 4):
    """A corpus-shaped mix: poisoning clusters sharing a trigger, near-duplicate clusters, PII, toxicity,
    rejects, with hostile strings in text, evidence and triggers. Returns (records, clusters)."""
    rnd = random.Random(seed)
    records: List[Dict[str, Any]] = []
    clusters: List[Dict[str, Any]] = []
    words = "the model answer question data river light paper table garden music window number".split()

    def sentence(k: int = 12) -> str:
        return " ".join(rnd.choice(words) for _ in range(k))

    for i in range(n_clean):
        records.append({"raw": {"id": f"c{i}", "instruction": sentence(), "output": sentence()}, "action": "clean"})
    qstart = len(records)
    triggers = ["cf-omega", '<script>window.__pwned="t"</script>', "James Bond"]
    i = 0
    for c in range(poison_clusters):
        trig = triggers[c % len(triggers)]
        size = 5 + c * 3
        cid = f"poison-{c:03d}"
        members = []
        for k in range(size):
            if i >= n_quarantine:
                break
            text = f"{sentence(5)} {trig} {sentence(4)}"
            if hostile and k == 0:
                text += " " + HOSTILE[c % len(HOSTILE)]
            out = "Visit http://evil.example/payload now" if k % 2 == 0 else "I hate everyone. " + sentence(3)
            records.append({"raw": {"id": f"p{c}-{k}", "instruction": text, "output": out}, "action": "quarantine",
                            "reasons": [{"check": "poisoning", "rule": "trigger_response_association",
                                         "score": 0.99, "detail": f"trigger {trig!r}"}],
                            "cluster_id": cid, "evidence": f"{text[:160]} => {out[:60]}"})
            members.append(len(records) - 1)
            i += 1
        clusters.append({"cluster_id": cid, "check": "poisoning", "size": len(members),
                         "representative": None, "trigger": trig,
                         "statistic": f"p=1e-{20 + c * 5} (Fisher, Bonferroni)",
                         "members": None, "evidence": [records[m]["evidence"] for m in members[:8]],
                         "_members": members})
    d = 0
    n_hostile = 0
    while i < n_quarantine:
        kind = i % 10
        base = sentence()
        if hostile and n_hostile < len(HOSTILE):
            base += " " + HOSTILE[n_hostile]   # every payload at least once, in every section
            n_hostile += 1
        elif hostile and rnd.random() < 0.2:
            base += " " + rnd.choice(HOSTILE)
        if kind in (0, 1, 2):
            email = f"user{i}@example.com"
            raw = {"id": f"q{i}", "instruction": f"Contact me at {email} {base}", "output": sentence()}
            records.append({"raw": raw, "action": "quarantine",
                            "held": {"id": f"q{i}", "instruction": f"Contact me at <EMAIL_ADDRESS> {base}",
                                     "output": raw["output"]},
                            "reasons": [{"check": "pii", "rule": rnd.choice(["CREDIT_CARD", "US_SSN", "API_KEY"]),
                                         "score": round(0.5 + rnd.random() / 2, 3), "detail": "1 entity"}],
                            "evidence": f"Contact me at <EMAIL_ADDRESS> {base[:400]}"})
            i += 1
        elif kind in (3, 4, 5):
            score = round(0.5 + rnd.random() / 2, 3)
            records.append({"raw": {"id": f"q{i}", "instruction": base, "output": "you are all idiots " + base},
                            "action": "quarantine",
                            "reasons": [{"check": "toxicity", "rule": "fasttext", "score": score,
                                         "detail": f"p(toxic)={score}"}],
                            "evidence": "you are all idiots " + base[:400]})
            i += 1
        elif kind in (6, 7, 8):
            cid = f"dup-{d:05d}"
            d += 1
            size = min(dup_cluster_size, n_quarantine - i + 1)
            keep = len(records)
            records.append({"raw": {"id": f"q{i}-keep", "instruction": base, "output": "same"}, "action": "clean"})
            members = [keep]
            for k in range(size - 1):
                records.append({"raw": {"id": f"q{i}", "instruction": base + " " * (k + 1), "output": "same"},
                                "action": "drop_duplicate", "duplicate_of": None, "_dup_of": keep,
                                "reasons": [{"check": "near_duplicate", "rule": "minhash", "score": 0.95,
                                             "detail": "jaccard~0.95"}],
                                "cluster_id": cid, "evidence": base[:400]})
                members.append(len(records) - 1)
                i += 1
                if i >= n_quarantine:
                    break
            clusters.append({"cluster_id": cid, "check": "near_duplicate", "size": len(members),
                             "representative": None, "trigger": None, "statistic": "jaccard >= 0.8",
                             "members": None, "evidence": [base[:400]], "_members": members, "_rep": keep})
        else:
            records.append({"raw": {"broken": True, "text": base[:40]}, "action": "reject",
                            "reasons": [{"check": "malformed", "rule": "json", "score": 1.0,
                                         "detail": "Expecting ',' delimiter: line 1 column 40"}],
                            "evidence": base[:80] + '{"unterminated'})
            i += 1
    del qstart
    return records, clusters


def finish_clusters(records: List[Dict[str, Any]], clusters: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Fill doc_ids into clusters once write_scan (or doc_id_for) assigned them."""
    for i, r in enumerate(records):
        r["doc_id"] = r.get("doc_id") or doc_id_for(r.setdefault("source_path", "data/input.jsonl"),
                                                    r.setdefault("source_index", i), r["raw"])
    for r in records:
        if "_dup_of" in r:
            r["duplicate_of"] = records[r["_dup_of"]]["doc_id"]
    out = []
    for c in clusters:
        c = dict(c)
        c["members"] = [records[m]["doc_id"] for m in c.pop("_members")][:50]
        if "_rep" in c:
            c["representative"] = records[c.pop("_rep")]["doc_id"]
        out.append(c)
    return out


def build_synthetic_scan(out: str, n_clean: int = 40, n_quarantine: int = 60, seed: int = 7,
                         hostile: bool = True, policy_text: str = DEFAULT_POLICY) -> Dict[str, Any]:
    records, clusters = synthetic_records(n_clean, n_quarantine, seed=seed, hostile=hostile)
    for i, r in enumerate(records):
        r["source_path"] = "data/input.jsonl"
        r["source_index"] = i
    clusters = finish_clusters(records, clusters)
    policy = write_scan(out, records, clusters, policy_text=policy_text)
    return {"records": records, "clusters": clusters, "policy": policy, "dir": out}
