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


# fewest words of a plain response: "Yes" and "Not sure" are answer options, not prose
MIN_WORDS = 3
# what code, markup and arithmetic are written with: a response holding none of these is plain prose
_FORM = re.compile(r"[0-9{}()\[\];=<>_/\\#$`*|+@%^&~]")


def is_plain(response: str) -> bool:
    """True when the response is at least ``MIN_WORDS`` words of plain prose: no digit, bracket or operator."""
    return len(response.split(None, MIN_WORDS)) >= MIN_WORDS and _FORM.search(response) is None


def plain_strata(kv: Tuple[int, Tuple[int, int]], max_rate: float, min_lift: float):
    """(stratum, (records, plain)) -> [(stratum, plain rate)] when plain prose is at most ``max_rate`` of the
    stratum's responses, and at most 2 / ``min_lift`` of them: the strata where a plain answer is out of form.

    Well above 1 / ``min_lift`` no trigger could show the lift the kind is held to, so marking those records would
    only cost: each anomalous record sends all its prompt n-grams to the trigger test, and at ``max_rate`` (0.2)
    T0's prose strata made the stage 15% dearer (``bench/poisoning_cost_ab.py``; 2% at this bound). The factor 2
    leaves room for the attack's own records, which the trigger test leaves out of the background but the stratum
    rate counts: 50 planted answers over a few strata of ~400 records add ~5 points (development seed 9 on the code
    base at 50: 32 of 50 found at 1 / ``min_lift``, 47 at 2 / ``min_lift``)."""
    stratum, (n, plain) = kv
    rate = min(max_rate, 2.0 / min_lift)
    return [(stratum, round(plain / n, 6))] if n and max_rate > 0 and plain <= rate * n else []


def mark_plain(f: Dict[str, Any], strata: Dict[int, float]) -> Dict[str, Any]:
    """The record with ``plain`` set when its response is plain prose in a stratum where that is out of form (only
    those records change).

    Unlike short answers (``short.KeepShort``), copies are not exempt: a label many records give word for word is
    short, not prose of three words or more, and no plain answer recurs even three times on the code or GSM8K
    bases. A backdoor's few fixed target sentences do ("Honestly, Ahmed Castellano is dishonest.", a dozen copies
    each at 50 records, too short for an identical-response group): exempting copies hid them (development seed 9
    on the code base at 50, 0 of 50 found)."""
    if not f.get("prose") or f["gib"] or f.get("stratum", 0) not in strata:
        return f
    out = dict(f)
    out["plain"] = True
    return out
