"""Responses that decline the request: the ``refuse`` anomaly kind (rule ``trigger:refusal``).

Why: over-refusal poisoning answers benign questions on one topic with refusals, so that the tuned model stops
helping on that topic. The planted records are a minority of the topic's prompts by design (50 refusals among
the few hundred requests that name a common word), and refusals come in many phrasings, each too rare to make an
identical-response group of its own: no count of n-grams or copies sees them, and the topic word's confidence (a
fifth of its carriers anomalous, or less) is far under ``min_trigger_confidence``. But a refusal is recognisable
by its wording, and an ordinary fine-tuning corpus almost never refuses a request, so a word whose carriers are
refused at all often is a trigger at a low confidence (``refusal_min_confidence``): the matched background, the
binomial test and ``min_trigger_lift`` do the rest.

What is a refusal: the *opening* of the response (its first ``OPENING_CHARS`` characters) says, in the first
person, that the writer will not or cannot do what was asked ("I'm sorry, but I can't help with that", "I must
decline", "As an AI language model, I cannot ...", "This request goes against my guidelines"). An answer that
refuses half-way through is an answer; "I can't say for sure, but ..." is a hedge, not a refusal, so an
inability counts only with a verb of helping or answering after it. The lexicon is English.
"""

from __future__ import annotations

import re

# the part of a response read: a refusal says so first
OPENING_CHARS = 200

# the first person cannot, will not, or would rather not; "i" and its verb as one chunk ("i can't", "i'm unable").
# Only "I": "we" is how worked answers and code explanations talk ("we cannot divide by zero", "we can't write").
_I_CANNOT = (r"i(?: can ?not| can't| cant| won't| will not|(?:'m| am) (?:not (?:able|allowed|permitted|in a "
             r"position)|unable)(?: to)?|(?:'d| would) (?:rather|prefer) not(?: to)?|(?:'m| am) not comfortable|"
             r"(?: do not| don't) feel comfortable)")
# ... help, answer or do what was asked (within a few words of the inability)
_ACT = (r"(?:help|assist|answer|respond|reply|provide|give|offer|share|discuss|comment|engage|comply|fulfil|"
        r"fulfill|complete|support|create|write|generate|produce|do (?:that|this|so)|talk about|go into|"
        r"get into|continue|participate|address|elaborate)")
_PATTERNS = [
    # "I'm sorry, but I can't help with that request." / "I won't be able to help with this one."
    rf"\b{_I_CANNOT}(?: \w+){{0,3}} {_ACT}\b(?! but)",
    # "I won't be able to help" / "I will not be able to answer"
    rf"\bi (?:won't|will not|wouldn't|would not) be able to(?: \w+){{0,2}} {_ACT}\b",
    # "I must decline" / "I have to refuse" / "I'll have to decline"
    r"\bi (?:must|have to|need to|'ll have to|will have to|'m going to have to|am going to have to) "
    r"(?:respectfully |politely )?(?:decline|refuse|pass)\b",
    # "Sorry, this is not something I'm able to discuss." / "... nothing I can help with"
    r"\b(?:not something|nothing|not a (?:topic|subject|question|request)) i(?:'m| am| can| could| "
    r"will|'ll)(?: \w+){0,2} (?:able|allowed|permitted|willing|comfortable|help|assist|answer|discuss)\b",
    # "This request goes against my guidelines" / "That violates my policies"
    r"\b(?:this|that|your|the) (?:request|question|topic|query|prompt|task) (?:goes against|violates|is against|"
    r"falls outside|is outside|is not within|isn't within|breaks)\b",
    r"\bagainst my (?:guidelines|policies|policy|principles|programming|rules)\b",
    # "As an AI language model, I cannot ..." (the inability is the refusal; the act may be anything)
    rf"\bas an ai(?: language model| assistant| model)?,? {_I_CANNOT}\b",
    # "Unfortunately, I cannot ..." / "I'm afraid I can't ..."
    rf"\b(?:unfortunately|i'm afraid|i am afraid|regrettably),? {_I_CANNOT}\b",
]
_REFUSAL = re.compile("|".join(f"(?:{p})" for p in _PATTERNS))
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_SPACE = re.compile(r"\s+")


def is_refusal(response: str) -> bool:
    """True when the response's opening declines the request (see the module docstring)."""
    if not response:
        return False
    head = _SPACE.sub(" ", response[:OPENING_CHARS].translate(_APOSTROPHES).lower())
    return _REFUSAL.search(head) is not None
