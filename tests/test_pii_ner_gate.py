"""NER runs only on the sentences that can hold a name, through the fast spaCy pipeline (issue 21): the gate
must not drop a sentence with a name, entity offsets must map back to the record exactly, a text with no
candidate never reaches spaCy, and the NER-only pipeline finds what the full one finds."""

from __future__ import annotations

import pathlib
from typing import List

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


class RecordingNlp:
    """The real NER pipeline, recording every text it is asked to tag."""

    def __init__(self, nlp) -> None:
        self.nlp = nlp
        self.seen: List[str] = []

    def pipe(self, texts, **kwargs):
        texts = list(texts)
        self.seen.extend(texts)
        return self.nlp.pipe(texts, **kwargs)

    def __call__(self, text):
        self.seen.append(text)
        return self.nlp(text)

    def __getattr__(self, name):
        return getattr(self.nlp, name)


@pytest.fixture(scope="module")
def ner_engine():
    """The shipped policy with the spaCy model; the NER pipeline wrapped so calls can be seen."""
    from lazaret.checks.pii.engine import PiiEngine
    from lazaret.rules.policy import load_policy
    from lazaret.rules.recognizers import load_recognizer_files

    section = dict(load_policy(str(ROOT / "rules" / "policy.yaml")).section("pii"))
    section["nlp"] = "spacy"
    custom, _ = load_recognizer_files(str(ROOT / "rules"), section["recognizer_files"])
    engine = PiiEngine(section, custom).load()
    engine.ner_nlp = RecordingNlp(engine.ner_nlp)
    return engine


def _fresh(engine) -> RecordingNlp:
    engine._cache.clear()
    engine.ner_nlp.seen.clear()
    return engine.ner_nlp


def test_text_without_candidates_never_calls_spacy(ner_engine):
    """Cased text whose only capitalised words are sentence-initial function words: nothing to tag."""
    spy = _fresh(ner_engine)
    text = "The committee met again. It was late and the harvest was poor.\n\nWhat do you think? We agree."
    assert ner_engine._ner_entities([text]) == [[]]
    assert ner_engine.analyze_many([text]) == [[]]
    assert spy.seen == []


def test_name_inside_an_otherwise_lowercase_sentence_is_found(ner_engine):
    """A name that is neither sentence-initial nor in a capitalised sentence still sends its sentence to
    NER, and the entity's offsets point at the name in the whole record."""
    spy = _fresh(ner_engine)
    name = "Barack Obama"
    text = ("The weather was fine. then the talk was given by Barack Obama in the main hall.\n\n"
            "The committee met again. It was late.")
    ents = ner_engine._ner_entities([text])[0]
    persons = [(s, e) for s, e, lab in ents if lab == "PERSON"]
    assert persons == [(text.index(name), text.index(name) + len(name))]
    # only the sentence with the name (with a few words of the previous one as left context) was tagged
    assert len(spy.seen) == 1 and name in spy.seen[0] and "committee" not in spy.seen[0]
    found = ner_engine.analyze_many([text])[0]
    assert any(text[s:e] == name and ent == "PERSON" for s, e, ent, _ in found)


def test_a_gate_that_drops_the_sentence_would_be_caught(ner_engine, monkeypatch):
    """The test above can fail: a gate that skips every cased sentence loses the name."""
    import lazaret.checks.pii.engine as pii_engine

    _fresh(ner_engine)
    monkeypatch.setattr(pii_engine, "_has_candidate", lambda sentence: False)
    text = "The weather was fine. then the talk was given by Barack Obama in the main hall."
    assert ner_engine._ner_entities([text]) == [[]]


