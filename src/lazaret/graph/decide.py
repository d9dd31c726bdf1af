"""From findings to one action per record.

Precedence: reject (malformed, or a check failed on the record) > quarantine (held for review) >
drop_duplicate > clean. Every finding that led to the action becomes a reason; flags ride along in
findings/ but do not hold a record back.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Dict, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from lazaret.graph.mask import snippet

CLEAN = "clean"
QUARANTINE = "quarantine"
DROP = "drop_duplicate"
REJECT = "reject"
ACTIONS = (CLEAN, QUARANTINE, DROP, REJECT)


def decisive(f: Dict[str, Any]) -> bool:
    """Whether a finding can change what :class:`Decide` writes for its record: an action other than
    ``none``, a span (redaction, flag, masked evidence), a cluster (cluster evidence) or a reject.

    Why: every check emits a finding for every record it ran on (score 0 when it found nothing), so most
    findings cannot change a decision. Only these cross the shuffle that joins findings with records;
    all of them still go to ``findings/``.
    """
    return f["action"] != "none" or bool(f.get("spans")) or bool(f.get("cluster_id")) or f["check"] == "malformed"


#: what :class:`Decide` reads of a record (the joined prompt, response and text repeat ``fields``)
DECISION_KEYS = ("doc_id", "record_id", "source_path", "source_index", "content_sha256", "raw", "fields", "meta")


def for_decision(record: Dict[str, Any]) -> Dict[str, Any]:
    """The part of a record :class:`Decide` reads, the only part that crosses the join with the findings."""
    return {k: record[k] for k in DECISION_KEYS if k in record}


def reason(f: Dict[str, Any]) -> Dict[str, Any]:
    return {"check": f["check"], "rule": f["rule"], "score": float(f["score"]), "detail": f["detail"] or ""}


def record_evidence(record: Dict[str, Any], findings: List[Dict[str, Any]]) -> str:
    """A masked snippet of the record: every PII span found anywhere is replaced by its type first."""
    texts = []
    for fi, (_path, _side, text) in enumerate(record["fields"]):
        spans = [(s[1], s[2], s[3]) for f in findings for s in f.get("spans") or [] if s[0] == fi]
        texts.append(snippet(text, spans, limit=400) if spans else text[:800])
    return snippet(" ⏎ ".join(texts))


def redacted_raw(record: Dict[str, Any], findings: List[Dict[str, Any]], anonymizer: Any,
                 actions: tuple = ("redact",)) -> Dict[str, Any]:
    """The input object with every span whose action is in ``actions`` replaced by ``<ENTITY>`` placeholders
    (presidio-anonymizer's default replace operator), in the text fields and in every other string of the
    record (field index ``len(fields)`` is the joined ``meta`` text: ids, metadata, names, keys)."""
    from lazaret.graph.records import joined_meta, meta_spans, rename_key, set_path

    fields = record["fields"]
    meta = record.get("meta") or []
    by_text: Dict[Tuple[str, int], List[Tuple[int, int, str]]] = {}
    starts = joined_meta(meta)[1] if meta else []
    for f in findings:
        for span in f.get("spans") or []:
            if len(span) < 5 or span[4] not in actions:
                continue
            if span[0] < len(fields):
                by_text.setdefault(("field", span[0]), []).append((span[1], span[2], span[3]))
            elif meta:
                for pi, start, end in meta_spans(meta, starts, span[1], span[2]):
                    by_text.setdefault(("meta", pi), []).append((start, end, span[3]))
    if not by_text:
        return record["raw"]
    raw = copy.deepcopy(record["raw"])
    keys = []
    for (kind, i), spans in sorted(by_text.items()):
        path, _side, text = fields[i] if kind == "field" else meta[i]
        new_text = _anonymize(anonymizer, text, spans)
        if kind == "meta" and _side == "key":
            keys.append((path, new_text))
        else:
            set_path(raw, path, new_text)
    # keys last and deepest first, so the paths of values and of inner keys are still valid
    for path, new_key in sorted(keys, key=lambda k: -len(k[0])):
        rename_key(raw, path, new_key)
    return raw


def _anonymize(anonymizer: Any, text: str, spans: List[Tuple[int, int, str]]) -> str:
    # in bounded segments: one anonymizer call costs spans x length (a long record never finished)
    from lazaret.checks.pii.redact import anonymize_text

    return anonymize_text(anonymizer, text, spans)


class Decide(beam.DoFn):
    """(doc_id, {'record': [record], 'findings': [...]}) -> clean line | quarantine row | held record."""

    QUARANTINE_ROWS = "quarantine"
    HELD = "held"
    COUNTS = "counts"
    CLUSTER_EVIDENCE = "cluster_evidence"
    EVIDENCE_PER_CLUSTER = 8

    def __init__(self, held_pii: Optional[Tuple[Dict[str, Any], List[Dict[str, Any]]]] = None) -> None:
        """``held_pii``: (pii policy section, custom recognizers) when the scan does not run the PII check.
        held/ is the view reviewers read and may release, so it is always redacted per the PII policy: with
        the check off, the policy's pattern recognizers (no NER) run here on held records only."""
        self.anonymizer = None
        self.counters = {a: Metrics.counter("lazaret.decide", a) for a in ACTIONS}
        self.held_pii = held_pii
        self._held_scanner = None
        self.held_scanned = Metrics.counter("lazaret.decide", "held_pattern_scanned")

    @classmethod
    def for_scan(cls, checks: List[str], pii_section: Dict[str, Any], custom: List[Dict[str, Any]]) -> "Decide":
        """The decision step of a scan running ``checks``: it scans held records for PII patterns itself
        only when the PII check is not among them."""
        return cls(None if "pii" in checks else (pii_section, custom))

    def setup(self) -> None:
        from presidio_anonymizer import AnonymizerEngine

        self.anonymizer = AnonymizerEngine()

    def process(self, element: Tuple[str, Dict[str, List[Any]]]) -> Iterator[Any]:
        doc_id, grouped = element
        records = grouped["record"]
        if records:
            yield from self._decide(doc_id, records[0], grouped["findings"])

    def _decide(self, doc_id: str, record: Dict[str, Any], findings: List[Dict[str, Any]]) -> Iterator[Any]:
        findings = sorted(findings, key=lambda f: (f["check"], f["rule"], f["side"], f["score"]))
        malformed = [f for f in findings if f["check"] == "malformed"]
        held = [f for f in findings if f["action"] == "quarantine" and f["check"] != "malformed"]
        dups = [f for f in findings if f["action"] == "drop_duplicate"]
        flagged = any(f["action"] == "flag" or any(len(s) >= 5 and s[4] == "flag" for s in f.get("spans") or [])
                      for f in findings)
        redacting = any(len(s) >= 5 and s[4] == "redact" for f in findings for s in f.get("spans") or [])
        if malformed:
            action, reasons = REJECT, malformed
        elif held:
            action, reasons = QUARANTINE, held + dups
        elif dups:
            action, reasons = DROP, dups
        else:
            action, reasons = CLEAN, []
        self.counters[action].inc()
        yield beam.pvalue.TaggedOutput(self.COUNTS, ("action", action))
        for r in reasons:
            for rule in r["rule"].split(","):
                yield beam.pvalue.TaggedOutput(self.COUNTS, ("reason", f"{r['check']}:{rule}"))
        if flagged:
            yield beam.pvalue.TaggedOutput(self.COUNTS, ("other", "flagged"))
        clusters = sorted({(f["check"], f["cluster_id"]) for f in findings if f.get("cluster_id")})
        if clusters:
            # Cluster evidence for the report is built here, where the record's PII spans are known, so a
            # check's own snippets never reach a manifest unmasked.
            masked = record_evidence(record, findings)
            for check, cluster_id in clusters:
                yield beam.pvalue.TaggedOutput(self.CLUSTER_EVIDENCE, (f"{check}:{cluster_id}", (doc_id, masked)))
        if action == CLEAN:
            raw = redacted_raw(record, findings, self.anonymizer) if redacting else record["raw"]
            if redacting:
                yield beam.pvalue.TaggedOutput(self.COUNTS, ("other", "redacted"))
            line = json.dumps(raw, ensure_ascii=False, sort_keys=False, default=str)
            yield {"doc_id": doc_id, "source_path": record["source_path"], "source_index": record["source_index"],
                   "line": line}
        else:
            yield from self._hold(doc_id, record, findings, action, reasons, dups, redacting)

    def _hold(self, doc_id, record, findings, action, reasons, dups, redacting) -> Iterator[Any]:
        cluster_id = _cluster(reasons)
        duplicate_of = next((f["duplicate_of"] for f in dups if f.get("duplicate_of")), None)
        evidence = next((f["evidence"] for f in reasons if f.get("evidence")), None) or record_evidence(record,
                                                                                                         findings)
        yield beam.pvalue.TaggedOutput(self.QUARANTINE_ROWS, {
            "doc_id": doc_id,
            "record_id": record.get("record_id"),
            "source_path": record["source_path"],
            "source_index": int(record["source_index"]),
            "content_sha256": record["content_sha256"],
            "action": action,
            "duplicate_of": duplicate_of if action == DROP else None,
            "reasons": [reason(r) for r in reasons],
            "cluster_id": cluster_id,
            "evidence": evidence,
        })
        if action == QUARANTINE:
            # A held record may be released by a reviewer; the values that got it held (a card number, a key)
            # are redacted as well as the ones the policy redacts everywhere.
            pii = findings if self.held_pii is None else findings + self._held_patterns(record)
            raw = redacted_raw(record, pii, self.anonymizer, actions=("redact", "quarantine"))
            redacted = raw is not record["raw"]
            yield beam.pvalue.TaggedOutput(self.HELD, {
                "doc_id": doc_id, "source_path": record["source_path"], "source_index": record["source_index"],
                "line": json.dumps({"doc_id": doc_id, "redacted": redacted, "record": raw}, ensure_ascii=False,
                                   default=str)})


    def _held_patterns(self, record: Dict[str, Any]) -> List[Dict[str, Any]]:
        """PII findings (patterns only) for one held record when the scan's checks exclude PII."""
        if self._held_scanner is None:
            from lazaret.checks.pii.transform import PiiDoFn

            section, custom = self.held_pii
            scanner = PiiDoFn(dict(section, nlp="none"), custom)
            scanner.setup()
            scanner.records = self.held_scanned
            scanner._count = lambda entity: None  # not the PII check's counters: it did not run
            self._held_scanner = scanner
        return list(self._held_scanner._analyze([record]))


def _cluster(reasons: List[Dict[str, Any]]) -> Optional[str]:
    for check in ("poisoning", "near_duplicate"):
        for f in reasons:
            if f["check"] == check and f.get("cluster_id"):
                return f["cluster_id"]
    return None


def reject_row(rej: Dict[str, Any]) -> Dict[str, Any]:
    """A read-time reject (readers.reject) as a quarantine manifest row."""
    return {
        "doc_id": rej["doc_id"],
        "record_id": rej.get("record_id"),
        "source_path": rej["source_path"],
        "source_index": int(rej["source_index"]),
        "content_sha256": rej["content_sha256"],
        "action": REJECT,
        "duplicate_of": None,
        "reasons": [{"check": "malformed", "rule": rej["rule"], "score": 1.0, "detail": rej["detail"]}],
        "cluster_id": None,
        "evidence": rej.get("evidence") or "",
    }
