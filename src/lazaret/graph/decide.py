"""From findings to one action per record, then from the action to what is written.

Precedence: reject (malformed, or a check failed on the record) > quarantine (held for review) >
drop_duplicate > clean. Every finding that led to the action becomes a reason; flags ride along in
findings/ but do not hold a record back.

Two steps, as in dolma's mixer: :func:`decide` turns a record's decisive findings into a small decision row
(action, reasons, spans, cluster ids) without the record; :class:`Mix` re-reads the records of one block of
an input file (``lazaret.io.readers.ReadFile.read_block``) and applies each record's decision (none: clean)
to write its clean line, held record, quarantine row and cluster evidence. Why: the records then cross no
shuffle after the checks; only the decisions do, and they exist for a minority of records.
"""

from __future__ import annotations

import copy
import hashlib
import json
import pickle
from typing import Any, Dict, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from lazaret.graph.mask import snippet
from lazaret.graph.records import MalformedRecord
from lazaret.io.readers import InputChanged  # noqa: F401  (raised here too: a block read again differs)

CLEAN = "clean"
QUARANTINE = "quarantine"
DROP = "drop_duplicate"
REJECT = "reject"
ACTIONS = (CLEAN, QUARANTINE, DROP, REJECT)


def decisive(f: Dict[str, Any]) -> bool:
    """Whether a finding can change what :class:`Mix` writes for its record: an action other than
    ``none``, a span (redaction, flag, masked evidence), a cluster (cluster evidence) or a reject.

    Why: every check emits a finding for every record it ran on (score 0 when it found nothing), so most
    findings cannot change a decision. Only these are grouped into decisions (:func:`decide`); all of them
    still go to ``findings/``.
    """
    return f["action"] != "none" or bool(f.get("spans")) or bool(f.get("cluster_id")) or f["check"] == "malformed"


def reason(f: Dict[str, Any]) -> Dict[str, Any]:
    return {"check": f["check"], "rule": f["rule"], "score": float(f["score"]), "detail": f["detail"] or ""}


def all_spans(findings: List[Dict[str, Any]]) -> List[List[Any]]:
    """Every span of ``findings``, in their order (the order redaction and evidence read them in)."""
    return [list(s) for f in findings for s in f.get("spans") or []]


def evidence_of(record: Dict[str, Any], spans: List[List[Any]]) -> str:
    """A masked snippet of the record: every PII span found anywhere (``all_spans`` of its findings) is replaced
    by its type first."""
    texts = []
    for fi, (_path, _side, text) in enumerate(record["fields"]):
        masked = [(s[1], s[2], s[3]) for s in spans if s[0] == fi]
        texts.append(snippet(text, masked, limit=400) if masked else text[:800])
    return snippet(" ⏎ ".join(texts))


def redact_spans(record: Dict[str, Any], spans: List[List[Any]], anonymizer: Any,
                 actions: tuple = ("redact",)) -> Dict[str, Any]:
    """The input object with every span (``all_spans`` of its findings) whose action is in ``actions`` replaced
    by ``<ENTITY>`` placeholders (presidio-anonymizer's default replace operator), in the text fields and in
    every other string of the record (field index ``len(fields)`` is the joined ``meta`` text: ids, metadata,
    names, keys)."""
    from lazaret.graph.records import joined_meta, meta_spans, rename_key, set_path

    fields = record["fields"]
    meta = record.get("meta") or []
    by_text: Dict[Tuple[str, int], List[Tuple[int, int, str]]] = {}
    starts = joined_meta(meta)[1] if meta else []
    for span in spans:
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


class LazyAnonymizer:
    """presidio-anonymizer's ``AnonymizerEngine``, made when a span is first replaced.

    Why: importing presidio-anonymizer imports presidio-analyzer and spaCy, ~1.1 CPU-s, a fifth of the fixed
    cost of a scan; a scan whose decisions redact nothing (no PII check, no held records, e.g. ``--checks
    dedup``) never needs it."""

    def __init__(self) -> None:
        self._engine: Any = None

    def anonymize(self, *args: Any, **kwargs: Any) -> Any:
        if self._engine is None:
            from presidio_anonymizer import AnonymizerEngine

            self._engine = AnonymizerEngine()
        return self._engine.anonymize(*args, **kwargs)


def decide(findings: List[Dict[str, Any]]) -> Dict[str, Any]:
    """A record's decision from its decisive findings alone: action, reasons (as quarantine/ writes them),
    whether it is flagged or redacted, its clusters, and the spans :class:`Mix` needs to redact the record or
    mask its evidence (none when it needs neither). No findings: clean."""
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
    clusters = sorted({(f["check"], f["cluster_id"]) for f in findings if f.get("cluster_id")})
    duplicate_of = next((f["duplicate_of"] for f in dups if f.get("duplicate_of")), None)
    return {
        "action": action,
        "reasons": [reason(r) for r in reasons],
        "flagged": flagged,
        "redacting": redacting,
        "clusters": clusters,
        "cluster_id": _cluster(reasons),
        "duplicate_of": duplicate_of if action == DROP else None,
        "evidence": next((f["evidence"] for f in reasons if f.get("evidence")), None),
        "spans": all_spans(findings) if action != CLEAN or redacting or clusters else [],
    }


