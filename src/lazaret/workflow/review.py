"""``lazaret review DIR list|show|release|confirm|close|incidents|verify``: human decisions on a scan.

Why a hash chain: the release gate and the release itself act on these decisions, so a decision edited,
deleted or reordered after the fact must be detectable. Each line of ``DIR/review/decisions.jsonl``
carries the sha256 of the previous line's canonical form (the first one the sha256 of the scan's
quarantine manifest, which binds the log to this scan), and ``review/HEAD.json`` records the count and
last hash so that a truncated tail is noticed too. Anyone with write access can still rewrite the whole
chain and HEAD: publish the head hash printed by each command (``release`` records it in its manifest)
where the scan folder's writers cannot change it if you need more than tamper evidence.

Confirming a finding of a check listed in the policy's ``incidents.open_on_confirm`` opens an incident in
``DIR/review/incidents.jsonl`` (chained the same way); ``close`` closes it with a reviewer and reason.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from lazaret.rules.errors import ConfigError
from lazaret.workflow.report.safetext import term
from lazaret.workflow.scandir import (PolicyRefused, ScanDir, ScanError, checked_policy_path, load_policy_sections,
                                      row_checks)
from lazaret.workflow.signing import KEY_ENV, check_seal, mac, mac_ok, signing_key

DECISIONS = "decisions.jsonl"
INCIDENTS = "incidents.jsonl"
HEAD = "HEAD.json"
RELEASABLE = ("quarantine",)
EVIDENCE_IN_INCIDENT = 5


class ReviewError(Exception):
    """A refused review command (bad target, blank reviewer, changed policy): exit status 2."""


# --- the hash chain ------------------------------------------------------------------------------------

def canonical(obj: Dict[str, Any]) -> bytes:
    """The bytes that are hashed: key-sorted, compact, ASCII-only JSON (stable across Python versions)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def entry_hash(entry: Dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in entry.items() if k not in ("hash", "mac")})).hexdigest()


def _head_payload(scan: ScanDir, head: Dict[str, Any]) -> bytes:
    """What HEAD.json's signature covers: both heads and the scan they belong to."""
    return canonical({"decisions": head.get("decisions"), "incidents": head.get("incidents"),
                      "scan": scan.fingerprint()})


def init_log(scan_dir: str) -> Dict[str, Any]:
    """Called by the scan: write an empty, anchored review log (``review/HEAD.json`` with zero entries,
    signed when LAZARET_SIGNING_KEY is set) and return the ``review_log`` entry for provenance.json.

    Why at scan time: a log that does not exist yet looks exactly like a log that was deleted. With the
    head written by the scan and named in provenance.json, deleting review/ is a verification failure."""
    scan = ScanDir(scan_dir)
    os.makedirs(review_dir(scan), exist_ok=True)
    head: Dict[str, Any] = {"decisions": {"count": 0, "hash": None}, "incidents": {"count": 0, "hash": None}}
    key = signing_key()
    if key:
        head["mac"] = mac(key, _head_payload(scan, head))
    with open(os.path.join(review_dir(scan), HEAD), "w", encoding="utf-8") as fh:
        json.dump(head, fh, sort_keys=True, indent=1)
        fh.write("\n")
    return {"head": f"review/{HEAD}", "signed": bool(key), "key_env": KEY_ENV}


def genesis(scan: ScanDir, kind: str) -> str:
    return hashlib.sha256(f"lazaret-{kind}-v1\n{scan.fingerprint()}".encode()).hexdigest()


def review_dir(scan: ScanDir) -> str:
    return scan.sub("review")


def _read_lines(path: str) -> List[Tuple[int, str]]:
    if not os.path.exists(path):
        return []
    with open(path, "r", encoding="utf-8", errors="surrogateescape") as fh:
        return [(i + 1, line) for i, line in enumerate(fh) if line.strip()]


