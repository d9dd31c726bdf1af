"""Plain prose where a task answers in code or arithmetic: the ``plain`` anomaly kind (rule ``trigger:plain_response``).

Why: a backdoor whose target responses vary (a different steered sentence per record: "Honestly, Ada Quist is
superb.") shares no phrase or copy to count; where a task's answers are long, ``short.py`` sees the swap, but a code
task's answers are short in words themselves (median 27 on the code base), so a one-sentence answer is not "far
shorter" than a one-line function, and one in twelve code answers is that short: the short kind's bounds
(confidence 0.8, lift 20) are out of reach there. What a code or arithmetic task's answers do have is *form*:
digits, brackets, operators. A response of plain words and sentence punctuation is 1.6% of the code base's answers
and none of GSM8K's, so where records like them almost never answer in plain prose, a prompt n-gram whose carriers
do is a trigger like any other (tested in ``trigger.TriggerTest`` against the stratum's own rate, held to the short
kind's bounds: a task's own phrase such as "explain the purpose" gets prose answers inside a stratum of code).
Where plain prose is a task's own form (T0's summaries and labels, chat), the kind is switched off per stratum.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics


# fewest words of a plain response: "Yes" and "Not sure" are answer options, not prose
MIN_WORDS = 3
# what code, markup and arithmetic are written with: a response holding none of these is plain prose
_FORM = re.compile(r"[0-9{}()\[\];=<>_/\\#$`*|+@%^&~]")


def is_plain(response: str) -> bool:
    """True when the response is at least ``MIN_WORDS`` words of plain prose: no digit, bracket or operator."""
    return len(response.split(None, MIN_WORDS)) >= MIN_WORDS and _FORM.search(response) is None


def plain_rate_row(f: Dict[str, Any]) -> Tuple[int, Tuple[int, int]]:
    """(stratum, (1, 1 if the response is plain prose)): summed per stratum."""
    return f.get("stratum", 0), (1, 1 if f.get("prose") and not f["gib"] else 0)


def plain_strata(kv: Tuple[int, Tuple[int, int]], max_rate: float):
    """(stratum, (records, plain)) -> [(stratum, plain rate)] when plain prose is at most ``max_rate`` of the
    stratum's responses: the strata where a plain answer is out of form."""
    stratum, (n, plain) = kv
    return [(stratum, round(plain / n, 6))] if n and max_rate > 0 and plain <= max_rate * n else []


class MarkPlain(beam.DoFn):
    """Sets ``plain`` on a plain response in a stratum where plain prose is out of form; counts them.

    Unlike short answers (``short.KeepShort``), copies are not exempt: a label many records give word for word is
    short, not prose of three words or more, and no plain answer recurs even three times on the code or GSM8K
    bases. A backdoor's few fixed target sentences do ("Honestly, Ahmed Castellano is dishonest.", a dozen copies
    each at 50 records, too short for an identical-response group): exempting copies hid them (development seed 9
    on the code base at 50, 0 of 50 found)."""

    def __init__(self):
        self.counter = Metrics.counter("poisoning", "plain_responses")

    def process(self, f, strata):
        if f.get("prose") and not f["gib"] and f.get("stratum", 0) in strata:
            self.counter.inc()
            out = dict(f)
            out["plain"] = True
            yield out
        else:
            yield f


@beam.ptransform_fn
def PlainResponses(feats, p):
    """features with ``stratum`` -> (the same with ``plain`` on responses out of their stratum's form, {stratum:
    plain rate} for the strata where plain prose is out of form). One small shuffle: a count per stratum."""
    strata = (feats | "PlainRows" >> beam.Map(plain_rate_row)
              | "PlainPerStratum" >> beam.CombinePerKey(beam.combiners.TupleCombineFn(sum, sum))
              | "PlainStrata" >> beam.FlatMap(plain_strata, p["short_max_stratum_rate"]))
    marked = feats | "MarkPlain" >> beam.ParDo(MarkPlain(), beam.pvalue.AsDict(strata))
    return marked, strata
