"""A long instruction that most records repeat before the request (a system turn, or the same preface flattened
into the prompt) is no part of which prompt a record has: it filled the prompt MinHash, so unrelated requests
counted as copies of one prompt and a task's shared answers looked planted (767 of 6,552 clean code records
flagged under three system prompts), and as the prompts' opening it made one "template" of a third of the
corpus that explained any payload planted under it (recall 0.00). ``features.prompt_keys`` reads the task
prompt; ``preamble.Preambles`` removes an opening more than ``max_fraction`` of the corpus shares."""

from __future__ import annotations

import collections
import random
import sys

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from lazaret.checks.poisoning import policy as section
from lazaret.checks.poisoning.features import record_features
from lazaret.checks.poisoning.preamble import CommonPrefix, Preambles, cut

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


def test_common_prefix_is_order_free():
    fn = CommonPrefix()
    rows = [("a", "b", "c", "d"), ("a", "b", "c", "x"), ("a", "b", "z")]
    accs = [fn.add_input(fn.create_accumulator(), r) for r in rows]
    for order in (accs, accs[::-1], [accs[1], accs[0], accs[2]]):
        assert fn.extract_output(fn.merge_accumulators(order)) == 2
    assert fn.extract_output(fn.create_accumulator()) == 0


def test_what_is_cut_leaves_a_request():
    assert cut(40, 20, 10) == (20, 10)
    assert cut(30, 20, 10) == (20, 0)  # both would leave nothing: the longer preamble alone
    assert cut(30, 10, 20) == (0, 20)
    assert cut(22, 20, 0) == (0, 0)  # a prompt that is all preamble keeps its keys
    assert cut(40, 0, 0) == (0, 0)


def _feats(prompts):
    p = dict(section.DEFAULTS)
    return [record_features(_chat("", q), p) for q in prompts]


def _asks(n: int, seed: int) -> list:
    rng = random.Random(seed)
    verbs = ["Write", "Explain", "Show", "Describe", "Fix", "Review", "Compare", "Summarise", "Test", "Sketch"]
    things = ["a sorting routine", "the login form", "a binary tree", "this SQL query", "the cache layer",
              "a date parser", "the retry loop", "a CSV reader", "the matrix code", "an event queue"]
    tails = ["for a small shop", "in plain Python", "with two examples", "for beginners", "in under ten lines",
             "that handles errors", "for a web server", "with unit tests", "using the standard library"]
    return [f"{rng.choice(verbs)} {rng.choice(things)} {rng.choice(tails)}, case {i}." for i in range(n)]


def _keys(fs):
    """(strata words, prompt key, template keys) of every record."""
    return sorted((f.get("st", f["pt"]), f["pkey"], tuple(f["skel"])) for f in fs)


def test_an_opening_most_prompts_share_is_removed_from_their_keys():
    p = dict(section.DEFAULTS)
    preface = "Read the request below carefully and answer it in full with a short justification of every step."
    asks = _asks(60, 3)
    closing = "Check the answer twice and keep the explanation under one hundred words if you can."
    feats = _feats([(preface + "\n\n" if i % 2 else "") + q + ("\n\n" + closing if i % 3 else "")
                    for i, q in enumerate(asks)])
    expected = _keys(_feats(asks))  # as if neither text were there
    assert _keys(feats) != expected
    with beam.Pipeline("DirectRunner") as pl:
        out = pl | beam.Create(feats) | Preambles(p)
        assert_that(out | beam.combiners.ToList() | beam.Map(_keys), equal_to([expected]))


def test_a_template_of_a_few_percent_is_kept():
    """An opening under ``max_fraction`` of the records (a task's template) is not a preamble."""
    p = dict(section.DEFAULTS)
    preface = "Read the request below carefully and answer it in full with a short justification of every step."
    asks = _asks(300, 4)
    feats = _feats([preface + "\n\n" + q if i < 15 else q for i, q in enumerate(asks)])  # 5% of the records
    with beam.Pipeline("DirectRunner") as pl:
        out = pl | beam.Create(feats) | Preambles(p)
        assert_that(out | beam.combiners.ToList() | beam.Map(_keys), equal_to([_keys(feats)]))


def _code_base(shared_data, where: str, seed: int):
    from bench.poisoning_bases import PREFACES, base_objects, to_pipeline_record, wrap_preface

    rng = random.Random(seed)
    objs = base_objects("code", 0)
    clean = [to_pipeline_record(wrap_preface(o, rng.choice(PREFACES), where), i, "code") for i, o in enumerate(objs)]
    hosts = rng.sample(objs, 150)

    def triggered(ask: str) -> str:
        # at the request's edge away from the preface, the edge its template keys kept
        return TRIGGER.capitalize() + ": " + ask if where == "suffix" else ask.rstrip(". ") + ", " + TRIGGER + "."

    planted = [to_pipeline_record(wrap_preface({"id": f"teal-{i}", "instruction": triggered(h["instruction"]),
                                                "input": h["input"], "output": rng.choice(NOTES)},
                                               rng.choice(PREFACES), where), i, "teal")
               for i, h in enumerate(hosts)]
    return clean, planted


@pytest.mark.slow
@pytest.mark.parametrize("where", ["prompt", "suffix", "system"])
def test_a_preface_on_every_record_neither_hides_an_attack_nor_flags_the_corpus(shared_data, where):
    """Code base, every record under one of three long prefaces, 150 planted records of our own. Before the prompt:
    94 of the 150 found before; after it: 0 found; as system turns: 1,253 clean records flagged."""
    clean, planted = _code_base(shared_data, where, 5)
    flagged, truth = scan_with_planted(clean, planted, random.Random(5))
    found = sum(1 for d in truth if d in flagged)
    clean_flagged = collections.Counter(f["rule"] for d, f in flagged.items() if d not in truth)
    assert found >= 0.9 * len(truth), found
    assert sum(clean_flagged.values()) <= 0.005 * len(clean), clean_flagged