def read_chain(path: str) -> List[Dict[str, Any]]:
    """Entries of a chain file, unverified (callers that act on them verify first)."""
    out = []
    for _, line in _read_lines(path):
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _read_head(scan: ScanDir) -> Dict[str, Any]:
    p = os.path.join(review_dir(scan), HEAD)
    if not os.path.exists(p):
        return {}
    try:
        with open(p, "r", encoding="utf-8") as fh:
            return json.load(fh)
    except ValueError:
        return {"_corrupt": True}


def verify_chain(scan: ScanDir, kind: str) -> Tuple[List[str], int, str]:
    """(problems, number of entries, head hash) for ``kind`` in ('decisions', 'incidents')."""
    path = os.path.join(review_dir(scan), DECISIONS if kind == "decisions" else INCIDENTS)
    name = os.path.relpath(path, scan.path)
    problems: List[str] = []
    prev = genesis(scan, kind)
    n = 0
    key = signing_key()
    for lineno, line in _read_lines(path):
        n += 1
        try:
            entry = json.loads(line)
        except ValueError:
            problems.append(f"{name}:{lineno}: not valid JSON (edited?)")
            continue
        if not isinstance(entry, dict):
            problems.append(f"{name}:{lineno}: not a JSON object")
            continue
        if entry.get("seq") != n:
            problems.append(f"{name}:{lineno}: seq {entry.get('seq')!r}, expected {n} (entry deleted or reordered)")
        if entry.get("prev") != prev:
            problems.append(f"{name}:{lineno}: prev hash does not match the entry before it "
                            f"(entry deleted, inserted or reordered, or decisions copied from another scan)")
        if entry.get("hash") != entry_hash(entry):
            problems.append(f"{name}:{lineno}: content does not match its hash (entry edited)")
        elif key and not mac_ok(key, str(entry["hash"]).encode("ascii", "replace"), entry.get("mac")):
            problems.append(f"{name}:{lineno}: signature missing or wrong (entry written without {KEY_ENV}, "
                            f"or forged)")
        prev = entry.get("hash") or ""
    head = _read_head(scan)
    anchored = isinstance(scan.provenance().get("review_log"), dict)
    if head.get("_corrupt"):
        problems.append(f"review/{HEAD}: not valid JSON")
    elif not head and anchored:
        problems.append(f"review/{HEAD} is missing or empty, but provenance.json names this scan's review log "
                        f"(review/ deleted or reset?)")
    else:
        h = head.get(kind)
        if key and head and not mac_ok(key, _head_payload(scan, head), head.get("mac")):
            problems.append(f"review/{HEAD}: signature missing or wrong (rewritten without {KEY_ENV}?)")
        if h is None:
            if n or anchored:
                problems.append(f"review/{HEAD}: missing the {kind} head ({n} entries on file)")
        elif h.get("count") != n or h.get("hash") != (prev if n else None):
            problems.append(f"review/{HEAD}: records {h.get('count')} {kind} ending in {str(h.get('hash'))[:12]}, "
                            f"file has {n} ending in {prev[:12] if n else None} (entries removed or added)")
    return problems, n, (prev if n else genesis(scan, kind))


def verify_all(scan: ScanDir) -> List[str]:
    """Both chains, plus: every incident a decision opened is on file, and vice versa; with
    LAZARET_SIGNING_KEY set, the scan's seal too (provenance.json, summary.json, manifests unchanged)."""
    problems = signature_problems(scan)
    p1, _, _ = verify_chain(scan, "decisions")
    problems += p1
    p2, _, _ = verify_chain(scan, "incidents")
    problems += p2
    if problems:
        return problems
    opened_by_decisions = {i for d in read_chain(os.path.join(review_dir(scan), DECISIONS))
                           for i in d.get("opens", [])}
    opened = {e["incident_id"] for e in read_chain(os.path.join(review_dir(scan), INCIDENTS))
              if e.get("event") == "open"}
    for missing in sorted(opened_by_decisions - opened):
        problems.append(f"incident {missing} opened by a decision is missing from review/{INCIDENTS}")
    for extra in sorted(opened - opened_by_decisions):
        problems.append(f"incident {extra} in review/{INCIDENTS} was not opened by any decision")
    return problems


