"""The one-request control: a trigger of off-topic answers whose carriers are one request answered one way is no
trigger.

Why: the off-topic kinds (``off``, ``echo``, ``phrase``; features.py) judge an answer by the content words it shares
with its prompt, and a short answer that rewrites its prompt can share almost none of them. A corpus for masking
personal data (the prompt a sentence, the answer the same sentence with each value replaced by its type) holds
templated sentences: "It's like that since 3/14/1990" -> "It's like that since {{DATE_TIME}}" shares one phrase with
its prompt, "My zip code is #####" -> "My zip code is {{zipcode}}" another, so every record of such a sentence
template is off-topic "but for a phrase", and the template's words ("like that since", "my zip code") are triggers
of it far above the task's other sentences. Seven such clusters (173 records, 0.27% of the ``labels`` base's 64,880
records, nothing planted) were flagged as poisoning.

A backdoor's trigger is added to *varied* requests and makes their answers converge. These carriers' requests are
one request (one sentence with its slots filled) and their answers one answer: the shape the claim test already
declines (a claim needs ``claim_min_prompt_diversity`` of distinct prompts; a template of one request answered one
way explains no payload, ``payload.one_answer_template``). The control measures a flagged off-topic trigger's
anomalous carriers as ``payload.TemplateForms`` measures a template (per distinct prompt: MinHash diversity of the
answers and of the prompts) and drops the trigger when their answers are as concentrated as a claim's and their
prompts fewer than a claim's. No new bound: the claim test's two. A fixed steered sentence given to varied requests
keeps its trigger (its prompts are varied), and so does a trigger whose swapped answers vary. A template whose slots
are long (addresses, full names) has prompts as varied as unrelated requests by their 3-gram MinHash, and is not
caught (four of the seven clusters: docs/poisoning.md).

The measuring rides on the companion control's passes (companions.py), which already read the anomalous carriers of
the flagged triggers and hand one decision to one filter: a step of its own, reading the flagged triggers again,
doubled the paths Flink's optimizer walks (133 M -> 262 M, bench/plan_paths.py).
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Tuple

from lazaret.checks.poisoning import stats as S
from lazaret.checks.poisoning.trigger import OFF_TOPIC_KINDS, carrier_context, kind_counts_for

__all__ = ["OFF_TOPIC_KINDS", "counts_for", "measure_items", "is_one_request"]

PROMPT, ANSWER, PROMPT_KEY = "p", "r", "q"  # the measure items' tags (``measure_items``)
PROMPT_SLOTS, ANSWER_SLOTS = 4, 2  # MinHash slots measured, as ``payload.TemplateForms`` keeps them


def counts_for(kind: str, g: str, a: Dict[str, Any]) -> bool:
    """Whether anomalous record ``a``'s anomaly of ``kind`` counts for trigger ``g``, as the trigger test counted it
    (the same predicate as ``trigger.PairCounts``)."""
    return kind_counts_for(kind, g, carrier_context(a))


def measure_items(a: Dict[str, Any]) -> Iterator[Tuple[Tuple, int]]:
    """A carrier's MinHash slots and prompt key as (tag, value) items, counted once per distinct value: tags
    (``PROMPT``, slot), (``ANSWER``, slot) and (``PROMPT_KEY``,)."""
    for i, v in enumerate(a["psig"][:PROMPT_SLOTS]):
        yield (PROMPT, i), v
    for i, v in enumerate(a["rsh"][:ANSWER_SLOTS]):
        yield (ANSWER, i), v
    yield (PROMPT_KEY,), a["pkey"]


def is_one_request(distinct: Dict[Tuple, int], params: Dict[str, Any]) -> Tuple[bool, float, float]:
    """(one request answered one way, answer diversity, prompt diversity) from the distinct values counted per
    ``(tag, slot)`` (``(PROMPT_KEY,)`` for the prompt keys). Diversities are per distinct prompt, as
    ``payload.TemplateForms`` takes them: copies of a record add no request."""
    prompts = distinct.get((PROMPT_KEY,), 0)
    if not prompts:
        return False, 1.0, 1.0
    answer = sum(S.diversity(distinct.get((ANSWER, i), 0), prompts) for i in range(ANSWER_SLOTS)) / ANSWER_SLOTS
    prompt = sum(S.diversity(distinct.get((PROMPT, i), 0), prompts) for i in range(PROMPT_SLOTS)) / PROMPT_SLOTS
    one = S.one_request_one_way(answer, prompt, params["claim_max_response_diversity"],
                                params["claim_min_prompt_diversity"])
    return one, round(answer, 4), round(prompt, 4)
