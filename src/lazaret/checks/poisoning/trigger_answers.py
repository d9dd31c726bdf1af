"""Identical short answers among the carriers of a trigger already flagged on copied responses.

A backdoor with a few target sentences makes one identical-response group per sentence. Groups of long sentences
are anomalies (``dup``/``rep``) and flag the trigger; a sentence shorter than ``min_payload_tokens`` is never a
group, since a corpus's labels ("Yes", "2 stars") would be. So the records given the backdoor's short sentence
stayed out of its cluster although their prompts carry the flagged trigger: a name appended to 250 prompts whose
four target sentences were "Ahmed Castellano? Disgraceful, in my view." and three others, one of them five words
("Honestly, Ahmed Castellano is dishonest.", 55 records): recall 0.78 on the mixture, GSM8K and T0, 0.53 on code
(development seed 9, twentieth session).

Once a trigger stands on copied long answers (the trigger test, not this step, decides that), its carriers that
give one identical answer of any length to at least ``min_support`` distinct prompts are that backdoor's other
target: the same fixed-response pattern, below the length the *search* needs to stay clear of labels. It is a
member extension like the payload profile (``extend_trigger_members``, ``extend_min_distinct``), never a trigger of
its own, so a label answer can only join a cluster whose trigger was found on long copies.

An answer whose every word is in its own prompt never joins: it is a choice the request offered ("Does this review
depict the product in a flattering or unflattering light?" -> "unflattering"), the answer format of a template,
which a template's phrase owns exactly as a backdoor's trigger owns its target sentence (T0 held-out seed 4: 36
clean labels under "review depicts the", a phrase flagged on them as copied answers). A target sentence says
something the request did not: the appended name may be in the prompt, the verdict on it is not.
"""

from __future__ import annotations

from typing import Any, Dict, List

import apache_beam as beam
from apache_beam.pvalue import AsDict

from lazaret.checks.poisoning.counting import ngrams_in, trigger_lookup
from lazaret.checks.poisoning.features import toks
from lazaret.checks.poisoning.signals import TRIGGER_OWNS_GROUP_SHARE
from lazaret.graph.combine import SumFn

# anomaly kinds whose triggers stand on copied responses
COPY_KINDS = ("dup", "rep")


class ShortAnswerKeys(beam.DoFn):
    """(((kind, trigger), response key), prompt key) for short, non-gibberish responses (``short_view``: ones the
    request did not offer) whose prompt carries a strong flagged trigger of a copy kind (only such records: a few
    per attack, none in most corpora)."""

    def __init__(self, params: Dict[str, Any]):
        self.params = params
        self._lookups: Dict[int, Any] = {}

    def process(self, f, triggers):
        p = self.params
        pt = None
        for kind in COPY_KINDS:
            ts = triggers.get(kind)
            if not ts:
                continue
            if pt is None:
                pt = toks(f, "pt")
            lookup, first = trigger_lookup(ts, self._lookups)
            for s in sorted(ngrams_in(pt, lookup, first, p["max_ngram"])):
                t = lookup[s]
                if t.get("extend") and t["k"] >= p["extend_min_distinct"]:
                    yield ((kind, s), f["rkey"]), f["pkey"]


def _short_key(f: Dict[str, Any], max_len: int):
    if 0 < f["r_len"] < max_len:
        yield f["rkey"], 1


def short_view(f: Dict[str, Any], max_len: int):
    """The fields ``ShortAnswerKeys`` reads, for responses shorter than ``max_len`` tokens, not gibberish, that
    say something the request did not offer (``chosen_from_prompt``)."""
    if 0 < f["r_len"] < max_len and not f["gib"] and not chosen_from_prompt(f):
        yield {"rkey": f["rkey"], "pkey": f["pkey"], "pt": f["pt"]}


def _is_word(token: str) -> bool:
    return any(c.isalnum() for c in token)