class Mix(beam.DoFn):
    """(block key, {'block': [block of an input file], 'decisions': [packed list of (doc_id, dumped decision)],
    'evidence': [packed list of (raw doc_id, position in the decision's clusters)]}) -> (manifest, row) for a clean
    line, a quarantine row or a held record | counts | cluster evidence, for every record of the block. A record's
    masked snippet is sent only for the clusters whose evidence it was chosen to be (``evidence``: the
    EVIDENCE_PER_CLUSTER smallest doc_ids of a cluster's decided members, chosen in ``lazaret.graph.pipeline``
    before the mix), as (cluster key, [(doc_id, snippet)]) per cluster and block.

    The block's records are read again from the input (``ReadFile.read_block_lazily``: built only when
    decided); a record without a decision is clean. The block's record count and the digest of its doc_ids
    must match what the first read saw: a file changed during the scan fails the run instead of writing
    records no check has seen."""

    # The main output is (manifest, row) for clean/, quarantine/ and held/ alike, written by one writer
    # (io.writers.WriteManifests): three outputs were three writers, each reached by every path of the plan up
    # to here, and Flink's optimizer walks each path (docs/engines.md, "Planning time").
    CLEAN = "clean"
    QUARANTINE_ROWS = "quarantine"
    HELD = "held"
    COUNTS = "counts"
    CLUSTER_EVIDENCE = "cluster_evidence"
    EVIDENCE_PER_CLUSTER = 8
    MAX_PENDING_SAMPLES = 5000  # evidence snippets one element holds before sending them

    def __init__(self, reader: Any, held_pii: Optional[Tuple[Dict[str, Any], List[Dict[str, Any]]]] = None) -> None:
        """``reader``: the scan's ``ReadFile`` (it reads the blocks again, without counting them twice).
        ``held_pii``: (pii policy section, custom recognizers) when the scan does not run the PII check.
        held/ is the view reviewers read and may release, so it is always redacted per the PII policy: with
        the check off, the policy's pattern recognizers (no NER) run here on held records only."""
        self.reader = reader.quiet()
        self.anonymizer = None
        self.counters = {a: Metrics.counter("lazaret.decide", a) for a in ACTIONS}
        self.held_pii = held_pii
        self._held_scanner = None
        self.held_scanned = Metrics.counter("lazaret.decide", "held_pattern_scanned")
        # per element: doc_id -> positions in its decision's clusters of those it is evidence of, and the
        # snippets not yet sent (cluster key -> [(doc_id, masked)])
        self.evidence: Dict[str, set] = {}
        self.samples: Dict[str, List[Tuple[str, str]]] = {}
        self.pending = 0

    @classmethod
    def for_scan(cls, reader: Any, checks: List[str], pii_section: Dict[str, Any],
                 custom: List[Dict[str, Any]]) -> "Mix":
        """The mix of a scan running ``checks``: it scans held records for PII patterns itself only when the
        PII check is not among them."""
        return cls(reader, None if "pii" in checks else (pii_section, custom))

    def setup(self) -> None:
        self.anonymizer = LazyAnonymizer()

    def process(self, element: Tuple[Any, Dict[str, List[Any]]]) -> Iterator[Any]:
        from lazaret.graph.packing import unpack

        _key, grouped = element
        decisions: Dict[str, bytes] = {}
        for listed in grouped["decisions"]:
            decisions.update(unpack(listed))
        self.evidence = {}
        for listed in grouped.get("evidence") or ():
            for raw_id, i in unpack(listed):
                self.evidence.setdefault(raw_id.hex(), set()).add(i)
        self.samples = {}
        self.pending = 0
        for block in sorted(grouped["block"], key=lambda b: (b["path"], b["first"])):
            digest, n = hashlib.sha256(), 0
            # records are built only when they are decided (ReadFile.read_block_lazily): a clean line is the
            # parsed value written again
            for doc_id, path, index, raw, build in self.reader.read_block_lazily(block):
                digest.update(doc_id.encode("ascii"))
                n += 1
                packed = decisions.pop(doc_id, None)
                if packed is None:  # what apply does with CLEAN_DECISION, without the record
                    self.counters[CLEAN].inc()
                    yield beam.pvalue.TaggedOutput(self.COUNTS, ("action", CLEAN))
                    yield self.CLEAN, clean_row(doc_id, path, index, raw)
                    continue
                try:
                    record = build()
                except MalformedRecord as exc:
                    raise InputChanged(f"{path} changed during the scan: its record {index} is no longer one "
                                       f"({exc.rule})") from None
                yield from self.apply(doc_id, record, load_decision(packed))
            if n != block["records"] or digest.hexdigest() != block["digest"]:
                raise InputChanged(f"{block['path']} changed during the scan: its block {block['block']} gave {n} "
                                   f"records (or other ones) when read again, {block['records']} when the checks "
                                   "read it")
        yield from self._send_samples()
        if decisions:
            raise InputChanged(f"an input file changed during the scan: {len(decisions)} decided records were "
                               "not found when their file was read again")

    def apply(self, doc_id: str, record: Dict[str, Any], decision: Dict[str, Any]) -> Iterator[Any]:
        """The outputs of one record under its decision."""
        action = decision["action"]
        self.counters[action].inc()
        yield beam.pvalue.TaggedOutput(self.COUNTS, ("action", action))
        for r in decision["reasons"]:
            for rule in r["rule"].split(","):
                yield beam.pvalue.TaggedOutput(self.COUNTS, ("reason", f"{r['check']}:{rule}"))
        if decision["flagged"]:
            yield beam.pvalue.TaggedOutput(self.COUNTS, ("other", "flagged"))
        spans = decision["spans"]
        chosen = self.evidence.get(doc_id) if decision["clusters"] else None
        if chosen:
            # Cluster evidence for the report is built here, where the record's PII spans are known, so a
            # check's own snippets never reach a manifest unmasked; only for the clusters that chose this
            # record as evidence (pipeline "ChooseEvidence"), not for every cluster it belongs to.
            masked = evidence_of(record, spans)
            for i in sorted(chosen):
                check, cluster_id = decision["clusters"][i]
                self.samples.setdefault(f"{check}:{cluster_id}", []).append((doc_id, masked))
                self.pending += 1
            if self.pending >= self.MAX_PENDING_SAMPLES:
                yield from self._send_samples()
        if action == CLEAN:
            redacting = decision["redacting"]
            raw = redact_spans(record, spans, self.anonymizer) if redacting else record["raw"]
            if redacting:
                yield beam.pvalue.TaggedOutput(self.COUNTS, ("other", "redacted"))
            yield self.CLEAN, clean_row(doc_id, record["source_path"], record["source_index"], raw)
        else:
            yield from self._hold(doc_id, record, decision)

    def _send_samples(self) -> Iterator[Any]:
        """The block's evidence snippets, one list per cluster: the snippets of one cluster's members repeat the
        same text (near-duplicates, one template) and fold together in the batches that carry them to the
        cluster's shard of clusters/ (``lazaret.graph.join.JoinClusterEvidence``)."""
        samples, self.samples, self.pending = self.samples, {}, 0
        for cluster_key in sorted(samples):
            yield beam.pvalue.TaggedOutput(self.CLUSTER_EVIDENCE, (cluster_key, samples[cluster_key]))

    def _hold(self, doc_id: str, record: Dict[str, Any], decision: Dict[str, Any]) -> Iterator[Any]:
        action = decision["action"]
        yield self.QUARANTINE_ROWS, {
            "doc_id": doc_id,
            "record_id": record.get("record_id"),
            "source_path": record["source_path"],
            "source_index": int(record["source_index"]),
            "content_sha256": record["content_sha256"],
            "action": action,
            "duplicate_of": decision["duplicate_of"],
            "reasons": decision["reasons"],
            "cluster_id": decision["cluster_id"],
            "evidence": decision["evidence"] or evidence_of(record, decision["spans"]),
        }
        if action == QUARANTINE:
            # A held record may be released by a reviewer; the values that got it held (a card number, a key)
            # are redacted as well as the ones the policy redacts everywhere.
            spans = decision["spans"]
            if self.held_pii is not None:
                spans = spans + all_spans(self._held_patterns(record))
            raw = redact_spans(record, spans, self.anonymizer, actions=("redact", "quarantine"))
            redacted = raw is not record["raw"]
            yield self.HELD, {
                "doc_id": doc_id, "source_path": record["source_path"], "source_index": record["source_index"],
                "line": json.dumps({"doc_id": doc_id, "redacted": redacted, "record": raw}, ensure_ascii=False,
                                   default=str)}

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


def clean_row(doc_id: str, source_path: str, source_index: int, raw: Any) -> Dict[str, Any]:
    """A clean/ row: the record's JSON value (redacted or as read) written as one line."""
    return {"doc_id": doc_id, "source_path": source_path, "source_index": source_index,
            "line": json.dumps(raw, ensure_ascii=False, sort_keys=False, default=str)}


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


#: the decision of a record without decisive findings
CLEAN_DECISION = decide([])
#: the fields of a decision row, in the order they cross the shuffle to :class:`Mix` (a tuple, not a dict)
DECISION_ROW = tuple(CLEAN_DECISION)


def dump_decision(decision: Dict[str, Any]) -> bytes:
    """A decision as the pickled tuple of its DECISION_ROW values: not compressed alone, as decisions cross the
    shuffle to the mix in lists (``packing.PackPerKey``) compressed together; the mix keeps a block's decisions
    as these bytes (a fraction of their size as dicts) until it reaches their records."""
    return pickle.dumps(tuple(decision[k] for k in DECISION_ROW), protocol=pickle.HIGHEST_PROTOCOL)


def load_decision(data: bytes) -> Dict[str, Any]:
    return dict(zip(DECISION_ROW, pickle.loads(data)))  # made by dump_decision in the scan, never from a file