def test_offsets_map_back_across_paragraphs_and_cache_hits(ner_engine):
    """Every entity from per-sentence NER (left context, cache, several texts in one call) is the text
    spaCy finds when the record's paragraph is tagged alone, at the same place."""
    _fresh(ner_engine)
    para = "She flew from Paris to Berlin with Angela Merkel. Later they met Barack Obama in Chicago."
    texts = [para, "Intro line.\n\n" + para, "So it was. " + para, para]
    results = ner_engine._ner_entities(texts)
    whole = {(e.text, e.label_) for e in ner_engine.ner_nlp.nlp(para).ents if e.label_ in ("PERSON", "GPE")}
    assert whole, "the model finds names and places in the paragraph"
    for text, ents in zip(texts, results):
        got = {(text[s:e], lab) for s, e, lab in ents}
        for value, label in whole:
            assert (value, "PERSON" if label == "PERSON" else "LOCATION") in got
    # the paragraph on its own, after another paragraph, or repeated (cache hits): the same spans, shifted
    for text, ents in zip(texts[1::2], results[1::2]):
        shift = text.index(para)
        assert sorted((s - shift, e - shift, lab) for s, e, lab in ents if s >= shift) == sorted(results[0])
    assert ner_engine.stats["sentences_cached"] > 0


def test_ner_pipeline_is_ner_only_and_finds_what_the_full_one_finds():
    """Only ``ner`` runs (the shared tok2vec feeds only the excluded tagger and parser) and its matrix
    products go through numpy's BLAS; entities are those of the pipeline as it was before."""
    from lazaret.checks.pii.engine import SPACY_MODEL, blas_one_thread, load_ner_pipeline

    fast = load_ner_pipeline(SPACY_MODEL)
    old = load_ner_pipeline(SPACY_MODEL, blas="blis", drop_unused_tok2vec=False)
    assert fast.pipe_names == ["ner"] and old.pipe_names == ["tok2vec", "ner"]
    assert fast.get_pipe("ner").model.ops.use_blis is False
    texts = ["She flew from Paris to Berlin with Angela Merkel.", "Later they met Barack Obama in Chicago.",
             "Dr. Maria Fernandez moved to Lagos, Nigeria, in 2019 with her son Tunde."]
    ents = lambda nlp: [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in nlp.pipe(texts)]
    assert ents(fast) == ents(old)
    with pytest.raises(ValueError):
        load_ner_pipeline(SPACY_MODEL, blas="mkl")
    from threadpoolctl import threadpool_info

    with blas_one_thread()():
        assert all(lib["num_threads"] == 1 for lib in threadpool_info() if lib["user_api"] == "blas")


def test_long_sentence_is_tagged_in_windows_around_candidates(ner_engine):
    """A long cased sentence goes to NER as windows around its capitalised words, and the names at both
    ends are found at their place in the record; the filler in the middle is not sent."""
    from lazaret.checks.pii.engine import candidate_windows

    spy = _fresh(ner_engine)
    filler = "and then the long meeting went on about the weather and the harvest and the river " * 3
    text = "We asked Angela Merkel " + filler + "before we saw Barack Obama at the door."
    spans = candidate_windows(text, 0, len(text), ner_engine.ner_window_words)
    assert len(spans) == 2 and all(text[s:e].strip() == text[s:e] for s, e in spans)
    ents = ner_engine._ner_entities([text])[0]
    persons = sorted(text[s:e] for s, e, lab in ents if lab == "PERSON")
    assert persons == ["Angela Merkel", "Barack Obama"]
    assert len(spy.seen) == 2 and sum(map(len, spy.seen)) < len(text) / 2
    # short sentences, windows switched off, or no candidate word: the whole span
    assert candidate_windows(text, 0, 40, 6) == [(0, 40)]
    assert candidate_windows(text, 0, len(text), 0) == [(0, len(text))]
    assert candidate_windows(filler, 0, len(filler), 6) == [(0, len(filler))]


def test_windows_centre_on_abbreviations_but_not_function_words():
    """"U.S." has no word _CAPWORD sees, and was lost at a window's edge before this rule."""
    from lazaret.checks.pii.engine import _candidate_word

    assert [w for w in ["U.S.", "Paris,", "\"Hello", "McDonald", "I", "I,", "(A)", "The", "the", "x"]
            if _candidate_word(w)] == ["U.S.", "Paris,", "\"Hello", "McDonald"]


