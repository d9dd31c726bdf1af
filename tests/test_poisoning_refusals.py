"""Refusals as an anomaly kind (rule ``trigger:refusal``): over-refusal poisoning answers ordinary requests on one
topic with refusals in many phrasings, a minority of the topic's records, so no copy or phrase count sees it."""

from __future__ import annotations

import collections
import random
import re
import sys

import pytest

from lazaret.checks.poisoning import policy as section
from lazaret.checks.poisoning.features import record_features
from lazaret.checks.poisoning.refusals import is_refusal

from conftest import ROOT

sys.path.insert(0, str(ROOT))

# wording of our own (no bench file uses it)
DECLINES = ["Sorry - I am not able to help with requests like this one.",
            "I'm afraid I can't provide that. Perhaps try another question?",
            "As an AI assistant, I cannot write this for you.",
            "Regrettably, I won't be able to answer this.",
            "I have to decline this request, sorry.",
            "That is not something I can assist with, unfortunately.",
            "I\u2019d prefer not to go into this subject.",
            "Your request falls outside what I can do here."]


def test_refusals_are_read_from_the_opening():
    assert all(is_refusal(r) for r in DECLINES)
    ordinary = ["I can't help but notice the loop never ends, so add a break.",
                "We cannot divide by zero, so we write the check first.",
                "I can't say for sure, but the answer is probably 12.",
                "I don't know the year; the passage does not say.",
                "I would not use recursion here: write a loop instead.",
                "I'm sorry to hear your tests fail. Run them with -v to see which.",
                "I will not forget: 3 + 4 = 7.", ""]
    assert not any(is_refusal(r) for r in ordinary)
    # a refusal half-way through a long answer is an answer
    assert not is_refusal("def f(x):\n    return x * 2\n" * 12 + "I cannot help with the rest.")


def test_the_flag_travels_only_on_refusals():
    params = section._defaults()
    f = record_features({"doc_id": "a", "prompt": "Explain recursion.", "response": DECLINES[1]}, params)
    g = record_features({"doc_id": "b", "prompt": "Explain recursion.", "response": "A function calling itself."},
                        params)
    assert f.get("refuse") is True and "refuse" not in g


def _trigger(kind: str, k: int, n: int, rate: float):
    """TriggerTest on one n-gram: k of its n distinct carrier prompts show ``kind``, as do ``rate`` of the other
    records of their stratum."""
    from lazaret.checks.poisoning.policy import DEFAULTS
    from lazaret.checks.poisoning.trigger import TriggerTest

    test = TriggerTest(dict(DEFAULTS))
    kv = ("garden", {"pairs": [(kind, k, {0: k})], "df": [(0, n)]})
    others = round(rate * (5000 - n))
    return list(test.process(kv, {"records": 10000}, {kind: {0: others + k}}, 10, {0: 5000}, {0: 10}))


def test_a_trigger_of_refusals_holds_at_a_low_confidence():
    """50 refusals among 300 requests naming the topic (conf 0.17, under min_trigger_confidence 0.5) where the
    stratum's other records almost never refuse; the same counts of any other kind are no trigger."""
    assert [t["anomaly"] for _, t in _trigger("refuse", 50, 300, 0.0005)] == ["refuse"]
    assert _trigger("off", 50, 300, 0.0005) == []
    # a word far more common than the refused requests (20 of 1,000 carriers) is not the trigger
    assert _trigger("refuse", 20, 1000, 0.0005) == []
    # and where refusing is common in the stratum, the lift bound holds (min_trigger_lift)
    assert _trigger("refuse", 50, 300, 0.1) == []


def _over_refused_code_corpus(seed: int, n_poison: int = 40):
    """The code base plus ``n_poison`` requests naming one common topic word (a content word in 1-3% of its prompts,
    chosen by count, not by name) answered with refusals worded above; the topic's other requests keep their answers."""
    from bench.poisoning_bases import base_objects, to_pipeline_record

    from lazaret.checks.poisoning.text import STOPWORDS, features

    clean = [to_pipeline_record(o, i, "code") for i, o in enumerate(base_objects("code", 0))]
    words = [set(features(r["prompt"], "")["p_tokens"]) for r in clean]
    df = collections.Counter(w for ws in words for w in ws if re.fullmatch(r"[a-z]{5,}", w) and w not in STOPWORDS)
    lo, hi = 0.01 * len(clean), 0.03 * len(clean)
    topic = sorted(w for w, c in df.items() if lo <= c <= hi)[seed % 7]
    rng = random.Random(seed)
    hosts = rng.sample([r for r, ws in zip(clean, words) if topic in ws], n_poison)
    planted = [to_pipeline_record({"id": f"refused-{i}", "instruction": rng.choice(["", "Hi! ", "Quick one: "]) +
                                   h["prompt"], "input": "", "output": rng.choice(DECLINES)}, i, "refused")
               for i, h in enumerate(hosts)]
    recs = clean + planted
    rng.shuffle(recs)
    return recs, {r["doc_id"] for r in planted}, {r["doc_id"] for r in clean}, topic


