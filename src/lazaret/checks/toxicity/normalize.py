"""Text normalisation shared by toxicity training and prediction.

Why one function: a fastText model only knows the tokens it was trained on, so any difference between the
text seen at train time and at predict time silently costs accuracy. ``normalize_many`` (``normalize`` for
one text) is therefore the single entry point used by ``lazaret train-toxicity`` and by
``ToxicityModel.predict_batch``, and its version string
(``NORMALIZE_VERSION``) is written into every model's metadata so that a model trained with another
normalisation can be detected.

What it does, and why. Together these raise the TweetEval validation ROC-AUC of the default model's recipe
from 0.751 (whitespace folding only) to 0.792 and cut the share of the clean T0 corpus flagged at the
validation-chosen threshold from ~3.5% to ~0.6% per side (bench/toxicity_normalize_ablation.py):
- HTML entities (``&amp;``, ``&#8220;``) are unescaped: Davidson tweets carry them, long-form text does not.
- Lower-casing: shouting is not toxicity, and vocabularies stay small.
- URLs -> ``url``, ``@mentions`` -> ``@user``, a retweet marker ``rt`` is dropped: tweet furniture that would
  otherwise become a (spurious) label cue, since the tweet corpora have it and long-form text never does.
- Hashtags lose their ``#`` (``#maga`` -> ``maga``) so they share vectors with the plain word; ``####`` masks
  in news text vanish.
- Runs of 3+ identical characters collapse to 2 (``fuuuuck`` -> ``fuuck``, ``!!!!!`` -> ``!!``).
- Digit runs map to ``0``: numbers carry no toxicity, and vocabularies stay small.
- Punctuation and symbols (also emoji) are split off words so ``idiot!`` and ``idiot`` are one token.
- Newlines and all other whitespace collapse to single spaces (fastText reads one example per line).
- The text is capped at ``max_chars`` characters (cut at a space) so one huge record cannot stall a worker;
  a fastText score is a mean over token vectors, so the first few thousand characters decide it anyway.
"""

from __future__ import annotations

import html
import re

NORMALIZE_VERSION = "lazaret-tox-norm-1"
DEFAULT_MAX_CHARS = 4000

# The substitutions, in order: (literals of which one must be in the text for the step to run, pattern,
# replacement). The literal test is a cheap substring search that skips the regex on the many batches that hold
# no URL or mention. A retweet marker is "rt @" not preceded by a word character (r"\brt @"), written with the
# literal first and the word-boundary test as a look-behind, so the regex engine can search for the literal
# prefix: r"\brt @" tried a match at every position and cost ~2 us per tweet, a tenth of the whole prediction.
# It runs before mentions, so "rt @user" keeps its mention.
_SUBSTITUTIONS = (
    (("http", "www."), re.compile(r"(?:https?://|www\.)\S+"), " url "),
    (("rt @",), re.compile(r"rt @(?<!\wrt @)"), "@"),
    (("@",), re.compile(r"@\w+"), " @user "),
    ((), re.compile(r"([^\n])\1\1+"), r"\1\1"),  # runs of 3+ identical characters -> 2
    ((), re.compile(r"\d+"), "0"),
)
# Anything that is not a word character, whitespace or '@' becomes its own token ('#' is dropped before).
# (Split with a capturing group, then join with spaces: a template like r" \g<0> " is expanded in Python for
# every match on Python 3.11, which made it the slowest step.)
_PUNCT = re.compile(r"([^\w\s@])")


def normalize_many(texts: "list[str]", max_chars: int = DEFAULT_MAX_CHARS) -> "list[str]":
    """Normalise a batch of texts: one output line per input text, same order.

    Why batch-wise: the regexes run once over the batch joined by newlines, so their per-call overhead is paid
    once per batch rather than once per record; this is most of the per-record cost next to fastText's own
    prediction. Each text's own newlines are turned into spaces first, so the join is unambiguous.
    """
    if not texts:
        return []
    limit = max_chars * 2 if max_chars else 0
    prepared = [
        (t if not limit or len(t) <= limit else t[:limit]).replace("\n", " ") if t else "" for t in texts
    ]
    text = "\n".join(prepared)
    if "&" in text:
        text = html.unescape(text).replace("\n", " ") if len(prepared) == 1 else _unescape_lines(prepared)
    text = text.lower()
    for needles, pattern, replacement in _SUBSTITUTIONS:
        if not needles or any(n in text for n in needles):
            text = pattern.sub(replacement, text)
    if "#" in text:
        text = text.replace("#", " ")
    text = " ".join(_PUNCT.split(text))
    lines = text.split("\n")
    if len(lines) != len(texts):  # pragma: no cover - a character became a newline; fall back per text
        return [normalize_many([t], max_chars)[0] for t in texts]
    out = [" ".join(line.split()) for line in lines]
    if max_chars:
        out = [line if len(line) <= max_chars else _cut(line, max_chars) for line in out]
    return out


def _unescape_lines(prepared: "list[str]") -> str:
    # html.unescape can produce a newline (&#10;): unescape per text and fold newlines again.
    return "\n".join(html.unescape(t).replace("\n", " ") if "&" in t else t for t in prepared)


def _cut(line: str, max_chars: int) -> str:
    cut = line.rfind(" ", 0, max_chars)
    return line[: cut if cut > 0 else max_chars].rstrip()


def normalize(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """Return ``text`` normalised for the toxicity models (one line, lower case, tokens space-separated)."""
    return normalize_many([text], max_chars)[0] if text else ""
