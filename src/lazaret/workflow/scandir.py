"""Read-only access to a finished scan's output DIR (DESIGN.md section 2), shared by report, review,
release and gate.

Why one reader: the four commands must agree on what a scan contains (which doc_ids are quarantined,
which clusters exist), and they must all tolerate optional parts (clusters/, held/, clean_index/) being
absent in scans made with fewer checks.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pyarrow as pa
import pyarrow.parquet as pq
from lazaret.graph.hashing import sha256_file  # noqa: F401 - re-exported

ACTIONS = ("clean", "quarantine", "drop_duplicate", "reject")


class ScanError(Exception):
    """The DIR is not a usable scan output (missing or unreadable parts)."""


def _parts(path: str, pattern: str) -> List[str]:
    return sorted(glob.glob(os.path.join(path, pattern)))


def read_parquet_dir(path: str, columns: Optional[Sequence[str]] = None) -> Optional[pa.Table]:
    """All ``part-*.parquet`` files of a folder as one table; None when the folder does not exist."""
    if not os.path.isdir(path):
        return None
    files = _parts(path, "*.parquet")
    if not files:
        return None
    tables = []
    for f in files:
        pf = pq.ParquetFile(f)
        cols = None
        if columns is not None:
            names = set(pf.schema_arrow.names)
            cols = [c for c in columns if c in names]
        tables.append(pf.read(columns=cols))
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")


class ScanDir:
    """A scan output folder. Tables are read lazily and cached on the instance (not module state)."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        if not os.path.isdir(self.path):
            raise ScanError(f"{path}: not a directory")
        if not (os.path.isdir(self.sub("quarantine")) or os.path.exists(self.sub("summary.json"))):
            raise ScanError(f"{path}: not a lazaret scan output (no quarantine/ and no summary.json)")
        self._cache: Dict[str, Any] = {}

    def sub(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    # --- JSON side files -------------------------------------------------------------------------
    def _json(self, name: str) -> Dict[str, Any]:
        if name not in self._cache:
            p = self.sub(name)
            if os.path.exists(p):
                with open(p, "r", encoding="utf-8") as fh:
                    self._cache[name] = json.load(fh)
            else:
                self._cache[name] = {}
        return self._cache[name]

    def summary(self) -> Dict[str, Any]:
        return self._json("summary.json")

    def provenance(self) -> Dict[str, Any]:
        return self._json("provenance.json")

    # --- manifests --------------------------------------------------------------------------------
    def quarantine_rows(self) -> List[Dict[str, Any]]:
        """Every quarantine-manifest row as a dict, sorted by doc_id (deterministic order)."""
        if "q" not in self._cache:
            t = read_parquet_dir(self.sub("quarantine"))
            rows = t.to_pylist() if t is not None else []
            for r in rows:
                r["reasons"] = r.get("reasons") or []
            rows.sort(key=lambda r: (r.get("doc_id") or ""))
            self._cache["q"] = rows
        return self._cache["q"]

    def quarantine_by_id(self) -> Dict[str, Dict[str, Any]]:
        if "qid" not in self._cache:
            self._cache["qid"] = {r["doc_id"]: r for r in self.quarantine_rows()}
        return self._cache["qid"]

    def clusters(self) -> List[Dict[str, Any]]:
        """clusters/ rows, plus clusters only known from quarantine rows' cluster_id (size counted there)."""
        if "c" not in self._cache:
            t = read_parquet_dir(self.sub("clusters"))
            rows = t.to_pylist() if t is not None else []
            known = {r["cluster_id"] for r in rows}
            members: Dict[str, List[Dict[str, Any]]] = {}
            for q in self.quarantine_rows():
                cid = q.get("cluster_id")
                if cid:
                    members.setdefault(cid, []).append(q)
            for cid in sorted(set(members) - known):
                qs = members[cid]
                poisoned = all(any(r["check"] == "poisoning" for r in q["reasons"]) for q in qs)
                rows.append({"cluster_id": cid, "check": "poisoning" if poisoned else "near_duplicate",
                             "size": len(qs), "representative": None, "trigger": None, "statistic": None,
                             "members": [q["doc_id"] for q in qs], "evidence": [], "grouped": "cluster_id"})
            # Poisoning findings outside any poisoning cluster (e.g. known-trigger signature matches) are
            # grouped by rule, so that they are reviewed, and gated, like clusters: id "poisoning:<rule>".
            in_poison = {d for r in rows if r.get("check") == "poisoning" for d in (r.get("members") or [])}
            by_rule: Dict[str, List[Dict[str, Any]]] = {}
            for q in self.quarantine_rows():
                if q["doc_id"] in in_poison:
                    continue
                rules = sorted({r.get("rule") or "?" for r in q["reasons"] if r["check"] == "poisoning"})
                if rules:
                    by_rule.setdefault(rules[0], []).append(q)
            literals = self.signature_literals()
            for rule, qs in sorted(by_rule.items()):
                details = sorted({r.get("detail") or "" for q in qs for r in q["reasons"]
                                  if r["check"] == "poisoning" and (r.get("rule") or "?") == rule})
                rows.append({"cluster_id": f"poisoning:{rule}", "check": "poisoning", "size": len(qs),
                             "representative": None,
                             "trigger": literals.get(rule[len("signature:"):]) if rule.startswith("signature:") else None,
                             "statistic": f"{len(qs)} record(s) matched {rule}" + (f": {details[0]}" if details else ""),
                             "members": [q["doc_id"] for q in qs], "evidence": [q.get("evidence") or "" for q in qs[:8]],
                             "grouped": "rule"})
            for r in rows:
                r["members"] = r.get("members") or []
                r["evidence"] = r.get("evidence") or []
                r["size"] = int(r.get("size") or len(r["members"]))
            rows.sort(key=lambda r: (0 if r.get("check") == "poisoning" else 1, -r["size"], r["cluster_id"]))
            self._cache["c"] = rows
        return self._cache["c"]

    def signature_literals(self) -> Dict[str, str]:
        """name -> literal of the trigger signature files the scan used (to highlight them), when still
        present and unchanged (sha256 as recorded in provenance.json); regex signatures are not used."""
        out: Dict[str, str] = {}
        for entry in self.provenance().get("rules") or []:
            if not isinstance(entry, dict) or entry.get("kind") != "triggers" or not entry.get("path"):
                continue
            path = entry["path"]
            try:
                if not os.path.exists(path) or sha256_file(path) != entry.get("sha256"):
                    continue
                import yaml

                with open(path, "r", encoding="utf-8") as fh:
                    data = yaml.safe_load(fh) or {}
            except Exception:  # noqa: BLE001 - highlighting is optional, never fatal
                continue
            for sig in data.get("signatures") or [] if isinstance(data, dict) else []:
                if isinstance(sig, dict) and isinstance(sig.get("literal"), str) and sig.get("name"):
                    out[str(sig["name"])] = sig["literal"]
        return out

    def cluster_by_id(self) -> Dict[str, Dict[str, Any]]:
        if "cid" not in self._cache:
            self._cache["cid"] = {c["cluster_id"]: c for c in self.clusters()}
        return self._cache["cid"]

    def cluster_member_rows(self, cluster_id: str) -> List[Dict[str, Any]]:
        """Quarantine rows belonging to a cluster: by cluster_id, plus listed members found in quarantine."""
        byid = self.quarantine_by_id()
        if "byc" not in self._cache:
            byc: Dict[str, List[Dict[str, Any]]] = {}
            for q in self.quarantine_rows():
                if q.get("cluster_id"):
                    byc.setdefault(q["cluster_id"], []).append(q)
            self._cache["byc"] = byc
        out = {q["doc_id"]: q for q in self._cache["byc"].get(cluster_id, [])}
        c = self.cluster_by_id().get(cluster_id)
        if c:
            for d in c["members"]:
                if d in byid:
                    out[d] = byid[d]
        return [out[k] for k in sorted(out)]

    def findings(self, columns: Sequence[str] = ("doc_id", "check", "rule", "side", "score")) -> Optional[pa.Table]:
        return read_parquet_dir(self.sub("findings"), columns=columns)

    # --- records ----------------------------------------------------------------------------------
    def held_records(self, doc_ids: Optional[set] = None) -> Dict[str, Dict[str, Any]]:
        """doc_id -> held line ({"doc_id", "record", ...}) from held/part-*.jsonl.gz."""
        out: Dict[str, Dict[str, Any]] = {}
        for f in _parts(self.sub("held"), "part-*.jsonl*"):
            opener = gzip.open if f.endswith(".gz") else open
            with opener(f, "rt", encoding="utf-8") as fh:
                for line in fh:
                    if not line.strip():
                        continue
                    obj = json.loads(line)
                    d = obj.get("doc_id")
                    if doc_ids is None or d in doc_ids:
                        out[d] = obj
        return out

    def held_ids(self) -> set:
        """doc_ids the scan kept a copy of (releasable): from held_index/ when present, else held/."""
        if "hid" not in self._cache:
            t = read_parquet_dir(self.sub("held_index"), columns=("doc_id",))
            if t is not None:
                self._cache["hid"] = set(t.column("doc_id").to_pylist())
            else:
                self._cache["hid"] = set(self.held_records())
        return self._cache["hid"]

    def clean_shards(self) -> List[str]:
        return _parts(self.sub("clean"), "part-*.jsonl*")

    def iter_clean_lines(self) -> Iterator[Tuple[str, int, bytes]]:
        """(shard basename, 0-based line number, raw line bytes without newline) over clean/ in order."""
        for f in self.clean_shards():
            opener = gzip.open if f.endswith(".gz") else open
            with opener(f, "rb") as fh:
                n = 0
                for line in fh:
                    line = line.rstrip(b"\r\n")
                    if not line.strip():
                        continue
                    yield os.path.basename(f), n, line
                    n += 1

    def clean_index(self) -> Optional[pa.Table]:
        return read_parquet_dir(self.sub("clean_index"))

    # --- identity ---------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """sha256 over the quarantine manifest files: binds review decisions to this very scan."""
        hsh = hashlib.sha256(b"lazaret-scan-v1\n")
        for f in _parts(self.sub("quarantine"), "*.parquet"):
            hsh.update(os.path.basename(f).encode() + b"\n")
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    hsh.update(chunk)
        return hsh.hexdigest()

    def records_in(self) -> int:
        s = self.summary()
        if "records_in" in s:
            return int(s["records_in"])
        counts = self.action_counts()
        return sum(counts.values())

    def action_counts(self) -> Dict[str, int]:
        s = self.summary().get("actions")
        if s:
            return {a: int(s.get(a, 0)) for a in ACTIONS}
        counts = {a: 0 for a in ACTIONS}
        for q in self.quarantine_rows():
            counts[q["action"]] = counts.get(q["action"], 0) + 1
        return counts


def row_checks(row: Dict[str, Any]) -> List[str]:
    return sorted({r["check"] for r in row.get("reasons") or []})




def scan_policy_path(scan: ScanDir, override: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    """(policy path to use, policy sha256 recorded at scan time)."""
    prov = scan.provenance().get("policy") or {}
    recorded = prov.get("sha256")
    path = override or prov.get("path")
    if path and not os.path.isabs(path) and not os.path.exists(path):
        # A relative path recorded at scan time may be relative to the scan's working directory.
        cwd = scan.provenance().get("cwd")
        if cwd and os.path.exists(os.path.join(cwd, path)):
            path = os.path.join(cwd, path)
    return path, recorded


class PolicyRefused(Exception):
    """The policy at hand is not the one the scan ran under: judging with it would move the goalposts."""


def checked_policy_path(scan: ScanDir, override: Optional[str]) -> Optional[str]:
    """The policy file to judge this scan with (None: the built-in defaults the scan itself used).

    Raises PolicyRefused unless its sha256 equals the one provenance.json recorded at scan time.
    """
    from lazaret import __version__

    prov = scan.provenance()
    pol = prov.get("policy")
    if not isinstance(pol, dict):
        raise PolicyRefused("provenance.json records no policy; cannot tell whether the criteria were fixed "
                            "before the scan")
    recorded = pol.get("sha256")
    if recorded is None:
        if pol.get("embedded_defaults") and override is None:
            version = (prov.get("tool") or {}).get("version") if isinstance(prov.get("tool"), dict) else None
            if version not in (None, __version__):
                raise PolicyRefused(f"the scan ran with lazaret {version}'s built-in policy; this is "
                                    f"{__version__}, whose defaults may differ: pass the policy explicitly")
            return None
        raise PolicyRefused("provenance.json records no policy sha256 (the scan used the built-in defaults); "
                            "a policy file given now was not fixed before the scan")
    path, _ = scan_policy_path(scan, override)
    if not path:
        raise PolicyRefused("provenance.json records no policy path; pass --policy FILE")
    if not os.path.exists(path):
        raise PolicyRefused(f"policy file {path} not found; pass --policy FILE")
    actual = sha256_file(path)
    if actual != recorded:
        raise PolicyRefused(f"policy file {path} has sha256 {actual[:16]}..., but the scan ran under "
                            f"{recorded[:16]}... (provenance.json): the policy was changed after the scan. "
                            f"Re-scan with the new policy, or use the original file.")
    return path


def load_policy_sections(path: Optional[str]) -> Dict[str, Dict[str, Any]]:
    """Validated policy sections through the lead's loader (raises lazaret.rules.errors.ConfigError)."""
    from lazaret.rules.policy import load_policy

    return load_policy(path).sections
