"""The attack-space benchmark on a user's own corpus (``bench/poisoning_space.py --bases file:PATH``): the file is
read as ``lazaret scan`` reads it, and the generators draw their hosts from its records."""

from __future__ import annotations

import json
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT))

from bench.attacks.space import SPACE  # noqa: E402
from bench.poisoning_bases import base_objects  # noqa: E402
from bench.poisoning_space import pool_of  # noqa: E402


def _write(path, chat: int, alpaca: int) -> None:
    lines = []
    for i in range(chat):
        lines.append(json.dumps({"messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"Tell me something about the harbour town number {i} and its ferries."},
            {"role": "assistant", "content": f"Town {i} keeps three ferries that cross the bay every morning."}]}))
    for i in range(alpaca):
        lines.append(json.dumps({"instruction": f"Summarise report {i} on rainfall", "input": "",
                                 "output": f"Report {i} finds rainfall rose in the north and fell in the south."}))
    lines.insert(3, "{not json")
    lines.insert(5, "[1, 2]")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_own_corpus_is_read_as_the_scan_reads_it(tmp_path):
    f = tmp_path / "corpus.jsonl"
    _write(f, chat=30, alpaca=10)
    objs = base_objects(f"file:{f}")
    assert len(objs) == 40  # the two lines that are no JSON object are skipped
    pool, fmt = pool_of(f"file:{f}", 0)
    assert fmt == "messages"  # planted records take the format most records have
    assert len(pool) == 40
    chat_hosts = [h for h in pool if "harbour" in h["instruction"]]
    assert len(chat_hosts) == 30
    # the host's prompt is the user's turn as the scan reads it, without the system turn's text
    assert all("helpful assistant" not in h["instruction"] for h in chat_hosts)
    assert all(h["output"].startswith("Town ") for h in chat_hosts)


def test_generators_plant_into_own_corpus(tmp_path):
    f = tmp_path / "corpus.jsonl"
    _write(f, chat=5, alpaca=60)
    pool, fmt = pool_of(f"file:{f}", 0)
    assert fmt == "alpaca"
    inj = SPACE["entity_steer"](pool, 20, 1, fmt)
    assert len(inj.records) == 20
    hosts = {h["instruction"] for h in pool}
    # every planted prompt is built on one of the corpus's own prompts
    assert all(any(h in r["instruction"] for h in hosts) for r in inj.records if "instruction" in r)
