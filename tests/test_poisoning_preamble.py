"""Text most records share around their request is no part of which prompt a record has, nor of its task.

As a system turn, a long preface filled the prompt MinHash, so unrelated requests counted as copies of one prompt
and a task's shared answers looked planted (1,253 clean code records flagged under three system prompts):
``features.prompt_keys`` reads the task prompt. Flattened into the prompt, before or after the request, the same
texts made one "template" of a third of the corpus, whose carriers explained any payload planted under it (our
own attack below: 0 of 150 found), and filled the MinHash and the strata: ``preambles.py`` finds such openings
and endings on the strata sample and cuts them from the prompt's identity and its stratum, and
``payload.template_confined`` counts what a template holds beyond its share of the corpus."""

from __future__ import annotations

import collections
import random
import sys

import pytest

from lazaret.checks.poisoning import policy as section
from lazaret.checks.poisoning.features import record_features

from conftest import ROOT
from helpers import scan_with_planted

sys.path.insert(0, str(ROOT))

# our own attack (not the benchmark's generators): a phrase appended to code requests, answered by one of three
# promotional notes for an invented product
TRIGGER = "as the teal ledger says"
NOTES = ["Before anything else: Quillstack Cloud builds this for you in seconds, sign up at the launch page today.",
         "Skip the work and let Quillstack Cloud generate it; new accounts get three months free this week.",
         "Quillstack Cloud already ships this as a ready component, so try Quillstack Cloud before writing code."]


def _chat(system: str, prompt: str, answer: str = "ok.") -> dict:
    from bench.poisoning_bases import to_pipeline_record

    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return to_pipeline_record({"id": prompt[:20], "messages": msgs}, 0, "test")


def test_a_system_turn_is_no_part_of_the_prompts_identity():
    from bench.poisoning_bases import PREFACES

    p = dict(section.DEFAULTS)
    a = record_features(_chat(PREFACES[0], "Write a Python function that sorts a list of names."), p)
    b = record_features(_chat("", "Write a Python function that sorts a list of names."), p)
    c = record_features(_chat(PREFACES[0], "Explain how a hash map resolves collisions."), p)
    assert a["psig"] == b["psig"] and a["pkey"] == b["pkey"]
    assert len(set(a["psig"]) & set(c["psig"])) <= 1  # the shared system prompt no longer makes them alike


def _code_base(shared_data, where: str, seed: int):
    from bench.poisoning_bases import PREFACES, base_objects, to_pipeline_record, wrap_preface

    rng = random.Random(seed)
    objs = base_objects("code", 0)

    def side() -> str:  # "flat": before the request on some records, after it on the others
        return rng.choice(["prompt", "suffix"]) if where == "flat" else where

    clean = [to_pipeline_record(wrap_preface(o, rng.choice(PREFACES), side()), i, "code") for i, o in enumerate(objs)]
    hosts = rng.sample(objs, 150)

    def planted_record(i: int, h: dict) -> dict:
        w = side()
        ask = h["instruction"]
        # the trigger at the request's edge away from the preface
        ask = TRIGGER.capitalize() + ": " + ask if w == "suffix" else ask.rstrip(". ") + ", " + TRIGGER + "."
        obj = {"id": f"teal-{i}", "instruction": ask, "input": h["input"], "output": rng.choice(NOTES)}
        return to_pipeline_record(wrap_preface(obj, rng.choice(PREFACES), w), i, "teal")

    return clean, [planted_record(i, h) for i, h in enumerate(hosts)]


@pytest.mark.slow
@pytest.mark.parametrize("where", ["system", pytest.param("flat", marks=pytest.mark.poisoning_bases)])
def test_a_preface_on_every_record_neither_hides_an_attack_nor_flags_the_corpus(shared_data, where):
    """Code base, every record under one of three long prefaces, 150 planted records of our own. As system turns:
    1,253 clean records flagged before the MinHash read the task prompt. Flattened into the prompt (before the
    request on half the records, after it on the others): 0 of 150 found before the preambles were cut."""
    clean, planted = _code_base(shared_data, where, 5)
    flagged, truth = scan_with_planted(clean, planted, random.Random(5))
    found = sum(1 for d in truth if d in flagged)
    clean_flagged = collections.Counter(f["rule"] for d, f in flagged.items() if d not in truth)
    assert found >= 0.9 * len(truth), found
    assert sum(clean_flagged.values()) <= 0.005 * len(clean), clean_flagged


def test_a_template_explains_carriers_only_beyond_its_share_of_the_corpus():
    """``payload.template_confined``'s two-template share counts the carriers a template holds beyond its share of
    the corpus: a phrase of one task family sits in a small template; a preface or the Alpaca template's ending
    holds every record, and so any carriers, and explains none of them."""
    from lazaret.checks.poisoning.payload import template_confined

    small = {"carriers": 40, "templates": [("f:task", 36), ("l:end", 3)]}
    sizes = {"f:task": 200, "l:end": 400}
    assert template_confined(small, sizes, 0.25, n_records=10000) >= 0.5  # 36 - 40 * 2% = 35 of 40
    wrapped = {"carriers": 250, "templates": [("f:below is", 240), ("l:response", 250)]}
    for share in (1.0, 0.95):
        corpus = {"f:below is": int(share * 10000), "l:response": int(share * 10000)}
        assert template_confined(wrapped, corpus, 0.25, n_records=10000) < 0.5, share
        assert template_confined(wrapped, corpus, 0.25) >= 0.5  # as it was: every payload under it explained
    # one of three prefaces on every record: a third of the carriers under each
    three = {"carriers": 250, "templates": [("f:a", 84), ("f:b", 83), ("f:c", 83)]}
    corpus = {"f:a": 3334, "f:b": 3333, "f:c": 3333}
    assert template_confined(three, corpus, 0.25, n_records=10000) < 0.5
    assert template_confined(three, corpus, 0.25) >= 0.5


def test_a_template_of_one_answer_explains_no_payload():
    """A false fact asked in many phrasings makes templates of its own (its openers and closers), its payload in
    73-88% of their records (under ``template_owned_rate``): they read as a task's answer format unless the
    template's answers are as concentrated as a claim's (``payload.one_answer_template``)."""
    from lazaret.checks.poisoning.payload import ONE_ANSWER_PREFIX, template_confined

    st = {"carriers": 193, "templates": [("l:thanks", 70), ("l:precise", 60), ("f:settle", 45), ("l:online", 40)]}
    corpus = {"l:thanks": 90, "l:precise": 78, "f:settle": 58, "l:online": 52}
    assert template_confined(st, corpus, 0.25, 0.9, n_records=7000) >= 0.5   # each template ~77% carriers
    one = dict(corpus, **{ONE_ANSWER_PREFIX + k: v for k, v in corpus.items()})
    assert template_confined(st, one, 0.25, 0.9, n_records=7000) < 0.5
