"""Caps on the poisoning scan's side inputs, so a worker's memory has a bound that is a policy number.

Why: the candidate sets the scan broadcasts to every worker (support-band n-grams, prompt templates,
identical-response groups, n-grams named by anomaly pairs) are filtered, but their size still grows with
the corpus. A side input is held whole by every worker, so past some corpus size a run would fail by
memory on the workers instead of saying what it left out. ``CapSideInput`` keeps at most
``max_side_input_keys`` entries, ranked by a stated priority (ties broken by key, so the kept set is the
same on every runner), counts what it kept and dropped (Beam counters ``poisoning.<name>_entries`` and
``poisoning.<name>_dropped``) and logs a
warning with the weakest entry kept, which tells the reviewer which support range was still scanned.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, List, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsSingleton

LOG = logging.getLogger("lazaret.poisoning")


def smallest_value(kv: Tuple[Any, Any]) -> Tuple[Any, Any]:
    """Rank for counts where the rare end matters (support-band n-grams: 50-250-record attacks sit
    just above ``min_support``)."""
    return (kv[1], kv[0])


def largest_value(kv: Tuple[Any, Any]) -> Tuple[Any, Any]:
    """Rank for counts where the large end matters (templates: the big ones explain most records)."""
    return (-kv[1], kv[0])


class _Release(beam.DoFn):
    """The kept list -> its (key, value) elements; reports how many were dropped."""

    def __init__(self, name: str, cap: int):
        self.name = name
        self.cap = cap
        self.dropped = Metrics.counter("poisoning", f"{name}_dropped")
        self.kept = Metrics.counter("poisoning", f"{name}_entries")

    def process(self, kept: List[Tuple[Any, Any]], total: int) -> Iterable[Tuple[Any, Any]]:
        n_dropped = int(total) - len(kept)
        self.kept.inc(len(kept))
        if n_dropped > 0:
            self.dropped.inc(n_dropped)
            # the weakest entry kept is a count (a support level), never record text
            LOG.warning("poisoning: %s side input capped at %d of %d entries (max_side_input_keys); "
                        "weakest kept count %s; raise the cap or scan the corpus in parts",
                        self.name, self.cap, total, kept[-1][1] if kept else None)
        yield from kept


class CapSideInput(beam.PTransform):
    """(key, count) pairs -> at most ``cap`` of them, the first ``cap`` by ``rank`` (ascending)."""

    def __init__(self, name: str, cap: int, rank: Callable[[Tuple[Any, Any]], Any]):
        super().__init__(f"Cap{name}")
        self.name, self.cap, self.rank = name, cap, rank

    def expand(self, pcoll):
        total = pcoll | "Count" >> beam.combiners.Count.Globally()
        # Top.Of keeps the largest by key; reverse=True keeps the smallest ranks, i.e. the best ones.
        kept = pcoll | "Keep" >> beam.combiners.Top.Of(self.cap, key=self.rank, reverse=True)
        return kept | "Release" >> beam.ParDo(_Release(self.name, self.cap), AsSingleton(total))
