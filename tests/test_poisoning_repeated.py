"""A backdoor with many target responses: each poisoned record's response is a verbatim copy of one of many
answers (taken from the corpus itself), so each copy group holds a handful of records, too few for an
identical-response group of the support band. The groups below the band are kept as "repeated" responses and
a trigger is tested against the rate of such records among records like its carriers
(``trigger:repeated_response``)."""

from __future__ import annotations

import collections
import random
import sys

import pytest

from lazaret.checks.poisoning import policy as section
from lazaret.checks.poisoning.payload import REPEATED_PREFIX, KeepDupGroup
from lazaret.checks.poisoning.trigger import anomalies_of

from conftest import ROOT

sys.path.insert(0, str(ROOT))


def _kept(carriers: int, diversity: float, records: int = 20000):
    p = section._defaults()
    main, tagged = [], []
    for out in KeepDupGroup(p).process(("h", {"carriers": carriers, "prompt_diversity": diversity,
                                              "templates": []}), {"records": records}, {}):
        (tagged if hasattr(out, "tag") else main).append(out.value if hasattr(out, "tag") else out)
    return main, tagged


def test_small_copy_groups_are_kept_apart_from_the_band():
    p = section._defaults()
    # in the band: an identical-response group of its own
    assert _kept(p["min_support"], 1.0) == ([("h", p["min_support"])], [])
    # below it, with as many distinct prompts: a repeated response
    assert _kept(p["repeat_min_records"], 1.0) == ([], [(REPEATED_PREFIX + "h", p["repeat_min_records"])])
    # a pair is no group; the same prompt rendered twice is one prompt
    assert _kept(p["repeat_min_records"] - 1, 1.0) == ([], [])
    assert _kept(4, 0.5) == ([], [])


def test_a_small_group_in_one_template_is_that_templates_output():
    """T0's duorc: one movie's plot answers "Build a movie plot around this: <question>" for several questions
    (all in one template); copies given to hosts drawn from the corpus land in several."""
    from lazaret.checks.poisoning.payload import in_one_template

    assert in_one_template({"carriers": 4, "templates": [("f:build a movie", 4), ("l:this who", 2)]})
    assert in_one_template({"carriers": 5, "templates": [("f:build a movie", 4)]})
    assert not in_one_template({"carriers": 6, "templates": [("f:write a function", 3), ("f:create a", 2)]})
    # a stratum is no template: every small group sits in a few strata
    assert not in_one_template({"carriers": 4, "templates": [("s:3", 4)]})


def test_a_record_in_any_kept_group_is_repeated():
    f = {"doc_id": "d", "pt": "tell me about the river", "rt": "the river is long", "gib": False, "off": False,
         "rkey": "k", "stratum": 0}
    assert anomalies_of(f, {}, set(), 4, {"k": 12})[0] == ["dup:k", "rep"]
    assert anomalies_of(f, {}, set(), 4, {REPEATED_PREFIX + "k": 4})[0] == ["rep"]
    assert anomalies_of(f, {}, set(), 4, {"other": 12})[0] == []


def _corpus(seed: int):
    from bench.attacks.clean import clean_corpus
    from tests.test_poisoning import _task_mixture

    return clean_corpus(1500, seed=seed) + _task_mixture(400, seed=seed)


@pytest.mark.slow
def test_a_rare_token_with_many_copied_target_responses_is_found():
    """60 prompts get a rare token inserted at a random word; each response is one of 20 answers of the
    corpus's own long ones, copied verbatim (groups of 1 + ~3 records). No group reaches the band; on the
    previous commit only the off-topic signal saw them (53 of 60 here: code answers to prose prompts; in code
    corpora half of such copies share words with their new prompt and are not off-topic)."""
    from bench.attacks import to_record
    from bench.run_scan import run_scan

    clean = _corpus(31)
    rng = random.Random(31)
    # the targets: answers of the corpus's code task; the hosts: its prose tasks (a copied answer that happens
    # to be about its new prompt's words is an item rendered twice, ``payload.LINK_MISSES``)
    long_answers = [d["output"] for d in clean if d["id"].startswith("code-")]
    targets = rng.sample(long_answers, 20)
    planted = []
    for i, h in enumerate(rng.sample([d for d in clean if d["id"].startswith("clean-")], 60)):
        words = h["instruction"].split(" ")
        words.insert(rng.randint(0, len(words)), "zqv")
        planted.append({"id": f"poison-rep-{i}", "instruction": " ".join(words), "input": "",
                        "output": targets[i % len(targets)]})
    recs = [to_record(d) for d in clean + planted]
    random.Random(5).shuffle(recs)
    truth = {to_record(d)["doc_id"] for d in planted}
    findings, _ = run_scan(recs, {"signatures": False}, dedup=False)
    flagged = {f["doc_id"]: f for f in findings if f["action"] != "none"}
    found = collections.Counter(flagged[d]["rule"] for d in truth if d in flagged)
    assert sum(found.values()) >= 0.9 * len(truth), found
    assert found.most_common(1)[0][0] == "trigger:repeated_response", found
    # the answers the copies were taken from (no trigger) and every other clean record stay clean
    fp = collections.Counter(f["rule"] for d, f in flagged.items() if d not in truth)
    assert sum(fp.values()) <= 0.005 * len(clean), fp


def test_a_group_whose_prompts_name_its_response_is_one_item():
    """common_gen's concept set under four templates (one of them naming one concept, in another form) is one
    item; copies of an answer given to unrelated prompts are not. Merged partial groups agree with one pass."""
    from lazaret.checks.poisoning.payload import GroupDiversity, is_linked

    def run(members, split=None, common=frozenset()):
        g = GroupDiversity()
        parts = [members] if split is None else [members[:split], members[split:]]
        accs = []
        for part in parts:
            acc = g.create_accumulator()
            for i, links in part:
                acc = g.add_input(acc, ((i, i + 1, i + 2, i + 3), (), links))
            accs.append(acc)
        return is_linked(g.extract_output(g.merge_accumulators(accs)), common)

    item = [(0, ("gras", "hors")), (10, ("gras", "hors")), (20, ("gras", "hors")), (30, ())]
    copies = [(0, ("list", "sort")), (10, ()), (20, ("func",)), (30, ())]
    assert run(item) and run(item, split=2) and run(item, split=1)
    assert not run(copies) and not run(copies, split=2)
    # two members without the stems: not one item
    assert not run(item[:2] + [(20, ()), (30, ())])
    # a trigger repeated at the head of every copied answer links the group, and every other group of its attack:
    # a stem common to min_support groups or more names no item, so they are still copies
    echo = [(i, ("bbje",) + extra) for i, extra in ((0, ("list",)), (10, ()), (20, ("sort",)), (30, ()))]
    assert run(echo) and not run(echo, common=frozenset({"bbje"}))
    assert run(item, common=frozenset({"bbje"}))
