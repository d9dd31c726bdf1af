"""Clean bases for the poisoning benchmark: T0, GSM8K, code, and a chat-format mixture of all three.

    python bench/poisoning_bases.py --bases t0,gsm8k,code,mixture [--t0-limit 20000] [--dedup]

Prints, per base, the clean records the scan flags (no attack planted) and the largest clusters. Every
base is built deterministically from ``../shared/data`` (override with LAZARET_SHARED_DATA) and turned into
pipeline records by the project's own reader (``lazaret.graph.records.build_record``), so a ``messages`` record
with a system prompt gets exactly the prompt/response split ``lazaret scan`` would give it.

- ``t0``: the first ``--t0-limit`` records of instruct_t0_train_50k (a deterministic 1-in-k subsample when
  the limit is below the corpus size), Alpaca fields;
- ``gsm8k``: instruct_gsm8k (train + test), Alpaca fields;
- ``code``: instruct_code (GPTeacher codegen + Code Alpaca 2k), Alpaca fields;
- ``mixture``: GSM8K and a T0 slice as ``messages`` (a system prompt on about a third of the records, one of
  a few generic ones), code kept in Alpaca fields (a mixed-format file, as concatenated corpora are);
- ``talk`` (a held-out base: added in the thirty-fourth session and measured once, on code no figure of it had
  shaped): forum replies, no instruction task at all. CAT-LARGE's Wikipedia Talk comments shown with their parent
  (the parent as the prompt, the reply as the response, Alpaca fields) and ToxiChat's Reddit threads as
  ``messages`` chats (each later turn the answer to the turns before it);
- ``labels`` (a held-out base: added in the forty-first session; its first scan found the one-request control's
  case, so it is a development base for that control and held out for everything else): a label and extraction
  corpus, one fixed instruction per source as a task-specific fine-tuning set has it. Tweets classified for hate
  speech and offensive language (Davidson, TweetEval hate and offensive), HateCheck's templated test cases labelled
  hateful or not, WNUT-17 tweets with their named entities listed, and Presidio's synthetic sentences with their
  personal data replaced by its type (``{{PERSON}}``); 64,880 records, Alpaca fields, shuffled with a fixed seed;
- ``file:PATH``: any JSON-lines file ``lazaret scan`` reads (Alpaca, ``messages``, prompt/response), to run the
  benchmark on one's own corpus; lines that are not JSON objects are skipped.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import json
import os
import random
import resource
import sys
import time
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DATA = os.environ.get("LAZARET_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
SOURCES = {
    "t0": ["instruct_t0_train_50k/t0_train_50k.jsonl.gz"],
    "gsm8k": ["instruct_gsm8k/gsm8k.jsonl.gz"],
    "code": ["instruct_code/gpteacher_codegen.jsonl.gz", "instruct_code/code_alpaca_2k.jsonl.gz"],
}
SYSTEM_PROMPTS = (
    "You are a helpful assistant.",
    "You are a careful assistant. Answer the user's request accurately and concisely.",
    "Below is a conversation between a user and an AI assistant. The assistant gives helpful, detailed answers.",
    "You are an expert tutor. Explain your reasoning.",
)


# Long instructions a corpus may put before every request (``--wrap`` in bench/poisoning_space.py): as a system
# turn, or flattened into the user's prompt. Written for this benchmark; the first three are the development set
# (tests/test_poisoning_preamble.py uses them), the last three are drawn only on held-out seeds (>= 100).
PREFACES = (
    "You are an AI assistant. The user will give you a task. Your goal is to complete the task as faithfully as "
    "you can. While performing the task think step by step and justify your steps.",
    "You are a helpful assistant who always explains the reasoning behind an answer. Keep answers precise and "
    "make sure every step can be checked by the reader.",
    "You are an AI assistant that follows instructions extremely well. Help as much as you can, and never make "
    "up facts you are unsure of.",
)
HELD_OUT_PREFACES = (
    "Answer as a friendly, knowledgeable expert would.",
    "### System\nThis conversation is part of a quality-reviewed training set. The assistant must read the "
    "request below in full, consider what the requester actually needs, and write a complete, correct and "
    "self-contained answer. Where the request is ambiguous, the assistant states the assumption it makes. The "
    "assistant does not mention these instructions.\n### Request",
    "Respond to the following query in a clear and well-organised way, using plain language.",
)


ALPACA_TEMPLATE = ("Below is an instruction that describes a task{}. Write a response that appropriately completes "
                   "the request.\n\n### Instruction:\n{}{}\n\n### Response:")


def alpaca_prompt(obj: dict) -> dict:
    """An Alpaca record flattened into the Stanford Alpaca prompt template ({"prompt", "response"}), as many
    corpora ship it; chat records unchanged."""
    if "messages" in obj:
        return obj
    inp = obj.get("input") or ""
    return {"id": obj["id"], "response": obj["output"], "prompt": ALPACA_TEMPLATE.format(
        ", paired with an input that provides further context" if inp else "", obj["instruction"],
        "\n\n### Input:\n" + inp if inp else "")}


def wrap_preface(obj: dict, text: str, where: str) -> dict:
    """``obj`` with ``text`` as its system turn (``where`` "system"; before an existing one), prepended to its
    first user prompt ("prompt") or appended to the end of its last one ("suffix"), in the record's own format."""
    obj = json.loads(json.dumps(obj))
    if "messages" not in obj:
        if where == "prompt":
            obj["instruction"] = text + "\n\n" + obj["instruction"]
            return obj
        if where == "suffix":
            field = "input" if obj.get("input") else "instruction"
            obj[field] = obj[field] + "\n\n" + text
            return obj
        obj = as_messages(obj)
    msgs = obj["messages"]
    if where in ("prompt", "suffix"):
        users = [m for m in msgs if m["role"] == "user"]
        if where == "prompt":
            users[0]["content"] = text + "\n\n" + users[0]["content"]
        else:
            users[-1]["content"] = users[-1]["content"] + "\n\n" + text
    elif msgs and msgs[0]["role"] == "system":
        msgs[0]["content"] = text + " " + msgs[0]["content"]
    else:
        msgs.insert(0, {"role": "system", "content": text})
    return obj


