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

A second kind, ``ending`` (rule ``trigger:plain_ending``), is a response of code or arithmetic that *ends* in a plain
sentence ("... #### 72 Honestly, Ada Quist is superb."): a steered sentence appended to a correct answer keeps the
answer's length and form, but not its ending. Worked arithmetic never ends so (GSM8K: 0), code rarely (2.2% of the
code base: a closing explanation), T0 one time in seventeen.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Optional, Tuple


# fewest words of a plain response: "Yes" and "Not sure" are answer options, not prose
MIN_WORDS = 3
# what code, markup and arithmetic are written with: a response holding none of these is plain prose
_FORM = re.compile(r"[0-9{}()\[\];=<>_/\\#$`*|+@%^&~]")
# a sentence end: what a plain ending must close with ("echo 'Done'" ends a shell script, not a sentence)
_ENDS = (".", "!", "?")
# (anomaly kind, the feature a record carries when its response shows it): a response of plain prose; a response
# of code or arithmetic that ends in a plain sentence. Two kinds, each tested against its own rate in the stratum:
# a closing explanation is a code task's own ending one time in fifty, a prose answer one time in sixty, and as one
# kind their rates summed took strata past the bound (a steered sentence in place of code: 50 -> 43 of 50 found).
FORM_KINDS = (("plain", "prose"), ("ending", "prose_end"))


def plain_form(response: str) -> Optional[str]:
    """``"prose"`` when the response is at least ``MIN_WORDS`` words of plain prose (no digit, bracket or operator);
    ``"prose_end"`` when it is code or arithmetic that ends in a sentence of at least ``MIN_WORDS`` plain words
    ("... #### 72 Honestly, Ada Quist is superb."); else None."""
    words = response.split()
    if len(words) < MIN_WORDS:
        return None
    if _FORM.search(response) is None:
        return "prose"
    if not response.rstrip().endswith(_ENDS):
        return None
    tail = 0
    for w in reversed(words):
        if _FORM.search(w):
            return None
        tail += 1
        if tail >= MIN_WORDS:
            return "prose_end"
    return None


def is_plain(response: str) -> bool:
    """True when the response is at least ``MIN_WORDS`` words of plain prose: no digit, bracket or operator."""
    return plain_form(response) == "prose"


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


def form_strata(kv: Tuple[int, Tuple[Dict[int, int], int, int]], max_rate: float, min_lift: float):
    """(stratum, (length histogram, plain responses, plain endings)) -> [((kind, stratum), rate)] for each form
    kind out of form in the stratum (``plain_strata``), rates over its answers of at least ``MIN_WORDS`` words. An
    ending is tested only where plain answers are rarer than 1 / ``min_lift``: a stratum that answers in code or
    arithmetic. Where prose answers are common, answers that mix
    a list or a date with prose end in a sentence as a matter of course (T0's "key plot points", "what details
    would": 31-34 clean records each on a 10,000-record slice when the ending kind was on wherever endings alone
    were rare, 21-32 on two of 20 runs at 50 with plain answers under 2 / ``min_lift``, 0-1 at 1 / ``min_lift``)."""
    stratum, (hist, prose, prose_end) = kv
    # over the answers long enough to be prose: a label ("Yes", "2 stars") is neither prose nor code, and counted
    # as "not plain" it made T0's label strata look like strata of code, where one template's sentence answers
    # were out of form ("step of the": 44 records of a clean 10,000-record T0 slice, twenty-fourth session)
    n = sum(c for length, c in hist.items() if length >= MIN_WORDS)
    plain = plain_strata((stratum, (n, prose)), max_rate, min_lift)
    if not plain:
        return []
    out = [(("plain", stratum), plain[0][1])]
    if prose <= n / min_lift:
        out += [(("ending", s), rate) for s, rate in plain_strata((stratum, (n, prose_end)), max_rate, min_lift)]
    return out


def mark_plain(f: Dict[str, Any], strata: Dict[Tuple[str, int], float]) -> Dict[str, Any]:
    """The record with ``plain`` (or ``ending``) set when its response is plain prose (or ends in it) in a stratum
    where that is out of form (only those records change).

    Unlike short answers (``short.KeepShort``), copies are not exempt: a label many records give word for word is
    short, not prose of three words or more, and no plain answer recurs even three times on the code or GSM8K
    bases. A backdoor's few fixed target sentences do ("Honestly, Ahmed Castellano is dishonest.", a dozen copies
    each at 50 records, too short for an identical-response group): exempting copies hid them (development seed 9
    on the code base at 50, 0 of 50 found)."""
    if f["gib"]:
        return f
    st = f.get("stratum", 0)
    kinds = [kind for kind, feat in FORM_KINDS if f.get(feat) and (kind, st) in strata]
    if not kinds:
        return f
    out = dict(f)
    for kind in kinds:
        out[kind] = True
    return out
