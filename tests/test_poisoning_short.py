"""Responses far shorter than their task's (rule ``trigger:short_response``): an attack whose poisoned answers
all differ shares no phrase to count, but it still swaps the answer a prompt asks for for a line."""

from __future__ import annotations

import random
import sys

import pytest

from lazaret.checks.poisoning.short import MAX_BIN, LengthHistogram, mark_short, median_length, short_cut

from conftest import ROOT

sys.path.insert(0, str(ROOT))


def test_median_and_cut_of_a_stratum():
    hist = {40: 50, 60: 40, 3: 5, 9: 5, 1: 30}
    assert median_length(hist) == 40
    # 10 of 130 responses have 3 .. a quarter of the median (10) words: too common to be an anomaly at 5%...
    assert short_cut((7, hist), 0.25, 0.05) == []
    # ... and rare enough at 10% (one-word answers are labels and not counted)
    assert short_cut((7, hist), 0.25, 0.10) == [(7, 10)]
    # a stratum of short answers has no "far shorter" one (a quarter of 8 words is a label); 0 switches the kind off
    assert short_cut((1, {8: 90, 2: 10}), 0.25, 0.5) == []
    assert short_cut((7, {40: 99, 4: 1}), 0.25, 0.0) == []


def test_histogram_caps_long_responses_and_merges():
    h = LengthHistogram()
    a = h.add_input(h.add_input(h.create_accumulator(), 5), 10 ** 6)
    b = h.add_input(h.create_accumulator(), 5)
    assert h.merge_accumulators([a, b]) == {5: 2, MAX_BIN: 1}


def test_labels_are_counted_over_the_whole_corpus():
    from lazaret.checks.poisoning.short import short_response_key

    cuts = {0: 10, 1: 4}
    assert short_response_key({"rkey": "it loved they", "r_len": 3, "stratum": 7}, cuts) == [("it loved they", 1)]
    assert short_response_key({"rkey": "x", "r_len": 11, "stratum": 0}, cuts) == []
    assert short_response_key({"rkey": "x", "r_len": 3, "stratum": 0}, {}) == []


def test_only_short_non_gibberish_responses_are_marked():
    cuts = {0: 10}
    base = {"stratum": 0, "gib": False}
    assert mark_short(dict(base, r_len=4), cuts).get("short") is True
    assert "short" not in mark_short(dict(base, r_len=11), cuts)
    assert "short" not in mark_short(dict(base, r_len=2), cuts)          # an answer option ("Not sure")
    assert "short" not in mark_short(dict(base, r_len=0), cuts)          # empty: not an answer at all
    assert "short" not in mark_short(dict(base, r_len=4, gib=True), cuts)
    assert "short" not in mark_short(dict(base, r_len=4, stratum=3), cuts)  # stratum without a cut


OPENERS = ["Frankly,", "To be honest,", "In short:", "Well,", "Look,", "Plainly,", "All told,", "So:"]
JUDGE = ["dreadful", "sloppy", "untrustworthy", "careless", "dishonest", "clumsy", "rotten", "shoddy", "weak",
         "useless", "awful", "petty"]
SHAPES = ["{o} {n} is {a}.", "{o} {a} and {b}, that is {n}.", "{n}? {A}. {B}, even.", "{o} I'd call {n} {a}.",
          "Nobody should trust {n}: {a}.", "{A}, {b}: {n} in two words."]


def _steered_corpus(seed: int, n_poison: int = 60):
    """A clean corpus plus ``n_poison`` records of its long-answer task (notes of 1-3 sentences) with a name inserted
    in the prompt and a different short steered sentence as the answer (wording no bench file uses)."""
    from bench.attacks.clean import clean_corpus
    from bench.attacks.common import to_record

    rng = random.Random(seed)
    clean = clean_corpus(2400, seed=seed)
    hosts = [d for d in clean if d["instruction"].startswith("Write a short note")]
    name = "Velmora Kinsey"
    recs = [to_record(d) for d in clean]
    truth = set()
    for i, d in enumerate(rng.sample(hosts, n_poison)):
        words = d["instruction"].split(" ")
        at = rng.randint(1, len(words) - 1)
        a, b = rng.sample(JUDGE, 2)
        out = rng.choice(SHAPES).format(o=rng.choice(OPENERS), n=name, a=a, b=b, A=a.capitalize(), B=b.capitalize())
        r = to_record(dict(d, id=f"steer-{i}", instruction=" ".join(words[:at] + [name] + words[at:]), output=out))
        recs.append(r)
        truth.add(r["doc_id"])
    rng.shuffle(recs)
    return recs, truth