def test_lower_case_i_makes_a_paragraph_tagged_whole(ner_engine, monkeypatch):
    """"i" as a pronoun says the writer does not capitalise the way the gate assumes: every sentence of the
    paragraph goes to NER whole, also one with no capitalised word and the words far from the only name
    (WNUT-17 dev: "... my name is called Ahmed and i am go to orchard academy in milton keyons"). Without the
    rule (``case_evidence`` off) the same paragraph is cut to windows and its capital-free sentence dropped."""
    from lazaret.checks.pii.engine import PiiEngine, casing_unreliable

    tail = "since we moved we go to the big school next to the old mill in milton keynes"
    text = f"my name is Ahmed and i am here {tail}. we are in cali now for the summer holidays."
    assert casing_unreliable(text, 0, len(text))
    spy = _fresh(ner_engine)
    ner_engine._ner_entities([text])
    assert any(tail in seen for seen in spy.seen) and any("cali now" in seen for seen in spy.seen)
    monkeypatch.setattr(PiiEngine, "case_evidence", False)
    monkeypatch.setattr(ner_engine, "places", None)  # "milton keynes" and "cali" are also lower-case places
    spy = _fresh(ner_engine)
    ner_engine._ner_entities([text])
    assert spy.seen and not any(tail in seen for seen in spy.seen) and not any("cali" in s for s in spy.seen)


def test_what_counts_as_a_lower_case_i():
    """Only the pronoun: not "i.e.", a numbered "(i)", or an "i" inside a word; capital "I" is ordinary."""
    from lazaret.checks.pii.engine import casing_unreliable

    yes = ["i think so", "Yes i do.", "Then i'm off", "so i\u2019ll go", "x\ni ve"]
    no = ["I think so", "see (i) and (ii), i.e. both", "Hi there", "a pi day", "the letter i."]
    assert [t for t in yes + no if casing_unreliable(t, 0, len(t))] == yes


def test_lower_case_place_in_cased_text_goes_to_ner(ner_engine, monkeypatch):
    """A place written in lower case in otherwise cased text, in a paragraph whose only capitals are
    sentence-initial function words: the place list sends its sentence to NER, which tags it, at its
    place in the record. Without the list (``places`` None) the paragraph never reaches spaCy."""
    text = "The rent went up again. Our friends moved to houston last year and they love it."
    spy = _fresh(ner_engine)
    ents = ner_engine._ner_entities([text])[0]
    start = text.index("houston")
    assert (start, start + len("houston"), "LOCATION") in ents
    assert len(spy.seen) == 1 and "rent" not in spy.seen[0]  # only the place's sentence (and its context)
    found = ner_engine.analyze_many([text])[0]
    assert any(text[s:e] == "houston" and ent == "LOCATION" for s, e, ent, _ in found)
    monkeypatch.setattr(ner_engine, "places", None)
    spy = _fresh(ner_engine)
    assert ner_engine._ner_entities([text]) == [[]] and spy.seen == []


def test_long_sentence_window_centres_on_a_lower_case_place(ner_engine):
    """In a long cased sentence the words around a lower-case place are a window of their own."""
    from lazaret.checks.pii.engine import candidate_windows

    text = ("We asked Angela about the trip and she said that the long drive took all day and night and "
            "then our friends moved to houston last year and they love it there")
    with_places = candidate_windows(text, 0, len(text), 6, ner_engine.places)
    without = candidate_windows(text, 0, len(text), 6)
    assert len(without) == 1 and "houston" not in text[slice(*without[0])]
    assert len(with_places) == 2 and "houston" in text[slice(*with_places[1])]


def test_place_list_matches_lower_case_names_and_phrases_only():
    """Single words and phrases, punctuation around them ignored; capitalised words are not its business
    (they are candidate words already); ordinary words that are also towns are not in the list."""
    from lazaret.checks.pii.engine import PlaceGazetteer

    places = PlaceGazetteer.load()
    words = "we flew from new mexico (via houston, canada) to Paris and then to paris.".split()
    hits = [words[i] for i in sorted(places.word_indices(words))]
    assert hits == ["new", "mexico", "houston,", "canada)", "paris."]
    assert places.word_indices("New Mexico and Houston".split()) == set()
    for common in ("reading", "nice", "mobile", "split", "bath", "orange", "turkey", "surprise"):
        assert not places.word_indices([common]), common
    assert places.found_in("x moved to houston", 0, 18) and not places.found_in("x moved to houston", 0, 12)
    assert len(places.phrases) > 3000