def chosen_from_prompt(f: Dict[str, Any]) -> bool:
    """Every word of the response is a word of the prompt (an option the request offered, see the module)."""
    words = {t for t in toks(f, "rt") if _is_word(t)}
    return bool(words) and words <= set(toks(f, "pt"))


def _keep(kv, min_prompts: int) -> bool:
    return kv[1] >= min_prompts


def _owned(kv, share: float):
    """(response key, {"cand": [((kind, trigger), k)], "all": [records]}) -> ((kind, trigger), response key) for
    the triggers whose carriers give at least ``share`` of all the records with that answer."""
    rkey, grp = kv
    n = sum(grp["all"])
    for key, k in sorted(grp["cand"]):
        if n and k >= share * n:
            yield key, rkey


@beam.ptransform_fn
def ShortAnswers(feats, p, triggers):
    """{(kind, trigger): sorted response keys given identically to >= ``min_support`` distinct carrier prompts, the
    trigger's carriers giving at least ``TRIGGER_OWNS_GROUP_SHARE`` of all the records with that answer} (a small
    side input; empty when no copy-kind trigger is flagged or members are not extended).

    The ownership bound is the backdoor's payload coming with its trigger, as for links: a topic word that a
    refusal backdoor made a trigger (T0, 0.5-3% of prompts) has carriers that answer "yes" or "positive" like
    thousands of other records, and without the bound those labels joined the cluster (T0 held-out runs: 450 ->
    697 clean records over 40 runs, 121 at one seed)."""
    if not p["extend_trigger_members"]:
        return feats.pipeline | "NoShortAnswers" >> beam.Create([])
    # Both inputs are views made in the featurising stage (no side input, so they fuse there): every short
    # response's key (the ownership bound counts all records giving the answer), and the few fields the trigger
    # lookup reads for short answers a request did not offer (most short answers are offered labels or spans of
    # the prompt: T0). The first version, two side-input passes over every record's features, measured ~10% more
    # stage CPU on 20,000 T0 records (bench/poisoning_cost_ab.py).
    sizes = (feats | "ShortAnswerRecords" >> beam.FlatMap(_short_key, p["min_payload_tokens"])
             | "CountShortAnswers" >> beam.CombinePerKey(SumFn()))
    cands = (feats | "UnofferedShortAnswers" >> beam.FlatMap(short_view, p["min_payload_tokens"])
             | "ShortAnswerKeys" >> beam.ParDo(ShortAnswerKeys(p), AsDict(triggers))
             | "ShortAnswerPrompts" >> beam.CombinePerKey(DistinctCount())
             | "KeepShortAnswers" >> beam.Filter(_keep, p["min_support"])
             | "ByAnswer" >> beam.Map(lambda kv: (kv[0][1], (kv[0][0], kv[1]))))
    return ({"cand": cands, "all": sizes} | "JoinAnswerSizes" >> beam.CoGroupByKey()
            | "OwnedAnswers" >> beam.FlatMap(_owned, TRIGGER_OWNS_GROUP_SHARE)
            | "GroupShortAnswers" >> beam.GroupByKey()
            | "SortShortAnswers" >> beam.MapTuple(lambda key, rkeys: (key, sorted(rkeys))))


class DistinctCount(beam.CombineFn):
    """How many distinct values (prompt keys of one (trigger, answer)): carriers only, a few hundred at most."""

    def create_accumulator(self):
        return set()

    def add_input(self, acc, x):
        acc.add(x)
        return acc

    def merge_accumulators(self, accs):
        out = set()
        for a in accs:
            out |= a
        return out

    def extract_output(self, acc):
        return len(acc)


def is_short_answer(f: Dict[str, Any], answers: Dict[Any, List[str]], kind: str, trigger: str) -> bool:
    """The record's response is one of ``trigger``'s identical short answers (``ShortAnswers``)."""
    keys = answers.get((kind, trigger)) if answers else None
    return bool(keys) and f["rkey"] in keys