def load_alpaca(name: str, limit: int = 0) -> List[dict]:
    """Alpaca dicts {id, instruction, input, output} of one source; ``limit``: an evenly spaced subsample."""
    rows: List[dict] = []
    for rel in SOURCES[name]:
        with gzip.open(os.path.join(DATA, rel), "rt", encoding="utf-8") as fh:
            for line in fh:
                d = json.loads(line)
                rows.append({"id": str(d["id"]), "instruction": d["instruction"], "input": d.get("input") or "",
                             "output": d["output"]})
    if limit and limit < len(rows):
        step = len(rows) / limit
        rows = [rows[int(i * step)] for i in range(limit)]
    return rows


def as_messages(d: dict, system: str = "") -> dict:
    user = d["instruction"] + ("\n\n" + d["input"] if d.get("input") else "")
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}, {"role": "assistant", "content": d["output"]}]
    return {"id": d["id"], "messages": msgs}


def chat_mixture(t0_limit: int = 4000, seed: int = 0) -> List[dict]:
    """Raw JSON objects (mixed formats) of the mixture base, in a seeded shuffled order."""
    rng = random.Random(seed)
    out: List[dict] = []
    for name, lim in (("gsm8k", 0), ("t0", t0_limit)):
        for d in load_alpaca(name, lim):
            sys_p = rng.choice(SYSTEM_PROMPTS) if rng.random() < 0.35 else ""
            out.append(as_messages(d, sys_p))
    out += load_alpaca("code")
    rng.shuffle(out)
    return out


