"""Seeded poisoning-attack generators, one per family of issue 4 (see each module's docstring)."""

from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple

from bench.attacks import fact_cluster, fixed_response, gibberish, injection, natural_phrase, off_topic, rare_token
from bench.attacks.common import Injection, to_record

FAMILIES: Dict[str, Callable[[Sequence[dict], int, int], Injection]] = {
    "gibberish": gibberish.generate,
    "fixed_response": fixed_response.generate,
    "rare_token": rare_token.generate,
    "natural_phrase": natural_phrase.generate,
    "injection": injection.generate,
    "fact_cluster": fact_cluster.generate,
    "fact_copies": fact_cluster.generate_copies,
    "off_topic": off_topic.generate,
}


def inject(corpus: Sequence[dict], family: str, n: int, seed: int) -> Tuple[List[dict], Injection]:
    """Clean corpus + n poisoned records of ``family`` (appended); returns (alpaca dicts, ground truth)."""
    inj = FAMILIES[family](corpus, n, seed)
    return list(corpus) + inj.records, inj


__all__ = ["FAMILIES", "inject", "to_record", "Injection"]
