"""Known-trigger signature rules (rules/triggers.yaml): literal or regex, with a severity.

Reported as rule ``signature:<name>``, separately from the statistical scan, so a run with signatures off
measures what the scan finds on its own (the benchmark does that).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from lazaret.checks.findings import make_finding
from lazaret.graph.mask import mask_generic
from lazaret.rules.safe_regex import RegexBudgetExceeded, SafeRegex, UnsafeRegex
from lazaret.rules.schema import F, validate_section
from lazaret.rules.yamlpos import load_yaml

SEVERITY_ACTION = {"high": "quarantine", "medium": "flag", "low": "flag"}
MATCH_TIMEOUT_SECONDS = 0.1  # per text, for a regex that opts in to the backtracking engine

SIGNATURE_SPEC: Dict[str, F] = {
    "name": F("str", required=True),
    "description": F("str", ""),
    "literal": F("str", None, nullable=True),
    "regex": F("str", None, nullable=True),
    "engine": F("str", "re2", choices=("re2", "backtracking")),  # lazaret.rules.safe_regex
    "side": F("str", "prompt", choices=("prompt", "response", "all")),
    "severity": F("str", "medium", choices=tuple(SEVERITY_ACTION)),
    "enabled": F("bool", True),
}
FILE_SPEC: Dict[str, F] = {
    "version": F("int", 1),
    "signatures": F("list", [], item=SIGNATURE_SPEC),
}


def load_signatures(path: str) -> List[Dict[str, Any]]:
    """Validated, enabled signatures (file:line errors via ConfigError)."""
    loc = load_yaml(path)
    values = validate_section(FILE_SPEC, loc.data or {}, loc, "")
    out, seen = [], set()
    for i, sig in enumerate(values["signatures"]):
        where = f"signatures[{i}]"
        if (sig["literal"] is None) == (sig["regex"] is None):
            raise loc.error(where, "a signature needs exactly one of literal or regex")
        if sig["regex"] is not None:
            try:  # RE2 (linear time) unless the signature opts in to a time-budgeted backtracking engine
                SafeRegex(sig["regex"], engine=sig["engine"], name=sig["name"], budget=MATCH_TIMEOUT_SECONDS)
            except UnsafeRegex as exc:
                raise loc.error(f"{where}.regex", str(exc)) from None
        if sig["name"] in seen:
            raise loc.error(f"{where}.name", f"signature {sig['name']!r} is defined twice")
        seen.add(sig["name"])
        if sig["enabled"]:
            out.append(dict(sig, source=f"{os.path.basename(path)}:{loc.line(where) or 1}"))
    return out


class SignatureScan(beam.DoFn):
    """One finding per matching signature, or one ``signature`` finding with score 0 per record.

    A signature whose match runs out of time on a record does not pass the record silently, nor fail the
    run: the record gets a ``malformed``/``signature_timeout`` finding (rejected, with the signature named)
    and the other signatures still run. Any other failure is caught by the dead-letter guard around this
    DoFn (``lazaret.checks.guard.Guarded``, see transform.py).
    """

    def __init__(self, signatures: List[Dict[str, Any]]):
        self.signatures = signatures
        self._compiled: Optional[list] = None

    def setup(self):
        self._compiled = []
        for s in self.signatures:
            if s["literal"] is not None:  # a case-insensitive substring: no regex engine at all
                self._compiled.append((s, s["literal"].lower()))
            else:
                self._compiled.append((s, SafeRegex(s["regex"], engine=s.get("engine", "re2"), name=s["name"],
                                                    budget=MATCH_TIMEOUT_SECONDS)))
        self.hits = Metrics.counter("poisoning", "signature_hits")
        self.timeouts = Metrics.counter("poisoning", "signature_timeouts")

    def process(self, record):
        texts = {"prompt": record.get("prompt") or "", "response": record.get("response") or ""}
        texts["all"] = texts["prompt"] + "\n\n" + texts["response"]
        rec = {"doc_id": record["doc_id"], "record_id": record.get("record_id")}
        found = False
        for sig, rx in self._compiled:
            text = texts[sig["side"]]
            try:
                if isinstance(rx, str):  # lower() may change a few scripts' lengths: offsets are clipped
                    at = text.lower().find(rx)
                    m = None if at < 0 else (min(at, len(text)), min(at + len(rx), len(text)))
                else:
                    m = rx.search(text)
            except RegexBudgetExceeded:
                found = True
                self.timeouts.inc()
                yield make_finding(rec, "malformed", rule="signature_timeout", side="all", score=1.0,
                                   detail=f"trigger signature {sig['name']} ({sig['source']}) did not finish "
                                          f"within {MATCH_TIMEOUT_SECONDS:g} s on this record",
                                   action="quarantine")
                continue
            if not m:
                continue
            found = True
            self.hits.inc()
            start = max(0, m[0] - 60)
            yield make_finding(rec, "poisoning", rule=f"signature:{sig['name']}", side=sig["side"],
                               score={"high": 1.0, "medium": 0.7, "low": 0.4}[sig["severity"]],
                               detail=f"matches known trigger signature {sig['name']} ({sig['description']}; "
                                      f"{sig['source']}); severity {sig['severity']}",
                               action=SEVERITY_ACTION[sig["severity"]],
                               evidence=mask_generic(text[start:m[1] + 60]))
        if not found:
            yield make_finding(rec, "poisoning", rule="signature", side="all")
