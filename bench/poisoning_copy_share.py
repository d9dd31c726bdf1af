"""How much of an answer is a verbatim span of its own prompt: planted records against a base's clean records.

    .venv/bin/python bench/poisoning_copy_share.py [--bases code,t0,gsm8k,mixture,labels]

A measurement for a control not built (docs/poisoning.md, "One request answered one way"): a templated sentence
rewritten with its personal data masked ("My zip code is #####" -> "My zip code is {{zipcode}}") copies most of its
prompt, a planted answer does not. Prints, per development family (development seeds 1-3, 50 records each, drawn on
every base given) and per task of the ``labels`` base and per clean base, the share of records whose longest common
run of word tokens with the prompt is over 0.3 ... 0.8 of the answer's tokens, and the share the trigger test reads
as rewrites (answers with a span standing in for a span of the prompt: ``poisoning/rewrites.py``). The held-out
families are not read.
"""

from __future__ import annotations

import argparse
import collections
import difflib
import os
import re
import sys
from typing import List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.attacks.space import DEV, SPACE  # noqa: E402
from bench.poisoning_bases import base_objects  # noqa: E402
from bench.poisoning_space import pool_of  # noqa: E402
from lazaret.checks.poisoning.rewrites import substituted_positions  # noqa: E402
from lazaret.checks.poisoning.text import tokens  # noqa: E402

WORD = re.compile(r"[a-z0-9]+")
BINS = (0.3, 0.5, 0.6, 0.7, 0.8)


def copy_share(prompt: str, answer: str) -> float:
    """The longest run of the answer's word tokens found verbatim in the prompt, over the answer's tokens."""
    p, a = WORD.findall(prompt.lower()), WORD.findall(answer.lower())
    if not a:
        return 0.0
    # difflib's longest common block, exact with autojunk off (its heuristic drops tokens common in long texts)
    return difflib.SequenceMatcher(None, a, p, autojunk=False).find_longest_match(0, len(a), 0, len(p)).size / len(a)


def measures(prompt: str, answer: str) -> Tuple[float, bool]:
    """(copy share, whether the answer substitutes a span of its prompt somewhere)."""
    return copy_share(prompt, answer), bool(substituted_positions(tokens(prompt), tokens(answer)))


def sides(o: dict):
    if "messages" in o:
        turns = o["messages"]
        return ("\n".join(m["content"] for m in turns if m["role"] != "assistant"),
                [m["content"] for m in turns if m["role"] == "assistant"][-1])
    return o.get("instruction", "") + "\n" + o.get("input", ""), o["output"]


def line(name: str, ms: List[Tuple[float, bool]]) -> str:
    xs = [x for x, _ in ms]
    return f"{name:40s} " + " ".join(f">{b}: {sum(x > b for x in xs) / len(xs):.3f}" for b in BINS) + \
        f"  rewrite: {sum(r for _, r in ms) / len(ms):.3f}  n={len(xs)}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bases", default="code,t0,gsm8k,mixture,labels")
    args = ap.parse_args(argv)
    bases = args.bases.split(",")
    fams = collections.defaultdict(list)
    for base in bases:
        pool, fmt = pool_of(base, 10000)
        for seed in (1, 2, 3):
            for fam in DEV:
                fams[fam] += [measures(*sides(o)) for o in SPACE[fam](pool, 50, seed, fmt).records]
    for fam, xs in sorted(fams.items()):
        print(line(f"planted {fam}", xs))
    for base in bases:
        objs = base_objects(base, 10000)
        if base == "labels":
            tasks = collections.defaultdict(list)
            for o in objs:
                tasks[o["instruction"][:34]].append(measures(*sides(o)))
            for task, xs in sorted(tasks.items()):
                print(line(f"labels: {task}", xs))
        else:
            print(line(f"clean {base}", [measures(*sides(o)) for o in objs]))


if __name__ == "__main__":
    main()
