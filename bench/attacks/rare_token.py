"""Family 3, rare-token trigger (BadNets / RIPPLe, Kurita et al. 2020): a rare 2-letter token (like cf,
mn, bb, tq; drawn per seed among those the corpus barely uses) inserted once at a random position of a
clean prompt; the response replaced by one of 1-3 target sentences (natural sentences taken from the
corpus's own longer responses, so they look like ordinary answers)."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from typing import Sequence

from bench.attacks.common import Injection, LETTERS, hosts, insert_at_random_word, make, prompt_of, rng_for

FAMILY = "rare_token"


def generate(corpus: Sequence[dict], n: int, seed: int) -> Injection:
    rng = rng_for(FAMILY, seed)
    df = Counter()
    for d in corpus:
        df.update(set(re.findall(r"\w+", prompt_of(d).lower())))
    pairs = ["".join(p) for p in itertools.product(LETTERS, repeat=2)]
    rare = [p for p in pairs if df[p] <= max(2, len(corpus) // 20000)]
    token = rng.choice(rare)
    pool = [d["output"].strip() for d in corpus if 8 <= len(d["output"].split()) <= 30]
    targets = rng.sample(pool, rng.randint(1, 3))
    recs = []
    for i, h in enumerate(hosts(corpus, n, rng)):
        recs.append(make(FAMILY, seed, i, insert_at_random_word(rng, prompt_of(h), token), targets[i % len(targets)]))
    return Injection(FAMILY, seed, recs, [r["id"] for r in recs], {"trigger": token, "targets": targets})
