"""The strata sample chosen by key alone and sent as vocabulary columns (transform.Strata) fits the model
that fit_strata fits on the whole sample rows: same sample, same k-means input, same order."""

from __future__ import annotations

import random

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from lazaret.checks.poisoning import strata
from lazaret.checks.poisoning.transform import Strata

PARAMS = {"strata_min_df": 0.05, "strata_max": 4, "strata_min_size": 20, "strata_sample": 150, "max_fraction": 0.05}
TASKS = ["solve the equation for x", "translate the sentence into french", "summarise the news article",
         "write a python function"]
EXTRAS = ["quickly", "please", "now", "carefully", "briefly", "today"]


# prefaces put around some requests (preambles.py): two that open alike, and one after the request
PREFACES = ["you are a careful assistant who answers every request in full and checks each step",
            "you are a careful assistant who writes short answers"]
AFTER = "reply in plain english"


def _feats(n, seed, copies=0, wrapped=False):
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        words = [TASKS[rnd.randrange(4)], EXTRAS[rnd.randrange(6)], EXTRAS[rnd.randrange(6)], f"item{rnd.randrange(60)}"]
        if wrapped and rnd.random() < 0.6:
            words.insert(0, rnd.choice(PREFACES))
        if wrapped and rnd.random() < 0.3:
            words.append(AFTER)
        out.append({"doc_id": f"f:{i}", "pt": " ".join(words), "rt": f"answer {rnd.randrange(40)}"})
    for j in range(copies):  # exact copies: shared keys
        out.append(dict(out[rnd.randrange(n)], doc_id=f"copy:{j}"))
    return out


def _passes(feats, params):
    """The three passes of transform.Strata, run in plain Python."""
    keys = sorted(strata.sample_key(f)[0] for f in feats)[:params["strata_sample"]]
    cut = strata.sample_cut(keys)
    shared = [r for f in feats for r in strata.shared_rows(f, cut)]
    df = {}
    for f in feats:
        for w, c in strata.sample_words(f, cut):
            df[w] = df.get(w, 0) + c
    kept = [(w, c) for w, c in sorted(df.items()) if strata.maybe_vocab((w, c), cut, params)]
    vocab = strata.sample_vocab(kept, shared, cut, params)
    cols = [r for f in feats for r in strata.sample_columns(f, cut, vocab)]
    random.Random(7).shuffle(cols)
    return strata.fit_sample(cols, vocab, params)


def _whole(feats, params):
    return strata.fit_strata(sorted(strata.sample_row(f) for f in feats)[:params["strata_sample"]], params)


@pytest.mark.parametrize("n,copies,modulus", [(400, 0, None), (400, 60, None), (100, 10, None), (0, 0, None),
                                              (400, 30, 97), (400, 0, 23)])
@pytest.mark.parametrize("wrapped", [False, True])
def test_the_passes_fit_the_whole_sample_model(monkeypatch, n, copies, modulus, wrapped):
    if modulus:  # a small key space: crc32 collisions between different prompts, at and below the last key
        key = strata.sample_key
        monkeypatch.setattr(strata, "sample_key", lambda f: (key(f)[0] % modulus,) + key(f)[1:])
    feats = _feats(n, seed=n + copies, copies=copies, wrapped=wrapped)
    want = _whole(feats, PARAMS)
    assert _passes(feats, PARAMS) == want
    if n == 400 and not modulus:
        assert want["k"] >= 2
        # the prefaces (two opening alike: each found whole, not just their common start) and the line after
        # the request; a task's opening this common (a quarter of the prompts) is a preamble too, alone or
        # after a preface
        pre = want["preambles"]
        assert "solve the equation for x" in pre["o"]
        assert pre["e"] == ([AFTER] if wrapped else [])
        assert all(any(o.startswith(p + " ") for o in pre["o"]) for p in PREFACES) == wrapped


def test_the_beam_transform_fits_the_whole_sample_model():
    feats = _feats(400, seed=3, copies=40)
    want = strata.AssignStratum()
    model = _whole(feats, PARAMS)
    expected = [(f["doc_id"], want(f, model)["stratum"]) for f in feats]
    assert model["k"] >= 2
    with TestPipeline() as p:
        out, _sizes = p | beam.Create(feats) | Strata(PARAMS)
        assert_that(out | beam.Map(lambda f: (f["doc_id"], f["stratum"])), equal_to(expected))


def test_packed_columns_round_trip():
    rnd = random.Random(1)
    for _ in range(2000):
        cols = sorted({rnd.randrange(rnd.choice([5, 200, 1000, 70000])) for _ in range(rnd.randrange(60))})
        assert strata.unpack_columns(strata.pack_columns(cols)) == cols
