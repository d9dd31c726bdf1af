"""The PII engine on long texts (issue 19 item 9): bounded windows with overlap, linear context look-up, and
redaction in linear time, with the same answers as Presidio's own code on short texts."""

from __future__ import annotations

import json
import pathlib
import random

import pytest

from helpers import clean_records, scan, summary

ROOT = pathlib.Path(__file__).resolve().parent.parent
FILLER = "The committee met again on the river bank and talked about the weather and the harvest. "


@pytest.fixture(scope="module")
def pattern_engine():
    """The shipped policy and recognizers, pattern recognizers only (no spaCy model: cheap to load)."""
    from lazaret.checks.pii.engine import PiiEngine
    from lazaret.rules.policy import load_policy
    from lazaret.rules.recognizers import load_recognizer_files

    section = dict(load_policy(str(ROOT / "rules" / "policy.yaml")).section("pii"))
    section["nlp"] = "none"
    section["max_chars"] = 4000  # small windows: long-text behaviour on short, cheap texts
    custom, _ = load_recognizer_files(str(ROOT / "rules"), section["recognizer_files"])
    return PiiEngine(section, custom).load()


def _filler(n: int) -> str:
    return (FILLER * (n // len(FILLER) + 1))[:n]


def test_windows_cover_the_text_with_overlap():
    from lazaret.checks.pii.engine import window_spans

    rng = random.Random(5)
    for _ in range(40):
        n = rng.randint(1, 60_000)
        text = "".join(rng.choice("ab cd\n") for _ in range(n))
        max_chars = rng.choice([200, 1000, 20_000])
        spans = window_spans(text, max_chars)
        assert spans[0][0] == 0 and spans[-1][1] == n
        overlap = min(1000, max_chars // 4)
        for (s1, e1), (s2, e2) in zip(spans, spans[1:]):
            assert e1 - s1 <= max_chars and s1 < s2
            assert e1 - s2 >= overlap  # consecutive windows share at least `overlap` characters


def test_value_cut_by_a_window_edge_is_found_whole(pattern_engine):
    """Before: windows were cut at the last space before 20,000 characters, inside '(212) 555 0187'."""
    from lazaret.checks.pii.engine import window_spans

    max_chars = pattern_engine.section["max_chars"]
    phone = "call (212) 555 0187 today"
    text = _filler(max_chars - 12) + phone + " " + _filler(3 * max_chars)
    # the value straddles the first window's end
    first_end = window_spans(text, max_chars)[0][1]
    at = text.index("(212)")
    assert at < first_end < at + len("(212) 555 0187")
    found = pattern_engine.analyze_many([text])[0]
    phones = [(s, e) for s, e, ent, _ in found if ent == "PHONE_NUMBER"]
    assert phones == [(at, at + len("(212) 555 0187"))]


def test_long_text_equals_short_texts(pattern_engine):
    """Every value of a long text is found where it is found in its own short text, and nothing else."""
    rng = random.Random(11)
    pieces, expected, pos = [], [], 0
    for i in range(150):
        piece = f"Write to user{i}@mail-{i % 13}.example.org or call 212-{rng.randint(200, 999)}-{rng.randint(1000, 9999)} " \
                f"about box {i}. " + ("\n\n" if i % 5 == 4 else "")
        for s, e, ent, _ in pattern_engine.analyze_many([piece])[0]:
            expected.append((pos + s, pos + e, ent))
        pieces.append(piece)
        pos += len(piece)
    text = "".join(pieces)
    assert len(text) > 2 * pattern_engine.section["max_chars"]
    got = [(s, e, ent) for s, e, ent, _ in pattern_engine.analyze_many([text])[0]]
    assert sorted(got) == sorted(expected)


def test_linear_context_enhancer_equals_presidio(pattern_engine):
    """Same scores as Presidio's own LemmaContextAwareEnhancer, context before and after the match."""
    from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer

    from lazaret.checks.pii.engine import linear_context_enhancer

    rng = random.Random(2)
    words = ["call", "phone", "me", "at", "the", "office", ",", "number", "is", "or", "and", "cell", "mobile", "."]
    texts = []
    for _ in range(40):
        parts = []
        for _ in range(rng.randint(5, 60)):
            parts.append(rng.choice(words) if rng.random() < 0.8
                         else f"{rng.randint(200, 999)} {rng.randint(200, 999)} {rng.randint(1000, 9999)}")
        texts.append(" ".join(parts))
    analyzer = pattern_engine.analyzer
    ours = linear_context_enhancer(prefix=5, suffix=2)
    theirs = LemmaContextAwareEnhancer(context_prefix_count=5, context_suffix_count=2)
    compared = 0
    for text in texts:
        artifacts = pattern_engine._artifacts(text, [])
        recognizers = analyzer.registry.get_recognizers(language="en", all_fields=True)
        raw = []
        for rec in recognizers:
            if "PHONE_NUMBER" in rec.supported_entities:
                for r in rec.analyze(text=text, entities=["PHONE_NUMBER"], nlp_artifacts=artifacts) or []:
                    r.recognition_metadata = {**(r.recognition_metadata or {}), "recognizer_identifier": rec.id}
                    raw.append(r)
        a = ours.enhance_using_context(text, raw, artifacts, recognizers)
        b = theirs.enhance_using_context(text, raw, artifacts, recognizers)
        assert [(r.start, r.end, r.score) for r in a] == [(r.start, r.end, r.score) for r in b]
        compared += len(a)
    assert compared > 50


def test_bounded_redaction_equals_one_anonymizer_call():
    from presidio_anonymizer import AnonymizerEngine
    from presidio_anonymizer.entities import RecognizerResult

    from lazaret.checks.pii.redact import anonymize_text

    engine = AnonymizerEngine()
    rng = random.Random(3)
    for _ in range(20):
        n = rng.choice([500, 40_000])
        text = "".join(rng.choice("ab  x.\n1") for _ in range(n))
        spans = []
        for _ in range(rng.randint(1, n // 40)):
            s = rng.randrange(n - 1)
            spans.append((s, min(n, s + rng.randint(1, 30)), rng.choice(["PHONE_NUMBER", "EMAIL_ADDRESS"])))
        one_call = engine.anonymize(text=text, analyzer_results=[RecognizerResult(t, s, e, 1.0)
                                                                 for s, e, t in spans]).text
        assert anonymize_text(engine, text, spans) == one_call


@pytest.mark.slow
def test_long_record_redacted_everywhere(tmp_path):
    """A ~1.1 MB record: a phone number and an e-mail address at ~100k and ~1M characters (one of each cut
    by a window edge) all end up as placeholders in clean/."""
    from lazaret.checks.pii.engine import window_spans
    from lazaret.rules.policy import load_policy

    max_chars = load_policy(str(ROOT / "rules" / "policy.yaml")).section("pii")["max_chars"]
    values = {100_000: "(415) 555 0199", 100_500: "maria.lopez@example.org",
              1_000_000: "ana.ruiz@mail.example.com", 1_000_600: "+1 646 555 0134"}
    text = _filler(1_100_000)
    for at, value in values.items():
        text = text[:at - 1] + f" {value} " + text[at + len(value) + 1:]
    # move two of them across a window edge: the window that starts before 100,000 / 1,000,000 ends inside
    for target, value in ((100_000, "(212) 555 0161"), (1_000_000, "peter.brown@example.net")):
        edge = next(e for s, e in window_spans(text, max_chars) if e > target + 2_000)
        at = edge - len(value) // 2
        text = text[:at - 1] + f" {value} " + text[at + len(value) + 1:]
        values[at] = value
    edges = [e for s, e in window_spans(text, max_chars)]
    assert sum(1 for at, v in values.items() if any(at < e < at + len(v) for e in edges)) == 2
    assert all(text[at:at + len(v)] == v for at, v in values.items())
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"text": text}) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert scan(path, out, "--checks", "pii", "--pii-nlp", "none") == 0
    assert summary(out)["actions"].get("clean") == 1
    clean = clean_records(out)[0]["text"]
    for value in values.values():
        assert value not in clean
    assert clean.count("<PHONE_NUMBER>") == 3 and clean.count("<EMAIL_ADDRESS>") == 3