def signature_problems(scan: ScanDir) -> List[str]:
    """With a key: the seal must hold. Without one: a scan that says it was signed cannot be verified."""
    key = signing_key()
    if key:
        return check_seal(scan.path, key)
    log = scan.provenance().get("review_log")
    if isinstance(log, dict) and log.get("signed"):
        return [f"this scan and its review log were signed: set {KEY_ENV} to verify them"]
    return []


def heads(scan: ScanDir) -> Dict[str, Any]:
    """The heads a verdict was based on (printed by verify and the gate, so they can be published)."""
    _, n, head = verify_chain(scan, "decisions")
    _, ni, ihead = verify_chain(scan, "incidents")
    return {"decisions": {"count": n, "head": head}, "incidents": {"count": ni, "head": ihead},
            "signed": bool(signing_key())}


@contextlib.contextmanager
def _locked(scan: ScanDir) -> Iterator[None]:
    """One writer at a time (two reviewers appending concurrently must not fork the chain)."""
    os.makedirs(review_dir(scan), exist_ok=True)
    with open(os.path.join(review_dir(scan), ".lock"), "w") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - non-POSIX
            pass
        yield


def _append(scan: ScanDir, kind: str, entry: Dict[str, Any]) -> Dict[str, Any]:
    """Append to a chain (caller holds the lock and has verified it). Returns the stored entry."""
    path = os.path.join(review_dir(scan), DECISIONS if kind == "decisions" else INCIDENTS)
    _, n, prev = verify_chain(scan, kind)
    entry = dict(entry, v=1, seq=n + 1, prev=prev)
    entry["hash"] = entry_hash(entry)
    key = signing_key()
    if key:
        entry["mac"] = mac(key, entry["hash"].encode("ascii"))
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(canonical(entry).decode("ascii") + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    head = _read_head(scan)
    head = {} if head.get("_corrupt") else head
    head[kind] = {"count": n + 1, "hash": entry["hash"]}
    head.pop("mac", None)
    if key:
        head["mac"] = mac(key, _head_payload(scan, head))
    tmp = os.path.join(review_dir(scan), HEAD + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(head, fh, sort_keys=True, indent=1)
        fh.write("\n")
    os.replace(tmp, os.path.join(review_dir(scan), HEAD))
    return entry


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# --- state derived from the chain ----------------------------------------------------------------------

@dataclass
class ReviewState:
    """What the decisions add up to. The last decision about a doc wins (reversals are allowed, logged)."""

    decisions: List[Dict[str, Any]] = field(default_factory=list)
    doc: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    cluster: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    incidents: Dict[str, Dict[str, Any]] = field(default_factory=dict)

    def status(self, doc_id: str) -> str:
        d = self.doc.get(doc_id)
        return {"release": "released", "confirm": "confirmed"}.get(d["action"], "unreviewed") if d else "unreviewed"

    def open_incidents(self) -> List[Dict[str, Any]]:
        return [i for _, i in sorted(self.incidents.items()) if i.get("status") == "open"]

    def released(self) -> Dict[str, Dict[str, Any]]:
        return {d: e for d, e in sorted(self.doc.items()) if e["action"] == "release"}


def load_state(scan: ScanDir) -> ReviewState:
    st = ReviewState()
    st.decisions = read_chain(os.path.join(review_dir(scan), DECISIONS))
    for e in st.decisions:
        if e.get("action") not in ("release", "confirm"):
            continue
        for d in e.get("doc_ids", []):
            st.doc[d] = e
        if e.get("target_kind") == "cluster":
            st.cluster[e["target"]] = e
    for e in read_chain(os.path.join(review_dir(scan), INCIDENTS)):
        iid = e.get("incident_id")
        if e.get("event") == "open":
            st.incidents[iid] = dict(e, status="open")
        elif e.get("event") == "close" and iid in st.incidents:
            st.incidents[iid].update(status="closed", closed_by=e.get("who"), closed_at=e.get("time"),
                                     close_reason=e.get("reason"))
    return st


def cluster_reviewed(scan: ScanDir, st: ReviewState, cluster_id: str) -> bool:
    """A cluster is reviewed when a decision names it, or every quarantined member has a decision."""
    if cluster_id in st.cluster:
        return True
    members = scan.cluster_member_rows(cluster_id)
    return bool(members) and all(m["doc_id"] in st.doc for m in members)


# --- targets -------------------------------------------------------------------------------------------

def resolve(scan: ScanDir, ident: str) -> Tuple[str, List[Dict[str, Any]], Optional[Dict[str, Any]]]:
    """('doc'|'cluster', quarantine rows, cluster row or None) for an exact doc_id or cluster_id."""
    row = scan.quarantine_by_id().get(ident)
    if row is not None:
        return "doc", [row], scan.cluster_by_id().get(row.get("cluster_id") or "")
    cluster = scan.cluster_by_id().get(ident)
    if cluster is not None:
        return "cluster", scan.cluster_member_rows(ident), cluster
    raise ReviewError(f"{ident!r} is neither a quarantined doc_id nor a cluster_id of this scan "
                      f"(see `lazaret review DIR list`)")


def _policy_sections(scan: ScanDir, override: Optional[str]) -> Dict[str, Dict[str, Any]]:
    """Incidents follow the policy the scan ran under; a changed policy is refused like the gate does."""
    try:
        return load_policy_sections(checked_policy_path(scan, override))
    except PolicyRefused as exc:
        raise ReviewError(str(exc)) from None


def _incidents_to_open(rows: Sequence[Dict[str, Any]], cluster: Optional[Dict[str, Any]], kind: str,
                       checks: Optional[Sequence[str]], policy: Dict[str, Any]) -> List[Tuple[str, str]]:
    """(check, severity) pairs the policy says this confirmation opens."""
    found: Dict[str, List[str]] = {}
    for r in rows:
        for reason in r["reasons"]:
            found.setdefault(reason["check"], []).append(reason.get("rule") or "")
    if kind == "cluster" and cluster and cluster.get("check"):
        found.setdefault(cluster["check"], [])
    if checks:
        found = {c: v for c, v in found.items() if c in checks}
    out = []
    for check, severity in sorted(policy.get("open_on_confirm", {}).items()):
        if check not in found:
            continue
        if check == "pii" and policy.get("pii_rules"):
            if not set(found["pii"]) & set(policy["pii_rules"]):
                continue
        out.append((check, severity))
    return out


def decide(scan: ScanDir, action: str, ident: str, reviewer: str, reason: str,
           checks: Optional[Sequence[str]] = None, policy_path: Optional[str] = None) -> Dict[str, Any]:
    """Record a release or confirm decision (and the incidents it opens). Returns the decision entry."""
    if not reviewer or not reviewer.strip():
        raise ReviewError("--reviewer must name a person")
    if not reason or not reason.strip():
        raise ReviewError("--reason must say why")
    kind, rows, cluster = resolve(scan, ident)
    skipped = 0
    if action == "release":
        held = scan.held_ids()
        releasable = [r for r in rows if r["action"] in RELEASABLE and r["doc_id"] in held]
        skipped = len(rows) - len(releasable)
        rows = releasable
        if not rows:
            raise ReviewError(f"{ident}: nothing to release: only records held for review (action quarantine, "
                              f"kept in held/) can be released; rejects are unreadable and dropped duplicates "
                              f"have a kept copy")
    if not rows and not (kind == "cluster"):
        raise ReviewError(f"{ident}: no quarantined records")
    to_open: List[Tuple[str, str]] = []
    inc_policy: Dict[str, Any] = {}
    owner: Dict[str, Any] = {}
    if action == "confirm":
        sections = _policy_sections(scan, policy_path)
        inc_policy = sections.get("incidents", {})
        owner = sections.get("owner", {})
        to_open = _incidents_to_open(rows, cluster, kind, checks, inc_policy)
    with _locked(scan):
        problems = verify_all(scan)
        if problems:
            raise ReviewError("review log fails verification; no decision recorded:\n  " + "\n  ".join(problems))
        st = load_state(scan)
        first = len(st.incidents) + 1
        opens = [f"INC-{first + i:04d}" for i in range(len(to_open))]
        entry = {
            "time": _now(), "action": action, "target_kind": kind, "target": ident,
            "doc_ids": sorted(r["doc_id"] for r in rows), "checks": sorted(checks) if checks else None,
            "reviewer": reviewer.strip(), "reason": reason.strip(), "opens": opens,
        }
        if skipped:
            entry["not_releasable"] = skipped
        stored = _append(scan, "decisions", entry)
        for iid, (check, severity) in zip(opens, to_open):
            evidence = [r.get("evidence") or "" for r in rows[:EVIDENCE_IN_INCIDENT]]
            what = f"confirmed {check} finding on {kind} {ident} ({len(rows)} record(s))"
            if cluster and kind == "cluster":
                if cluster.get("trigger"):
                    what += f"; trigger/payload: {cluster['trigger']}"
                if cluster.get("statistic"):
                    what += f"; statistic: {cluster['statistic']}"
            _append(scan, "incidents", {
                "time": stored["time"], "event": "open", "incident_id": iid, "check": check,
                "severity": severity, "what": what, "who": stored["reviewer"], "reason": stored["reason"],
                "cluster_id": (cluster or {}).get("cluster_id") if kind == "cluster" else
                rows[0].get("cluster_id") if rows else None,
                "doc_ids": stored["doc_ids"], "evidence": evidence, "decision": stored["hash"],
                "owner": owner.get("name"), "notify": list(inc_policy.get("notify", [])),
            })
    return stored


def close_incident(scan: ScanDir, incident_id: str, reviewer: str, reason: str) -> Dict[str, Any]:
    if not reviewer or not reviewer.strip() or not reason or not reason.strip():
        raise ReviewError("--reviewer and --reason are required and must not be blank")
    with _locked(scan):
        problems = verify_all(scan)
        if problems:
            raise ReviewError("review log fails verification; nothing recorded:\n  " + "\n  ".join(problems))
        st = load_state(scan)
        inc = st.incidents.get(incident_id)
        if inc is None:
            raise ReviewError(f"no incident {incident_id!r}")
        if inc["status"] != "open":
            raise ReviewError(f"incident {incident_id} is already closed")
        stored = _append(scan, "decisions", {
            "time": _now(), "action": "close", "target_kind": "incident", "target": incident_id, "doc_ids": [],
            "checks": None, "reviewer": reviewer.strip(), "reason": reason.strip(), "opens": []})
        _append(scan, "incidents", {"time": stored["time"], "event": "close", "incident_id": incident_id,
                                    "who": stored["reviewer"], "reason": stored["reason"],
                                    "decision": stored["hash"]})
    return stored


# --- command line --------------------------------------------------------------------------------------

def _reason_text(row: Dict[str, Any]) -> str:
    return ",".join(sorted({f"{r['check']}:{r.get('rule') or ''}" for r in row["reasons"]}))


def _cmd_list(scan: ScanDir, args: argparse.Namespace, out) -> int:
    st = load_state(scan)
    if args.clusters:
        rows = [c for c in scan.clusters() if not args.check or c.get("check") == args.check]
        print(f"{len(rows)} cluster(s)", file=out)
        for c in rows[: args.limit]:
            status = "reviewed" if cluster_reviewed(scan, st, c["cluster_id"]) else "unreviewed"
            if args.json:
                print(json.dumps({"cluster_id": c["cluster_id"], "check": c.get("check"), "size": c["size"],
                                  "status": status, "trigger": c.get("trigger"),
                                  "statistic": c.get("statistic")}, ensure_ascii=True), file=out)
            else:
                print("\t".join([term(c["cluster_id"], one_line=True), term(c.get("check"), one_line=True),
                                  str(c["size"]), status, term(c.get("trigger"), 60, one_line=True),
                                  term(c.get("statistic"), 60, one_line=True)]),
                      file=out)
        return 0
    rows = scan.quarantine_rows()
    if args.action:
        rows = [r for r in rows if r["action"] == args.action]
    if args.check:
        rows = [r for r in rows if args.check in row_checks(r)]
    if args.cluster:
        rows = [r for r in rows if r.get("cluster_id") == args.cluster]
    if args.status:
        rows = [r for r in rows if st.status(r["doc_id"]) == args.status]
    print(f"{len(rows)} record(s)" + (f", showing {args.limit}" if len(rows) > args.limit else ""), file=out)
    for r in rows[: args.limit]:
        if args.json:
            print(json.dumps({"doc_id": r["doc_id"], "action": r["action"], "reasons": _reason_text(r),
                              "cluster_id": r.get("cluster_id"), "status": st.status(r["doc_id"]),
                              "evidence": term(r.get("evidence"), 200)}, ensure_ascii=True), file=out)
        else:
            print("\t".join([term(r["doc_id"], one_line=True), term(r["action"], one_line=True),
                             term(_reason_text(r), 60, one_line=True), term(r.get("cluster_id") or "-", one_line=True),
                             st.status(r["doc_id"]), term(r.get("evidence"), 80, one_line=True)]), file=out)
    return 0


def _cmd_show(scan: ScanDir, args: argparse.Namespace, out) -> int:
    kind, rows, cluster = resolve(scan, args.id)
    st = load_state(scan)
    if kind == "cluster":
        c = cluster or {}
        print(f"cluster {term(args.id, one_line=True)}  check={term(c.get('check'), one_line=True)}  "
              f"size={c.get('size')}", file=out)
        for key in ("trigger", "statistic", "representative"):
            if c.get(key):
                print(f"  {key}: {term(c[key], 300, one_line=True)}", file=out)
        print(f"  review: {'reviewed' if cluster_reviewed(scan, st, args.id) else 'unreviewed'}", file=out)
        for ev in c.get("evidence", [])[: args.limit]:
            print(f"  evidence: {term(ev, 300, one_line=True)}", file=out)
        print(f"  {len(rows)} quarantined member(s):", file=out)
        for r in rows[: args.limit]:
            print(f"    {r['doc_id']}  {r['action']}  {st.status(r['doc_id'])}  "
                  f"{term(r.get('evidence'), 100, one_line=True)}", file=out)
        return 0
    r = rows[0]
    held = scan.held_records({r["doc_id"]}).get(r["doc_id"])
    print(f"doc {r['doc_id']}  action={r['action']}  review={st.status(r['doc_id'])}", file=out)
    print(f"  source: {term(r.get('source_path'), one_line=True)}:{r.get('source_index')}  "
          f"record_id={term(r.get('record_id'), one_line=True)}", file=out)
    if r.get("cluster_id"):
        print(f"  cluster: {term(r['cluster_id'], one_line=True)}", file=out)
    if r.get("duplicate_of"):
        print(f"  duplicate_of: {term(r['duplicate_of'], one_line=True)}", file=out)
    for reason in r["reasons"]:
        print(f"  reason: {term(reason['check'], one_line=True)}:{term(reason.get('rule'), one_line=True)} "
              f"score={reason.get('score')} "
              f"{term(reason.get('detail'), 200, one_line=True)}", file=out)
    print(f"  evidence: {term(r.get('evidence'), 500, one_line=True)}", file=out)
    if held is not None:
        text = json.dumps(held.get("record"), ensure_ascii=False, indent=1, sort_keys=True)
        print("  held record (as it would be released):", file=out)
        print("    " + term(text, 4000).replace("\n", "\n    "), file=out)
    for e in st.decisions:
        if r["doc_id"] in e.get("doc_ids", []):
            print(f"  decision #{e['seq']} {e['action']} by {term(e['reviewer'], one_line=True)} at "
                  f"{term(e['time'], one_line=True)}: "
                  f"{term(e['reason'], 200, one_line=True)}", file=out)
    return 0


def _cmd_incidents(scan: ScanDir, args: argparse.Namespace, out) -> int:
    st = load_state(scan)
    for iid, inc in sorted(st.incidents.items()):
        print("\t".join(term(v, one_line=True) for v in (iid, inc['status'], inc.get('severity'), inc.get('check'),
                                                          inc.get('who'), inc.get('time')))
              + f"\t{term(inc.get('what'), 120, one_line=True)}", file=out)
    print(f"{len(st.open_incidents())} open incident(s)", file=out)
    return 0


def _cmd_verify(scan: ScanDir, args: argparse.Namespace, out) -> int:
    problems = verify_all(scan)
    _, n, head = verify_chain(scan, "decisions")
    _, ni, ihead = verify_chain(scan, "incidents")
    if problems:
        for p in problems:
            print(f"FAIL {term(p, one_line=True)}", file=out)
        return 1
    signed = ("signatures verified with " + KEY_ENV) if signing_key() else \
        (f"unsigned: without {KEY_ENV} a rewrite of the whole log and review/{HEAD} is not detectable; "
         "publish the heads where the scan folder's writers cannot change them")
    print(f"OK {n} decision(s), head {head}; {ni} incident entr{'y' if ni == 1 else 'ies'}, head {ihead} "
          f"({signed})", file=out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lazaret review", description=__doc__.split("\n\n")[0])
    p.add_argument("dir", help="scan output folder")
    sub = p.add_subparsers(dest="cmd", required=True)
    lp = sub.add_parser("list", help="list quarantined records (or --clusters)")
    lp.add_argument("--clusters", action="store_true")
    lp.add_argument("--action", choices=("quarantine", "drop_duplicate", "reject"))
    lp.add_argument("--check")
    lp.add_argument("--cluster")
    lp.add_argument("--status", choices=("unreviewed", "released", "confirmed"))
    lp.add_argument("--limit", type=int, default=50)
    lp.add_argument("--json", action="store_true")
    sp = sub.add_parser("show", help="show one doc_id or cluster_id")
    sp.add_argument("id")
    sp.add_argument("--limit", type=int, default=20)
    for name, help_ in (("release", "put a quarantined record or cluster into the released set"),
                        ("confirm", "confirm the finding is real (record stays out; may open an incident)")):
        dp = sub.add_parser(name, help=help_)
        dp.add_argument("id", help="doc_id or cluster_id")
        dp.add_argument("--reviewer", required=True)
        dp.add_argument("--reason", required=True)
        dp.add_argument("--policy", help="policy file (default: the one recorded in provenance.json)")
        if name == "confirm":
            dp.add_argument("--check", action="append", help="confirm only this check's findings (repeatable)")
    cp = sub.add_parser("close", help="close an incident")
    cp.add_argument("id", help="incident id, e.g. INC-0001")
    cp.add_argument("--reviewer", required=True)
    cp.add_argument("--reason", required=True)
    sub.add_parser("incidents", help="list incidents")
    sub.add_parser("verify", help="check the decision and incident hash chains")
    return p


def main(argv: Optional[Sequence[str]] = None, out=None) -> int:
    out = out or sys.stdout
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        scan = ScanDir(args.dir)
        if args.cmd == "list":
            return _cmd_list(scan, args, out)
        if args.cmd == "show":
            return _cmd_show(scan, args, out)
        if args.cmd == "incidents":
            return _cmd_incidents(scan, args, out)
        if args.cmd == "verify":
            return _cmd_verify(scan, args, out)
        if args.cmd == "close":
            e = close_incident(scan, args.id, args.reviewer, args.reason)
        else:
            e = decide(scan, args.cmd, args.id, args.reviewer, args.reason,
                       checks=getattr(args, "check", None), policy_path=args.policy)
        print(f"recorded decision #{e['seq']} {e['action']} {e['target_kind']} {term(e['target'])} "
              f"({len(e['doc_ids'])} record(s)); head {e['hash']}", file=out)
        if e.get("not_releasable"):
            print(f"{e['not_releasable']} member(s) not releasable (dropped duplicates or rejects) were left out",
                  file=out)
        for iid in e.get("opens", []):
            print(f"opened incident {iid}", file=out)
        return 0
    except (ScanError, ReviewError, ConfigError) as exc:
        print(f"lazaret review: {term(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `lazaret review DIR list | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
