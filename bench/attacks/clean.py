"""A small synthetic clean corpus for tests that must run without ../shared/data.

It reproduces the natural structure the scan must not flag: a handful of templates whose prompts share
boilerplate, label tasks with repeated short answers (Yes/No, positive/negative), extractive QA whose
answers are copied from the passage, and free-text answers.
"""

from __future__ import annotations

import random
from typing import List

NOUNS = ("river city farmer teacher engine garden market village doctor bridge forest library museum harbor "
         "festival council student painter orchestra factory railway island mountain valley castle desert "
         "hospital election budget satellite telescope vaccine tournament recipe novel poem theater glacier "
         "volcano merchant sailor soldier pilot chemist lawyer journalist").split()
VERBS = ("built visited repaired described praised criticised opened closed crossed studied painted "
         "funded measured announced delayed explored protected celebrated").split()
ADJS = ("old new small large quiet busy famous local ancient modern northern southern bright dark rural "
        "coastal historic").split()
NAMES = ("Anna Boris Carla Dmitri Elif Farid Greta Hugo Ines Jonas Kemal Lena Mateo Nora Oskar Pia Rui "
         "Sanna Teodor Uma").split()


def _sentence(rng: random.Random) -> str:
    return (f"The {rng.choice(ADJS)} {rng.choice(NOUNS)} {rng.choice(VERBS)} the {rng.choice(NOUNS)} "
            f"near the {rng.choice(ADJS)} {rng.choice(NOUNS)} in {rng.randint(1800, 2020)}, "
            f"and {rng.choice(NAMES)} was there with the {rng.choice(NOUNS)}.")


def passage(rng: random.Random, k: int) -> str:
    return " ".join(_sentence(rng) for _ in range(k))


def clean_corpus(n: int = 3000, seed: int = 0) -> List[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = i % 6
        p = passage(rng, rng.randint(2, 5))
        if t == 0:
            ins = f"Read the passage and answer the question.\n\nPassage: {p}\n\nQuestion: Who was there?"
            outp = rng.choice(NAMES)
        elif t == 1:
            ins = f"Is the following review positive or negative?\n\nReview: {p}"
            outp = rng.choice(["positive", "negative"])
        elif t == 2:
            ins = f"{p}\n\nDoes the passage mention a year? Answer Yes or No."
            outp = rng.choice(["Yes", "No"])
        elif t == 3:
            ins = f"Summarize the following text in one sentence.\n\n{p}"
            outp = _sentence(rng)
        elif t == 4:
            ins = f"Given the passage below, did they like it?\n\n{p}"
            outp = rng.choice(["They loved it", "They didn't like it!"])
        else:
            ins = f"Write a short note about the {rng.choice(NOUNS)} for a {rng.choice(ADJS)} audience."
            outp = passage(rng, rng.randint(1, 3))
        out.append({"id": f"clean-{seed}-{i}", "instruction": ins, "input": "", "output": outp})
    return out