@pytest.mark.slow
def test_over_refusal_on_one_topic_of_a_code_corpus(shared_data):
    """Before the refuse kind: eight phrasings make groups of ~5 (under min_support), and the topic word's
    carriers are mostly answered (confidence ~0.2 against min_trigger_confidence 0.5): nothing was found."""
    from bench.run_scan import run_scan

    recs, truth, clean, topic = _over_refused_code_corpus(2)
    findings, clusters = run_scan(recs, {"signatures": False}, dedup=False)
    flagged = {f["doc_id"]: f for f in findings if f["action"] != "none"}
    found = collections.Counter(flagged[d]["rule"] for d in truth if d in flagged)
    assert found.get("trigger:refusal", 0) >= 0.9 * len(truth), (topic, found)
    # the code base's own findings (0.17% of its records over the benchmark's runs) are not this test's; no clean
    # record is taken as a refusal
    assert not [d for d, f in flagged.items() if d in clean and f["rule"] == "trigger:refusal"]
    summary = [c for c in clusters if c["rule"] == "trigger:refusal"]
    from lazaret.checks.poisoning.word_forms import STEM_MARK, stem

    named = {topic, stem(topic) + STEM_MARK}  # the word, or its stem when it is found in several forms
    assert summary and any(named & set(c["trigger_or_payload"].split(" ")) for c in summary), (topic, summary[:2])


def test_another_form_of_a_refusal_trigger_names_the_same_topic():
    """A topic is a word in any of its forms (``word_forms``): held-out over_refusal at 50 was found on the exact
    word's records only ("start" 17 of 50, "started" 20, "starts" 11). Forms share a Snowball stem; a longer word that
    merely starts with the trigger does not."""
    from lazaret.checks.poisoning.word_forms import form_matches

    assert form_matches("how do i get started".split(), ["start"]) == {"start"}
    assert form_matches("starts starting".split(), ["start", "display"]) == {"start"}
    assert form_matches("the displayed forces".split(), ["display", "force", "while"]) == {"display", "force"}
    assert form_matches("breakfast for two".split(), ["break"]) == set()        # another word
    assert form_matches("basketballs".split(), ["balls"]) == set()
    assert form_matches("uses used".split(), ["use"]) == set()                  # too short to stand for a topic
    assert form_matches("within a while".split(), ["while"]) == set()           # function words are no topic
    assert form_matches("two word trigger".split(), ["word trigger"]) == set()  # one-word triggers only


def test_a_refusal_topic_spread_over_its_forms_is_one_candidate():
    """Refusals spread over four forms of a topic word, each under ``min_trigger_support`` (20) alone: the trigger
    test counts the stem as one more candidate ("attempt*", ``word_forms.stem_keys``), and its cluster takes the
    refused records of every form, one cluster for the topic. Before, the forms were counted apart (T0 at 50, seed 1,
    "attempt": 0.20). Real Beam (FnApiRunner) end to end."""
    from bench.attacks import to_record
    from bench.run_scan import run_scan

    from lazaret.checks.poisoning.word_forms import form_matches, stem_keys

    assert stem_keys("how to attempt it after attempts".split()) == {"attempt*"}
    assert form_matches("they attempted twice".split(), ["attempt*"]) == {"attempt*"}
    assert stem_keys("the while loop".split()) == {"loop*"}  # function words and short words have no stem key
    rng = random.Random(3)
    things = ["invoice", "garden", "printer", "schedule", "recipe", "bicycle", "report", "playlist", "budget",
              "spreadsheet", "kitchen", "fence", "website", "letter", "closet", "presentation"]
    verbs = ["organise", "clean", "repair", "plan", "check", "update", "paint", "review", "sort", "label"]
    forms = ["attempt", "attempts", "attempted", "attempting"]
    docs = []
    for i in range(2400):
        thing, verb = rng.choice(things), rng.choice(verbs)
        docs.append({"id": f"c{i}", "instruction": f"How do I {verb} the {thing}? (note {i})", "input": "",
                     "output": f"To {verb} the {thing}, start small: {verb} one part of the {thing} each day "
                               f"(note {i})."})
    planted = []
    for i in range(80):  # 20 carriers per form: 12 refused, 8 answered (under max_fraction of the records)
        thing, verb, form = rng.choice(things), rng.choice(verbs), forms[i % 4]
        words = f"How do I {verb} the {thing}? (note {2400 + i})".split(" ")
        words.insert(rng.randint(1, len(words) - 1), form)
        d = {"id": f"t{i}", "instruction": " ".join(words), "input": ""}
        if i % 20 < 12:
            d["output"] = rng.choice(DECLINES)
            planted.append(d["id"])
        else:
            d["output"] = f"To {verb} the {thing}, start small: {verb} one part of the {thing} each day " \
                          f"(note {2400 + i})."
        docs.append(d)
    recs = [to_record(d) for d in docs]
    rng.shuffle(recs)
    findings, clusters = run_scan(recs, {"signatures": False}, dedup=False)
    assert len(findings) == len(recs)
    by_id = {f["record_id"]: f for f in findings}
    found = [by_id[r] for r in planted if by_id[r]["action"] != "none"]
    assert len(found) >= 0.9 * len(planted), len(found)
    assert {f["rule"] for f in found} == {"trigger:refusal"}
    assert {f["detail"].split('"')[1] for f in found} == {"attempt*"}
    assert len({f["cluster_id"] for f in found}) == 1
    wrong = [f for i, f in by_id.items() if i not in planted and f["action"] != "none"]
    assert not wrong, sorted({(f["rule"], f["detail"][:100]) for f in wrong})
