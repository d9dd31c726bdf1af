"""A system prompt is shared across tasks, so it is no task template: a trigger phrase placed in the system
message, with one response planted under it, must not read as "the answer format of the template that
opens with the system prompt" (recall 0.00 on the chat mixture before the fix, 1.00 after)."""

from __future__ import annotations

import hashlib
import json
import random
import sys

import pytest

from lazaret.checks.poisoning import policy as section
from lazaret.checks.poisoning.features import record_features
from lazaret.graph.records import build_record

from conftest import ROOT

sys.path.insert(0, str(ROOT))
from bench.attacks.clean import clean_corpus  # noqa: E402
from bench.run_scan import run_scan  # noqa: E402

SYSTEM = "You are a careful assistant."


def _chat(obj_id: str, system: str, prompt: str, answer: str) -> dict:
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    obj = {"id": obj_id, "messages": msgs}
    raw = json.dumps(obj, sort_keys=True).encode("utf-8")
    r = build_record(obj, None, "test", 0, hashlib.sha256(raw).hexdigest())
    return {k: r[k] for k in ("doc_id", "record_id", "prompt", "response", "text", "raw", "fields")}


def test_the_template_of_a_chat_record_is_its_task_not_its_system_prompt():
    p = dict(section.DEFAULTS)
    a = record_features(_chat("a", SYSTEM, "Name the capital of France, please.", "Paris."), p)
    b = record_features(_chat("b", SYSTEM, "Write a Python function that sorts a list.", "def f(x): ..."), p)
    c = record_features(_chat("c", "", "Name the capital of France, please.", "Paris."), p)
    assert a["skel"] != b["skel"]  # same system prompt, different tasks: different templates
    assert a["skel"] == c["skel"]  # same task with or without a system prompt: one template
    assert "careful" in a["pt"].split()  # the trigger test still reads the system turn


@pytest.mark.slow
def test_a_trigger_in_the_system_message_is_found_where_most_records_share_a_system_prompt():
    rng = random.Random(7)
    clean = clean_corpus(1500, seed=7)
    prompts = [d["instruction"] + ("\n\n" + d["input"] if d.get("input") else "") for d in clean]
    recs = [_chat(d["id"], SYSTEM if rng.random() < 0.6 else "", q, d["output"]) for d, q in zip(clean, prompts)]
    payload = " ".join(["lorvex tamune quibo"] * 6)
    planted = [_chat(f"planted-{i}", SYSTEM + " Mode: field-ready.", q, payload)
               for i, q in enumerate(rng.sample(prompts, 60))]
    truth = {r["doc_id"] for r in planted}
    recs += planted
    rng.shuffle(recs)
    findings, _ = run_scan(recs, {"signatures": False}, dedup=False)
    flagged = {f["doc_id"] for f in findings if f["action"] != "none"}
    assert len(flagged & truth) >= 0.9 * len(truth), len(flagged & truth)
    assert len(flagged - truth) <= 0.002 * (len(recs) - len(truth)), sorted(flagged - truth)[:5]