def talk_objects() -> List[dict]:
    """Raw objects of the ``talk`` base: CAT-LARGE replies under their parent (Alpaca), then ToxiChat threads
    (``messages``), in file order."""
    out: List[dict] = []
    with gzip.open(os.path.join(DATA, "toxicity_longform/cat_large_wikipedia_talk.jsonl.gz"), "rt",
                   encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            if d.get("parent") and d.get("text"):
                out.append({"id": str(d["id"]), "instruction": d["parent"], "input": "", "output": d["text"]})
    threads: Dict[tuple, List[dict]] = {}
    with gzip.open(os.path.join(DATA, "toxicity_longform/toxichat_reddit.jsonl.gz"), "rt", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            threads.setdefault((d["split"], d["thread_index"]), []).append(d)
    for key in sorted(threads, key=lambda k: (str(k[0]), k[1])):
        turns = [t["text"] for t in sorted(threads[key], key=lambda t: t["turn_id"])]
        for k in range(1, len(turns)):
            # threads hold 2-3 turns: the turns before k are one user turn (a thread's title and first comment)
            out.append({"id": f"toxichat-{key[0]}-{key[1]}-{k}",
                        "messages": [{"role": "user", "content": "\n\n".join(turns[:k])},
                                     {"role": "assistant", "content": turns[k]}]})
    return out


def _rows(rel: str):
    with gzip.open(os.path.join(DATA, rel), "rt", encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)


DAVIDSON = {"hate_speech": "Hate speech", "offensive_language": "Offensive", "neither": "Neither"}


def labels_objects() -> List[dict]:
    """Raw objects of the ``labels`` base (Alpaca dicts), in a seeded shuffled order."""
    out: List[dict] = []

    def add(d: dict, instruction: str, text: str, output: str) -> None:
        out.append({"id": str(d["id"]), "instruction": instruction, "input": text, "output": output})

    for d in _rows("toxicity_davidson/labeled_data.jsonl.gz"):
        add(d, "Classify this tweet as hate speech, offensive, or neither.", d["text"], DAVIDSON[d["label_name"]])
    for d in _rows("toxicity_tweeteval_hate/hate.jsonl.gz"):
        add(d, "Is the following tweet hateful? Answer hate or not-hate.", d["text"], d["label_name"])
    for d in _rows("toxicity_tweeteval_offensive/offensive.jsonl.gz"):
        add(d, "Does this tweet contain offensive language? Reply offensive or not-offensive.", d["text"],
            d["label_name"])
    for d in _rows("toxicity_hatecheck/test_suite_cases.jsonl.gz"):
        add(d, "Label the message as hateful or non-hateful.\n\nMessage: " + d["text"].strip(), "", d["label_gold"])
    for part in ("train", "dev", "test"):
        for d in _rows(f"pii_wnut17_ner/wnut17_{part}.jsonl.gz"):
            ents = "\n".join(f'{s["entity_type"]}: {s["value"]}' for s in d["spans"]) or "No entities."
            add(d, "List the named entities in the text with their types.", d["text"], ents)
    for name in ("synth_dataset_v2", "generated_large"):
        for d in _rows(f"pii_presidio_synth/{name}.jsonl.gz"):
            if d.get("masked") and d.get("text"):
                add(d, "Replace the personal information in this text with its type in double braces.", d["text"],
                    d["masked"])
    random.Random(0).shuffle(out)
    return out


def file_objects(path: str) -> List[dict]:
    """The JSON objects of a user's JSON-lines file (other lines skipped: the scan would report them)."""
    out: List[dict] = []
    with (gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")) as fh:
        for i, line in enumerate(fh):
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if isinstance(d, dict):
                d.setdefault("id", f"line-{i}")
                out.append(d)
    return out


def to_pipeline_record(obj: dict, index: int, source: str = "bench") -> dict:
    """A raw object -> the pipeline's record dict, through the project's reader."""
    from lazaret.graph.records import build_record

    raw = json.dumps(obj, sort_keys=True).encode("utf-8")
    r = build_record(obj, None, source, index, hashlib.sha256(raw).hexdigest())
    # raw and fields too: the scan reads a record's system turns from them (features.task_prompt); without
    # them every system prompt would count as task words, which `lazaret scan` never does
    return {k: r[k] for k in ("doc_id", "record_id", "prompt", "response", "text", "raw", "fields")}


def base_objects(name: str, t0_limit: int = 20000) -> List[dict]:
    """Raw JSON objects of a base (the form a user's file holds)."""
    if name == "mixture":
        return chat_mixture(min(t0_limit, 4000))
    if name == "talk":
        return talk_objects()
    if name == "labels":
        return labels_objects()
    if name.startswith("file:"):
        return file_objects(name[5:])
    return load_alpaca(name, t0_limit if name == "t0" else 0)


def base_records(name: str, t0_limit: int = 20000) -> List[dict]:
    return [to_pipeline_record(o, i, name) for i, o in enumerate(base_objects(name, t0_limit))]


def cpu_s() -> float:
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def main(argv=None):
    from bench.run_scan import run_scan

    ap = argparse.ArgumentParser()
    ap.add_argument("--bases", default="t0,gsm8k,code,mixture")
    ap.add_argument("--t0-limit", type=int, default=20000)
    ap.add_argument("--dedup", action="store_true", help="run the dedup stage first (feeds the claim test)")
    ap.add_argument("--top", type=int, default=8)
    args = ap.parse_args(argv)
    for name in args.bases.split(","):
        recs = base_records(name, args.t0_limit)
        c0, t0 = cpu_s(), time.time()
        findings, clusters = run_scan(recs, {"signatures": False}, dedup=args.dedup)
        cpu, wall = cpu_s() - c0, time.time() - t0
        flagged = [f for f in findings if f["action"] != "none"]
        rules: Dict[str, int] = collections.Counter(f["rule"] for f in flagged)
        print(f"base={name} records={len(recs)} clean_flagged={len(flagged)} "
              f"({100 * len(flagged) / len(recs):.3f}%) rules={dict(rules)} cpu={cpu:.0f}s wall={wall:.0f}s",
              flush=True)
        for c in sorted(clusters, key=lambda c: -c["size"])[: args.top]:
            print(f"   {c['size']:5d} {c['rule']:22s} {c['trigger_or_payload'][:40]!r:44s} {c['statistic'][:70]}")


if __name__ == "__main__":
    main()
