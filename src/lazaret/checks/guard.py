"""Dead letters: a check that fails on one record rejects that record, never the run.

Beam's ``ParDo(...).with_exception_handling()`` routes an element whose processing raised to a dead-letter
output. We retry the element a bounded number of times first (a transient failure such as a worker
hiccup should not cost a record), then turn the dead letter into a ``malformed`` finding, which the
decision step turns into a ``reject`` row naming the check and the exception type. The exception message
is not copied: it may quote the record's text.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List

import apache_beam as beam
from apache_beam.metrics import Metrics

from lazaret.checks.findings import make_finding

DEFAULT_ATTEMPTS = 3


class RetryingDoFn(beam.DoFn):
    """Runs ``inner`` on an element up to ``attempts`` times; outputs are emitted only from a successful
    attempt, so a retried element never produces duplicates."""

    def __init__(self, inner: beam.DoFn, name: str, attempts: int = DEFAULT_ATTEMPTS) -> None:
        self.inner = inner
        self.name = name
        self.attempts = attempts
        self.retries = Metrics.counter("lazaret.guard", f"{name}_retries")

    def setup(self) -> None:
        self.inner.setup()

    def start_bundle(self) -> None:
        self.inner.start_bundle()

    def process(self, element, *args, **kwargs):  # no annotations: Beam would read them as type hints
        for attempt in range(1, self.attempts + 1):
            try:
                return list(self.inner.process(element, *args, **kwargs) or [])
            except Exception:
                if attempt == self.attempts:
                    raise
                self.retries.inc()
        return []

    def finish_bundle(self) -> Any:
        return self.inner.finish_bundle()

    def teardown(self) -> None:
        self.inner.teardown()


def isolate_failures(batch: List[Dict[str, Any]], run: Callable[[List[Dict[str, Any]]], Iterable[Dict[str, Any]]],
                     check: str, failures: Any) -> List[Dict[str, Any]]:
    """Findings of ``run(batch)``; when the batch raises, run record by record so only the record that
    fails becomes a ``processing_error`` finding (rejected), never its whole batch."""
    try:
        return list(run(batch))
    except Exception:  # noqa: BLE001 - isolate the record that fails, keep the run going
        results: List[Dict[str, Any]] = []
        for record in batch:
            try:
                results.extend(run([record]))
            except Exception as exc:  # noqa: BLE001 - dead letter for this record only
                failures.inc()
                results.append(make_finding(record, "malformed", "processing_error", "all", 1.0,
                                            f"the {check} check failed on this record: {exc.__class__.__name__}",
                                            action="quarantine"))
        return results


def _records_of(element: Any) -> List[Dict[str, Any]]:
    if isinstance(element, dict):
        return [element]
    if isinstance(element, (list, tuple)) and all(isinstance(e, dict) and "doc_id" in e for e in element):
        return list(element)
    return []


def _dead_letter_findings(dead: Any, check: str, attempts: int) -> Iterable[Dict[str, Any]]:
    element, error = dead
    exc_type = error[0].__name__ if isinstance(error, tuple) and isinstance(error[0], type) else "Exception"
    for record in _records_of(element):
        yield make_finding(record, "malformed", "processing_error", "all", 1.0,
                           f"the {check} check raised {exc_type} on this record after {attempts} attempts",
                           action="quarantine")


class Guarded(beam.PTransform):
    """``records | Guarded("pii", SomeDoFn(...))``: the DoFn's findings, plus a malformed finding for every
    record whose processing kept failing."""

    def __init__(self, check: str, dofn: beam.DoFn, attempts: int = DEFAULT_ATTEMPTS) -> None:
        super().__init__()
        self.check = check
        self.dofn = dofn
        self.attempts = attempts
        self.failed = Metrics.counter("lazaret.guard", f"{check}_dead_letters")

    def expand(self, pcoll):
        good, bad = pcoll | "Run" >> beam.ParDo(RetryingDoFn(self.dofn, self.check, self.attempts)) \
            .with_exception_handling(exc_class=Exception)
        dead = bad | "DeadLetters" >> beam.FlatMap(_dead_letter_findings, self.check, self.attempts)
        return (good, dead) | "Merge" >> beam.Flatten()
