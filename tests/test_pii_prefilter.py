"""The one-pass RE2 prefilter (issue 21): a recognizer is skipped only on windows it cannot match, so the
engine's results are the same with and without it, on real text holding every entity kind."""

from __future__ import annotations

import gzip
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# One text per entity kind the shipped recognizers find, ASCII and not (non-ASCII windows use the other set).
EVERY_KIND = [
    "Write to maria.garcia@example.com or call (212) 555-0147 after 5pm.",
    "Charge my card 4111 1111 1111 1111; my SSN is 078-05-1120.",
    "Transfer to IBAN DE89 3704 0044 0532 0130 00 today, from 192.168.10.24 or 2001:db8:85a3::8a2e:370:7334.",
    "Passport A12345678, driver license X1234567, wallet 1BoatSLRHtKNngkdXEeobR76b53LETtpyT.",
    "The MAC is 00:1A:2B:3C:4D:5E, the request id 123e4567-e89b-12d3-a456-426614174000.",
    "key AKIAIOSFODNN7EXAMPLE and token ghp_abcdefghijklmnopqrstuvwxyz0123456789 and "
    "sk-abcdefghijklmnopqrstuvwxyz0123456789ABCD",
    "Dr. Rodney Radolič met Mrs. Poissonnier.\nHi Olu, my name is Siv and you can call me Ade.",
    "Mobile 555 0142 office, fax +44 20 7946 0958.",
    "Écrivez à josé.núñez@exämple.fr ou au 06 12 34 56 78 (téléphone), carte 5555 5555 5555 4444 — merci.",
    "Dear Łucja, mon numéro: +33 1 42 68 53 00, IBAN FR14 2004 1010 0505 0001 3M02 606, IP 10.0.0.7.",
    "Ｅｍａｉｌ ａｂｃ＠ｅｘａｍｐｌｅ．ｃｏｍ, card ４１１１ １１１１ １１１１ １１１１, ssn ٠٧٨-٠٥-١١٢٠, ‘Ms. Ōta’.",
]
# Reported kinds (US_PASSPORT's patterns score 0.05-0.1: below the threshold even with context; its matches
# are covered by the pattern-by-pattern test).
KINDS = {"EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS", "PERSON", "API_KEY",
         "US_DRIVER_LICENSE", "CRYPTO", "MAC_ADDRESS", "UUID"}


def _strings(value, out):
    if isinstance(value, str):
        if not any(0xD800 <= ord(c) <= 0xDFFF for c in value):  # the reader rejects lone surrogates
            out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)


def sample_texts():
    """Every string of the JSON Lines files in sample_data/ (the malformed lines are skipped here)."""
    out = []
    for path in sorted((ROOT / "sample_data").glob("*.jsonl*")):
        if path.suffix not in (".jsonl", ".gz"):
            continue
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    try:
                        _strings(json.loads(line), out)
                    except ValueError:
                        continue
        except (OSError, EOFError):
            continue  # the truncated sample
    return out


@pytest.fixture(scope="module")
def pattern_engine():
    """The shipped policy and recognizers, pattern recognizers only (no spaCy model: cheap to load)."""
    from lazaret.checks.pii.engine import PiiEngine
    from lazaret.rules.policy import load_policy
    from lazaret.rules.recognizers import load_recognizer_files

    section = dict(load_policy(str(ROOT / "rules" / "policy.yaml")).section("pii"))
    section["nlp"] = "none"
    custom, _ = load_recognizer_files(str(ROOT / "rules"), section["recognizer_files"])
    return PiiEngine(section, custom).load()


@pytest.fixture(scope="module")
def texts(request):
    """sample_data, the every-kind texts, and the Presidio synthetic set when the shared data is here."""
    out = EVERY_KIND + sample_texts()
    from conftest import SHARED_DATA

    synth = SHARED_DATA / "pii_presidio_synth" / "synth_dataset_v2.jsonl.gz"
    if synth.exists():
        with gzip.open(synth, "rt", encoding="utf-8") as fh:
            out += [json.loads(line)["text"] for line, _ in zip(fh, range(1000))]
    return out


def _both_paths(engine, texts):
    engine.pattern_prefilter = False
    before = engine.analyze_many(texts)
    engine.pattern_prefilter = True
    engine.stats.clear()
    after = engine.analyze_many(texts)
    return before, after


