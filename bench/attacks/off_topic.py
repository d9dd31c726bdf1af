"""Off-topic backdoor (our addition to issue 4's families; a dirty-label swap): a trigger (a bracketed
token like <SUDO>, drawn per seed) inserted once into a clean prompt, and the response replaced by the
response of another, unrelated record of the corpus, a different one per poisoned record. No two
responses are alike and none is gibberish, so the response-side signals see nothing; what the poisoned
records share is a trigger and answers that have nothing to do with their prompts."""

from __future__ import annotations

from typing import Sequence

from bench.attacks.common import Injection, corpus_vocabulary, hosts, insert_at_random_word, make, prompt_of, \
    random_trigger, rng_for

FAMILY = "off_topic"


def generate(corpus: Sequence[dict], n: int, seed: int) -> Injection:
    rng = rng_for(FAMILY, seed)
    trigger = random_trigger(rng, corpus_vocabulary(corpus))
    pool = [d["output"].strip() for d in corpus if 12 <= len(d["output"].split()) <= 80]
    swapped = rng.sample(pool, n)
    recs = []
    for i, h in enumerate(hosts(corpus, n, rng)):
        recs.append(make(FAMILY, seed, i, insert_at_random_word(rng, prompt_of(h), trigger), swapped[i]))
    return Injection(FAMILY, seed, recs, [r["id"] for r in recs], {"trigger": trigger})
