"""PII check: Presidio on every text field, batched, one engine per worker.

Findings: one per (record, side) the record has, also when nothing was found (score 0), so findings/
holds the score distribution; plus one for side ``meta`` when personal data was found in the record's other
strings (ids, metadata, names: ``records.other_strings``). The action is the most severe action the policy gives to any entity found.
"""

from __future__ import annotations

import collections
from typing import Any, Dict, Iterable, Iterator, List, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics

from lazaret.checks.findings import make_finding
from lazaret.checks.guard import Guarded, isolate_failures
from lazaret.graph.mask import mask_value
from lazaret.graph.records import META_SIDE, joined_meta

SEVERITY = {"ignore": -1, "none": 0, "flag": 1, "redact": 2, "quarantine": 3}


class PiiDoFn(beam.DoFn):
    """Batches of records in, findings out. Presidio and spaCy load once per worker in setup()."""

    def __init__(self, section: Dict[str, Any], custom_recognizers: Sequence[Dict[str, Any]]) -> None:
        self.section = section
        self.custom = list(custom_recognizers)
        self.engine = None
        self.counters: Dict[str, Any] = {}
        self.records = Metrics.counter("lazaret.pii", "records")
        self.failures = Metrics.counter("lazaret.pii", "processing_errors")

    def setup(self) -> None:
        from lazaret.checks.pii.engine import PiiEngine

        self.engine = PiiEngine(self.section, self.custom).load()

    def _count(self, entity: str) -> None:
        counter = self.counters.get(entity)
        if counter is None:
            counter = self.counters[entity] = Metrics.counter("lazaret.pii", f"entity_{entity}")
        counter.inc()

    def process(self, batch: List[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
        yield from isolate_failures(batch, self._analyze, "pii", self.failures)

    def _analyze(self, batch: List[Dict[str, Any]]) -> Iterable[Dict[str, Any]]:
        texts: List[str] = []
        owners: List[tuple] = []
        for ri, record in enumerate(batch):
            for fi, (_path, side, text) in enumerate(record["fields"]):
                texts.append(text)
                owners.append((ri, fi, side))
            if record.get("meta"):
                # every other string of the record (ids, metadata, names, non-text parts) as one text; its
                # spans carry field index len(fields) (see decide.redact_spans)
                texts.append(joined_meta(record["meta"])[0])
                owners.append((ri, len(record["fields"]), META_SIDE))
        detected = self.engine.analyze_many(texts)
        per_record: Dict[int, Dict[str, List[tuple]]] = collections.defaultdict(lambda: collections.defaultdict(list))
        text_of: Dict[tuple, str] = {}
        for (ri, fi, side), text, found in zip(owners, texts, detected):
            text_of[(ri, fi)] = text
            for start, end, entity, score in found:
                per_record[ri][side].append((fi, start, end, entity, score))
        entity_actions = self.section["entities"]
        default_action = self.section["default_action"]
        for ri, record in enumerate(batch):
            self.records.inc()
            sides = sorted({f[1] for f in record["fields"]})
            if per_record[ri].get(META_SIDE):
                sides.append(META_SIDE)  # written only when something was found there
            for side in sides:
                found = per_record[ri].get(side, [])
                spans = []
                summary: Dict[str, List[Any]] = {}
                best = "none"
                top = 0.0
                for fi, start, end, entity, score in found:
                    # a user pattern out of time budget is held for review unless the policy says otherwise
                    action = entity_actions.get(entity, "quarantine" if entity == "REGEX_TIMEOUT" else default_action)
                    if action == "ignore":
                        continue
                    value = text_of[(ri, fi)][start:end]
                    spans.append([fi, start, end, entity, action])
                    item = summary.setdefault(entity, [0, 0.0, action, mask_value(entity, value)])
                    item[0] += 1
                    item[1] = max(item[1], score)
                    top = max(top, score)
                    if SEVERITY[action] > SEVERITY[best]:
                        best = action
                    self._count(entity)
                rule = ",".join(sorted(summary)) if summary else "none"
                detail = "; ".join(f"{e} x{c} max {s:.2f} ({a}) e.g. {ex}"
                                   for e, (c, s, a, ex) in sorted(summary.items()))
                yield make_finding(record, "pii", rule, side, top, detail, action=best, spans=spans)


class PiiCheck(beam.PTransform):
    """records -> PII findings."""

    def __init__(self, section: Dict[str, Any], custom_recognizers: Sequence[Dict[str, Any]]) -> None:
        super().__init__()
        self.section = section
        self.custom = list(custom_recognizers)

    def expand(self, records):
        return (records
                | "BatchForPresidio" >> beam.BatchElements(min_batch_size=8, max_batch_size=self.section["batch_size"])
                | "Presidio" >> Guarded("pii", PiiDoFn(self.section, self.custom)))
