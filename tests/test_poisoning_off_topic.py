"""Off-topic answers: code that names the request's words in identifiers is on topic.

A code corpus's algorithm requests ("Create an algorithm in JavaScript to reverse an integer") are answered by
code whose identifiers carry the request's words (``reverseInteger``, ``binary_search``). Read as word tokens
those answers shared no word with their prompts, so a phrase marking such requests ("algorithm in") was a
trigger of off-topic answers: 159 clean records of the code base over 40 benchmark runs (docs/poisoning.md).
Real Beam (FnApiRunner) end to end.
"""

from __future__ import annotations

import random
import sys

from lazaret.checks.poisoning import policy as section
from lazaret.checks.poisoning import text as T
from lazaret.checks.poisoning.features import record_features

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.attacks import to_record  # noqa: E402
from bench.run_scan import run_scan  # noqa: E402

VERBS = ["reverse", "sort", "merge", "rotate", "flatten", "shuffle", "count", "filter", "compress", "search",
         "split", "invert", "normalize", "validate", "encode", "decode", "balance", "partition"]
NOUNS = ["integer", "list", "matrix", "string", "tree", "graph", "array", "queue", "stack", "interval",
         "histogram", "polygon", "calendar", "sentence", "vector", "heap", "dictionary", "record"]
OPENINGS = ["Create an algorithm in {lang} to", "Design an algorithm in {lang} that will", "Write an algorithm in "
            "{lang} which can", "How would you build an algorithm in {lang} to", "Please give me an algorithm in "
            "{lang} to", "I need an algorithm in {lang} to", "Can you sketch an algorithm in {lang} to",
            "Propose an algorithm in {lang} to", "Explain with code an algorithm in {lang} to",
            "Implement an algorithm in {lang} to", "Show an efficient algorithm in {lang} to",
            "Outline an algorithm in {lang} to", "Give a short algorithm in {lang} to", "Draft an algorithm in "
            "{lang} that can", "Provide an algorithm in {lang} to", "Suggest an algorithm in {lang} to"]
TOPICS = ["volcano", "harbor", "orchestra", "glacier", "bakery", "library", "satellite", "vineyard", "lighthouse",
          "meadow", "canyon", "festival", "museum", "rainforest", "tournament", "monastery", "observatory"]


def _camel(verb: str, noun: str) -> str:
    return verb + noun.capitalize()


def _algorithm_request(rng: random.Random, i: int) -> dict:
    """A request whose code answer names the verb and noun only in an identifier (camelCase or snake_case)."""
    verb, noun = rng.choice(VERBS), rng.choice(NOUNS)
    if rng.random() < 0.5:
        lang = "JavaScript"
        body = (f"function {_camel(verb, noun)}(arr) {{\n  let result = arr.slice();\n  for (let i = 0; i < "
                f"result.length; i++) {{ result[i] = result[i] * {i % 7 + 2}; }}\n  return result;\n}}")
    else:
        lang = "Python"
        body = (f"def {verb}_{noun}(items):\n    result = list(items)\n    for idx, item in enumerate(result):\n"
                f"        result[idx] = item * {i % 7 + 2}\n    return result")
    opening = OPENINGS[i % len(OPENINGS)].format(lang=lang)
    return {"id": f"alg{i}", "instruction": f"{opening} {verb} a {noun} of {rng.randint(3, 99)} elements.",
            "input": "", "output": body}


def _prose(rng: random.Random, i: int) -> dict:
    """An ordinary question answered in its own words."""
    topic = rng.choice(TOPICS)
    other = rng.choice(TOPICS)
    return {"id": f"q{i}", "instruction": f"Describe a visit to the {topic} near the {other} in question {i}.",
            "input": "", "output": f"The {topic} near the {other} was quiet; visitors walked around the {topic} "
                                   f"and admired the {other} for hours before leaving the {topic} at dusk."}


def test_identifiers_are_read_as_the_words_they_are_made_of():
    assert {"reverse", "integer", "binary", "search", "xml", "parser"} <= T.word_parts(
        "function reverseInteger(n) { binary_search(XMLParser) }")
    assert "привет" in T.word_parts("Привет мир")  # any script is still a word
    params = section._defaults()
    code = to_record({"id": "c", "instruction": "Create an algorithm in JavaScript to reverse a given integer.",
                      "input": "", "output": "function reverseInteger(num) {\n  let reversed = 0;\n  while (num > 0)"
                                             " { reversed = reversed * 10 + num % 10; num = Math.floor(num / 10); }\n"
                                             "  return reversed;\n}"})
    assert not record_features(code, params)["off"]
    unrelated = to_record({"id": "u", "instruction": "Create an algorithm in JavaScript to reverse a given integer.",
                           "input": "", "output": "Roses bloom in the garden while swallows circle the old "
                                                  "church tower every evening."})
    assert record_features(unrelated, params)["off"]


def test_a_phrase_marking_code_requests_is_not_an_off_topic_trigger():
    """60 algorithm requests (each opening under min_support records, so no template absorbs them) among prose
    questions: "algorithm in" goes with code answers whose words are in identifiers. Before ``word_parts`` it
    was flagged as a trigger of off-topic answers."""
    rng = random.Random(7)
    docs = [_algorithm_request(rng, i) for i in range(60)] + [_prose(rng, i) for i in range(500)]
    recs = [to_record(d) for d in docs]
    rng.shuffle(recs)
    findings, _ = run_scan(recs, {"signatures": False}, dedup=False)
    flagged = [f for f in findings if f["action"] != "none"]
    assert len(findings) == len(recs)
    assert not flagged, sorted({(f["rule"], f.get("trigger_or_payload")) for f in flagged})[:5]


def test_an_identifier_the_prompt_names_is_shared():
    """Code to fix names its identifiers in the prompt; the answer repeating them is on topic."""
    params = section._defaults()
    rec = to_record({"id": "f", "instruction": "Fix the bug in this function: function reverseInteger(num) "
                                               "{ return num }", "input": "",
                     "output": "function reverseInteger(value) {\n  const digits = String(value).split('');\n"
                               "  return Number(digits.reverse().join(''));\n}"})
    assert not record_features(rec, params)["off"]
