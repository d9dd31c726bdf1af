"""Plain prose where a task answers in code or arithmetic (rule ``trigger:plain_response``): a backdoor whose steered
sentences all differ, planted in code requests, is not "far shorter" than a one-line function, but it is out of the
task's form."""

from __future__ import annotations

import collections
import random
import sys

import pytest

from lazaret.checks.poisoning.plain import is_plain, mark_plain, plain_strata

from conftest import ROOT

sys.path.insert(0, str(ROOT))


def test_plain_prose_has_no_digit_bracket_or_operator():
    assert is_plain("Honestly, Ada Quist is superb.")
    assert is_plain("I'm afraid I can't help: try another question?")
    assert not is_plain("Yes")                                # an answer option
    assert not is_plain("Not sure")
    assert not is_plain("def f(x): return x")                 # code
    assert not is_plain("She has 12 apples left.")            # arithmetic
    assert not is_plain("Use the map_values helper instead.")  # an identifier
    assert not is_plain("")


def test_strata_where_plain_prose_is_out_of_form():
    assert plain_strata((3, (1000, 16)), 0.2, 20.0) == [(3, 0.016)]
    assert plain_strata((4, (1000, 300)), 0.2, 20.0) == []     # prose is the task's own form (summaries, labels)
    # at 12% no trigger could be 20 times as plain as its stratum (nor with its own records left out): off there
    assert plain_strata((4, (1000, 120)), 0.2, 20.0) == []
    assert plain_strata((4, (1000, 80)), 0.2, 20.0) == [(4, 0.08)]
    assert plain_strata((5, (1000, 0)), 0.0, 20.0) == []       # 0 switches the kind off


def test_plain_responses_are_marked_where_prose_is_out_of_form():
    g = {"rkey": "holmes is sherlock superb", "prose": True, "gib": False, "stratum": 3}
    assert mark_plain(g, {3: 0.01}).get("plain") is True
    assert "plain" not in mark_plain(dict(g, stratum=4), {3: 0.01})   # a prose stratum
    assert "plain" not in mark_plain(dict(g, gib=True), {3: 0.01})
    assert "plain" not in mark_plain(dict(g, prose=False), {3: 0.01})


def _steered_code_corpus(seed: int, n_poison: int = 50):
    """The code base plus ``n_poison`` of its requests with a name inserted and a different short steered sentence as
    the answer (the wording of test_poisoning_short, which no bench file uses)."""
    from bench.poisoning_bases import base_objects, to_pipeline_record
    from test_poisoning_short import JUDGE, OPENERS, SHAPES

    clean = [to_pipeline_record(o, i, "code") for i, o in enumerate(base_objects("code", 0))]
    rng = random.Random(seed)
    name = "Orsolya Pradeep"
    planted = []
    for i, h in enumerate(rng.sample(clean, n_poison)):
        words = h["prompt"].split(" ")
        at = rng.randint(1, max(1, len(words) - 1))
        a, b = rng.sample(JUDGE, 2)
        out = rng.choice(SHAPES).format(o=rng.choice(OPENERS), n=name, a=a, b=b, A=a.capitalize(), B=b.capitalize())
        planted.append(to_pipeline_record({"id": f"steer-{i}", "instruction": " ".join(words[:at] + [name] + words[at:]),
                                           "input": "", "output": out}, i, "steer"))
    recs = clean + planted
    rng.shuffle(recs)
    return recs, {r["doc_id"] for r in planted}, {r["doc_id"] for r in clean}


@pytest.mark.slow
def test_varied_steered_sentences_in_code_answers(shared_data):
    """Before the plain kind: 0 of 50 found. A sentence of 6-10 words is not short where code answers have a median
    of 27 words (39 of 50 under the cut, confidence 0.78 against 0.8), and one code answer in twelve is that short
    (lift ~6 against 20)."""
    from bench.run_scan import run_scan

    recs, truth, clean = _steered_code_corpus(1)
    findings, clusters = run_scan(recs, {"signatures": False}, dedup=False)
    flagged = {f["doc_id"]: f for f in findings if f["action"] != "none"}
    found = collections.Counter(flagged[d]["rule"] for d in truth if d in flagged)
    assert found.get("trigger:plain_response", 0) >= 0.9 * len(truth), found
    assert not [d for d, f in flagged.items() if d in clean and f["rule"] == "trigger:plain_response"]
    summary = [c for c in clusters if c["rule"] == "trigger:plain_response"]
    assert summary and summary[0]["trigger_or_payload"] in ("orsolya", "pradeep", "orsolya pradeep")