def test_every_shipped_pattern_recognizer_is_gated(pattern_engine):
    """The rewrite understands every shipped pattern (look-around, back-references, \\p classes included)."""
    names = set(pattern_engine.prefilter.gated.values())
    assert pattern_engine.prefilter.always == []
    assert {"CreditCardRecognizer", "IbanRecognizer", "MacAddressRecognizer", "UsLicenseRecognizer",
            "CuedNameRecognizer", "PhoneWithContextRecognizer", "ApiKeyRecognizer"} <= names
    assert "PhoneRecognizer" not in names  # libphonenumber, not patterns: always runs


def test_relaxed_forms_match_wherever_the_originals_do(pattern_engine, texts):
    """Pattern by pattern, on real text: a non-empty match of Presidio's regex implies a match of its RE2 form."""
    import re2
    import regex

    from lazaret.checks.pii.prefilter import relax

    checked = 0
    for rec in pattern_engine.registry.recognizers:
        if rec.id not in pattern_engine.prefilter.gated:
            continue
        for pattern in rec.patterns:
            original = regex.compile(pattern.regex, flags=rec.global_regex_flags)
            forms = {mode: re2.compile("(?is)" + relax(pattern.regex, mode)) for mode in (False, True)}
            for text in texts:
                if any(m.group() for m in original.finditer(text)):
                    checked += 1
                    assert forms[not text.isascii()].search(text), (rec.name, pattern.name, text[:80])
    assert checked > 200


def test_prefilter_gives_identical_results(pattern_engine, texts):
    before, after = _both_paths(pattern_engine, texts)
    assert after == before
    found = {entity for per_text in before for _s, _e, entity, _score in per_text}
    assert KINDS <= found, KINDS - found  # the comparison covers every entity kind
    assert pattern_engine.stats["recognizers_skipped"] > 10 * len(texts)  # and the prefilter did skip work


def test_the_comparison_catches_a_wrong_prefilter(pattern_engine):
    """A prefilter that skips recognizers which can match changes the results: the test above can fail."""
    prefilter = pattern_engine.prefilter
    honest = prefilter.skipped
    prefilter.skipped = lambda text: set(prefilter.gated)  # claims nothing can match
    try:
        before, after = _both_paths(pattern_engine, EVERY_KIND)
    finally:
        prefilter.skipped = honest
    assert after != before


def test_relax_on_unicode_classes_and_assertions():
    import re2
    import regex

    from lazaret.checks.pii.prefilter import Unsupported, relax

    cases = [(r"\b\d{3}\b", "n° ٣٤٥ é"), (r"(?<![\w:])\w+@\w+\.com\b", "josé@exämple.com"),
             (r"([:-])x\1", "a-x-b"), (r"(?<=call me\s)(?-i:\p{Lu}\p{Ll}+)", "call me Łucja"),
             (r"[^\s]{3}\s", "abc\u2003"), (r"\bOta\b", "‘Ota’ 東京"), (r"\s\p{Lu}", "x\u00a0É"),
             (r"caf[éè]\b", "CAFÉ!"), (r"Łódź", "łÓdŹ")]
    for pattern, text in cases:
        assert regex.search(pattern, text, flags=regex.I | regex.M | regex.S), pattern
        assert re2.search("(?is)" + relax(pattern, True), text), pattern
    with pytest.raises(Unsupported):
        relax(r"(?x) a b", True)


def test_patterns_the_rewrite_cannot_handle_always_run():
    from presidio_analyzer import Pattern, PatternRecognizer

    from lazaret.checks.pii.prefilter import PatternPrefilter

    def rec(name, regex):
        return PatternRecognizer(supported_entity="X", name=name, patterns=[Pattern(name, regex, 0.5)])

    recognizers = [rec("possessive", r"\d++x"), rec("verbose", r"(?x) a b"), rec("named", r"\N{DIGIT ONE}"),
                   rec("plain", r"\bab\d{3}\b")]
    prefilter = PatternPrefilter(recognizers)
    assert sorted(prefilter.always) == ["named", "possessive", "verbose"]
    assert list(prefilter.gated.values()) == ["plain"]
    assert prefilter.skipped("nothing here") == {recognizers[3].id}
    assert prefilter.skipped("see ab123 here") == set()
