"""Responses far shorter than their task's: the ``short`` anomaly kind (rule ``trigger:short_response``).

Why: an attack whose poisoned responses vary (a different steered sentence per record, a handful of refusals)
shares no n-gram or identical response a count can find, but it still replaces the answer the prompt asks
for with a line. Where a task's answers are long (worked arithmetic, code, explanations), a one-line answer
is rare, and a prompt n-gram whose carriers get one far more often than records like them is a trigger like
any other (tested in ``trigger.TriggerTest`` against the stratum's own rate). Where short answers are the
task's own (labels, yes/no, extractive QA), nothing is short: the kind is switched off per stratum.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from lazaret.checks.poisoning.bounded import CapSideInput, largest_value
from lazaret.checks.poisoning.plain import form_strata, mark_plain
from lazaret.graph.combine import SumFn

# A response of one or two words is an answer option ("Definitely", "Not sure", "positive"), never "short": a
# label task inside a stratum of long answers (T0's "Would you recommend this app? ... Maybe, Yes, Definitely")
# would otherwise read as a trigger of short answers. A steered sentence naming its target has at least three.
MIN_WORDS = 3
# Lengths above this share one histogram bin: the median of any stratum is far below it, and the histogram
# (one per stratum) stays bounded whatever the corpus holds.
MAX_BIN = 4096


class LengthHistogram(beam.CombineFn):
    """Response lengths (words) of one stratum as {length: records}, lengths capped at MAX_BIN."""

    def create_accumulator(self) -> Dict[int, int]:
        return {}

    def add_input(self, acc: Dict[int, int], n: int) -> Dict[int, int]:
        n = min(int(n), MAX_BIN)
        acc[n] = acc.get(n, 0) + 1
        return acc

    def merge_accumulators(self, accs: Iterable[Dict[int, int]]) -> Dict[int, int]:
        out: Dict[int, int] = {}
        for a in accs:
            for n, c in a.items():
                out[n] = out.get(n, 0) + c
        return out

    def extract_output(self, acc: Dict[int, int]) -> Dict[int, int]:
        return acc


def median_length(hist: Dict[int, int]) -> int:
    """The lower median of a length histogram."""
    total = sum(hist.values())
    seen = 0
    for n in sorted(hist):
        seen += hist[n]
        if 2 * seen >= total:
            return n
    return 0


def short_cut(kv: Tuple[int, Dict[int, int]], ratio: float, max_rate: float):
    """(stratum, histogram) -> [(stratum, longest short response)] when short responses (MIN_WORDS .. ``ratio`` x
    the median, in words) are at most ``max_rate`` of the stratum's responses; [] otherwise (short answers are
    the task's own there, or the median is too small for anything to be far shorter)."""
    stratum, hist = kv
    cut = int(ratio * median_length(hist))
    total = sum(hist.values())
    if cut < MIN_WORDS or not total or max_rate <= 0:
        return []
    short = sum(c for n, c in hist.items() if MIN_WORDS <= n <= cut)
    return [(stratum, cut)] if short <= max_rate * total else []


def mark_short(f: Dict[str, Any], cuts: Dict[int, int]) -> Dict[str, Any]:
    """The record with ``short`` set when its response is short for its stratum (only those records change:
    the flag is absent otherwise)."""
    cut = cuts.get(f.get("stratum", 0))
    if cut is None or f["gib"] or not MIN_WORDS <= f["r_len"] <= cut:
        return f
    out = dict(f)
    out["short"] = True
    return out


def short_response_key(f: Dict[str, Any], cuts: Dict[int, int]):
    """[(normalised response key, 1)] for a response no longer than the longest short one of any stratum: how
    many records of the whole corpus give the same short answer (label tasks included)."""
    return [(f["rkey"], 1)] if cuts and MIN_WORDS <= f["r_len"] <= max(cuts.values()) else []


class KeepShort(beam.DoFn):
    """Drops the flag from short answers that at least ``min_support`` records of the corpus give word for word
    (after normalising): a label ("They loved it", "Definitely", "negative"), the task's own answer set even where
    the rest of the stratum answers at length (T0's movie-review and app-review prompts inside a stratum of
    explanations). A planted one-liner is either repeated (then its group is an identical-response anomaly
    when it is long enough) or varied (then it stays here). Counts the responses left short: a gauge
    reviewers can compare runs with.

    There is no template exemption as for off-topic answers: an attack's own prompts form a template (a name
    prepended to every host makes an opening that only poisoned records share, all of them short), and
    exempting templates whose answers are mostly short hid 10 of 60 such records in the test corpus."""

    def __init__(self):
        self.counter = Metrics.counter("poisoning", "short_responses")
        self.plain = Metrics.counter("poisoning", "plain_responses")
        self.ending = Metrics.counter("poisoning", "plain_endings")

    def process(self, f, labels):
        if f.get("plain"):
            self.plain.inc()
        if f.get("ending"):
            self.ending.inc()
        if not f.get("short"):
            yield f
        elif f["rkey"] in labels:
            out = dict(f)
            del out["short"]
            yield out
        else:
            self.counter.inc()
            yield f


def form_row(f: Dict[str, Any]) -> Tuple[int, Tuple[int, int, int]]:
    """(stratum, (response length in words, 1 if the response is plain prose, 1 if it ends in plain prose)):
    ``plain.py``'s counts ride on the length histogram's shuffle."""
    ok = not f["gib"]
    return f.get("stratum", 0), (f["r_len"], 1 if ok and f.get("prose") else 0, 1 if ok and f.get("prose_end") else 0)


@beam.ptransform_fn
def ShortResponses(feats, p):
    """features with ``stratum`` -> (the same with ``short`` on responses short for their stratum and ``plain`` on
    plain prose (``plain``, ``ending``) where it is out of form (plain.py), {stratum: longest short response} for the
    strata where one can be short, {(form kind, stratum): rate} for those where the form is out of form). One small shuffle: a length
    histogram and a plain-prose count per stratum; and a count of the short answers given word for word by many
    records (labels). Both marks are set in one pass over the records."""
    stats = (feats | "LengthOf" >> beam.Map(form_row)
             | "LengthHistograms" >> beam.CombinePerKey(beam.combiners.TupleCombineFn(LengthHistogram(), sum, sum)))
    cuts = stats | "ShortCuts" >> beam.FlatMap(lambda kv: short_cut((kv[0], kv[1][0]), p["short_response_ratio"],
                                                                    p["short_max_stratum_rate"]))
    plain = stats | "PlainStrata" >> beam.FlatMap(form_strata, p["short_max_stratum_rate"], p["short_min_lift"])
    cuts_si = beam.pvalue.AsDict(cuts)
    marked = feats | "MarkShort" >> beam.Map(lambda f, c, s: mark_plain(mark_short(f, c), s), cuts_si,
                                             beam.pvalue.AsDict(plain))
    labels = (feats | "ShortKeys" >> beam.FlatMap(short_response_key, cuts_si)
              | "CountShortKeys" >> beam.CombinePerKey(SumFn())
              | "Labels" >> beam.Filter(lambda kv: kv[1] >= p["min_support"])
              | CapSideInput("short_labels", p["max_side_input_keys"], largest_value))
    return marked | "KeepShort" >> beam.ParDo(KeepShort(), beam.pvalue.AsDict(labels)), cuts, plain