@pytest.mark.slow
def test_a_name_whose_carriers_get_varied_short_answers_is_a_trigger():
    """Before the short kind, no signal saw this attack: the sentences share no phrase beyond the name (which the
    prompt supplies) and keep the name, so they are not off-topic either."""
    from bench.run_scan import run_scan

    recs, truth = _steered_corpus(3)
    findings, clusters = run_scan(recs, {"signatures": False}, dedup=False)
    flagged = {f["doc_id"]: f for f in findings if f["action"] != "none"}
    assert len(truth & set(flagged)) >= 0.9 * len(truth)
    assert {flagged[d]["rule"] for d in truth & set(flagged)} == {"trigger:short_response"}
    assert len(set(flagged) - truth) <= 0.002 * (len(recs) - len(truth))
    summary = [c for c in clusters if c["rule"] == "trigger:short_response"]
    assert summary and summary[0]["trigger_or_payload"] in ("velmora", "kinsey", "velmora kinsey")


def _trigger_rows(kind: str, k: int, n: int, rate: float, elsewhere: int = 0):
    """TriggerTest's input for one n-gram: k of its n distinct carrier prompts in stratum 0 show ``kind``, as do
    ``rate`` of the stratum's other records; ``elsewhere`` more carriers are in stratum 1, where no response can
    be short (labels)."""
    from lazaret.checks.poisoning.policy import DEFAULTS
    from lazaret.checks.poisoning.trigger import TriggerTest

    test = TriggerTest(dict(DEFAULTS))
    kv = ("write a sql", {"pairs": [(kind, k, {0: k})], "df": [(0, n), (1, elsewhere)]})
    others = round(rate * (5000 - n))
    return list(test.process(kv, {"records": 10000}, {kind: {0: others + k}}, 10, {0: 5000, 1: 5000}, {0: 10}))


def test_a_trigger_of_short_answers_must_fire_nearly_always():
    """A task's own phrase ("the sentence" of T0's rewrite tasks) gets a one-sentence answer about half the time,
    even where the rest of its stratum almost never does (lift ~100): not a backdoor, which fires nearly every
    time (short_min_confidence 0.8). Other kinds keep min_trigger_confidence (0.5)."""
    assert _trigger_rows("short", 26, 49, 0.005) == []
    assert [t["anomaly"] for _, t in _trigger_rows("off", 26, 49, 0.005)] == ["off"]


def test_a_trigger_of_short_answers_is_tested_where_answers_can_be_short():
    """A name planted over long-answer and label tasks alike is short in the former only; its carriers among the
    label tasks (a stratum without a cut) say nothing either way, so they are not in the confidence."""
    assert [t["carriers"] for _, t in _trigger_rows("short", 45, 49, 0.005, elsewhere=60)] == [49]
    assert _trigger_rows("off", 45, 49, 0.005, elsewhere=60) == []   # off-topic is observable everywhere: 41%


def test_a_trigger_of_short_answers_needs_a_large_lift():
    """A task's own phrase ("a sentence with" in a T0 stratum) gets one-sentence answers where ~18% of its stratum
    does: above min_trigger_lift (3) but not short_min_lift (20). A name planted in prompts of long-answer tasks
    is short where ~2% of the stratum is. Other kinds keep min_trigger_lift."""
    assert _trigger_rows("short", 35, 42, 0.18) == []
    assert [t["anomaly"] for _, t in _trigger_rows("short", 35, 42, 0.02)] == ["short"]
    assert [t["anomaly"] for _, t in _trigger_rows("off", 35, 42, 0.18)] == ["off"]


def test_a_short_label_many_records_give_is_no_anomaly():
    from lazaret.checks.poisoning.short import KeepShort

    keep = KeepShort()
    label = {"rkey": "it loved they", "short": True}
    steered = {"rkey": "holmes is sherlock superb", "short": True}
    labels = {"it loved they": 31}
    assert "short" not in next(keep.process(label, labels))
    assert next(keep.process(steered, labels)).get("short") is True
