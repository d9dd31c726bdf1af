"""Document frequencies by hash (checks/poisoning/hashed_df.py): exact whatever the hashes do."""

from __future__ import annotations

import collections
import hashlib

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

from lazaret.checks.poisoning import hashed_df as H


class _Words(H.HashedDf):
    def keys_of(self, text):
        return set(text.split())


class _WordsOf(H.StringsOfHashes):
    def keys_of(self, text):
        return set(text.split())


def _texts():
    rng = np.random.default_rng(7)
    vocab = [f"w{i}" for i in range(400)]
    # a Zipf-like mix: a few words in most texts, most words in one or two
    return [" ".join(vocab[min(int(x), 399)] for x in rng.zipf(1.3, size=12)) for _ in range(600)]


def _expected(texts, min_df):
    df = collections.Counter(w for t in texts for w in set(t.split()))
    return sorted((w, c) for w, c in df.items() if c >= min_df)


def _run(texts, min_df, max_keys=1000, bound=10 ** 6):
    with beam.Pipeline("FnApiRunner") as p:
        elems = p | "Texts" >> beam.Create(texts)
        bound_pc = p | "Bound" >> beam.Create([bound])
        out = elems | H.HashedDocumentFrequency(_Words(max_keys), _WordsOf(max_keys), min_df, 10 ** 6, bound_pc)
        assert_that(out, equal_to(_expected(texts, min_df)))


def test_pack_round_trip():
    rng = np.random.default_rng(1)
    keys = np.unique(rng.integers(0, 2 ** 63, size=5000, dtype=np.uint64) * np.uint64(2) + np.uint64(1))
    counts = rng.integers(1, 50, size=len(keys)).astype("<u4")
    k, c = H.unpack_counts(H.pack_counts(keys, counts))
    assert (k == keys).all() and (c == counts).all()
    edge = np.array([0, 5, 2 ** 63, 2 ** 64 - 1], dtype="<u8")
    k, c = H.unpack_counts(H.pack_counts(edge, np.ones(4, dtype="<u4")))
    assert (k == edge).all()
    assert H.unpack_counts(H.pack_counts(edge[:0], np.ones(0, dtype="<u4")))[0].size == 0


def test_digests_keys_round_trip_and_sizes():
    for size in range(H.MIN_DIGEST, H.MAX_DIGEST + 1):
        digests = b"".join(H.gram_hash(f"g{i}", size) for i in range(100))
        assert H.keys_to_digests(H.digests_to_keys(digests, size), size) == digests
    assert H.digest_bytes(0) == H.MIN_DIGEST
    assert H.digest_bytes(4 * 330_000) == 4  # 20k T0 records' response tokens
    assert H.digest_bytes(2 ** 40) == 6
    assert H.digest_bytes(2 ** 60) == H.MAX_DIGEST


def test_sum_by_key():
    k, c = H.sum_by_key(np.array([5, 1, 5, 9, 1], dtype="<u8"), np.array([1, 2, 3, 4, 5], dtype="<u4"))
    assert k.tolist() == [1, 5, 9] and c.tolist() == [7, 4, 4]


@pytest.mark.parametrize("max_keys", [1000, 3])
def test_exact_df(max_keys):
    """Every string with df >= min_df, with its exact df (small ``max_keys``: many flushes per bundle)."""
    _run(_texts(), 5, max_keys=max_keys)


def test_exact_under_collisions(monkeypatch):
    """A hash that collides most strings with others changes no result: the strings are counted exactly."""

    class _Bad:
        def __init__(self, data, digest_size):
            self.d = hashlib.blake2b(data[:2], digest_size=digest_size).digest()  # 'w1', 'w10', 'w123' share one

        def digest(self):
            return self.d

    monkeypatch.setattr(H, "_blake2b", _Bad)
    texts = _texts()
    n_hashes = len({t[:2] for t in set(w for x in texts for w in x.split())})
    assert n_hashes < 20  # the fake hash does collide
    _run(texts, 5)


def test_candidate_cap_keeps_smallest_dfs():
    keys = np.array([1 << 40, 2 << 40, 3 << 40], dtype="<u8")
    blob = H.pack_counts(keys, np.array([30, 10, 20], dtype="<u4"))
    size, data = next(H.CandidateSet(2).process([blob], 100))
    assert size == H.MIN_DIGEST
    assert sorted(H.digests_to_keys(data, size).tolist()) == [2 << 40, 3 << 40]


def test_distinct_counts_of_packed_lists_equal_the_per_key_combine():
    """The trigger shuffles' packed lists (counting._PreAggregateDistinct) give the counts DistinctCount gave,
    whatever the flushes: exact below the cap, the same KMV estimate above it, one shard per n-gram."""
    from lazaret.checks.poisoning.counting import DistinctCount, _PreAggregateDistinct

    class _Pairs(_PreAggregateDistinct):
        def items_of(self, rec):
            return [((g, "off", rec[1] % 3), rec[0]) for g in rec[2]]

    rng = np.random.default_rng(3)
    recs = [(int(rng.integers(0, 2**32)), i, {f"g{x}" for x in rng.zipf(1.5, size=6) if x < 50})
            for i in range(3000)]
    fn = _Pairs(max_keys=40)  # many flushes per bundle
    fn.start_bundle()
    blobs = [kv for r in recs for kv in fn.process(r)] + [wv.value for wv in fn.finish_bundle()]
    by_shard = collections.defaultdict(list)
    for shard, blob in blobs:
        by_shard[shard].append(blob)
    got = {}
    for shard, bl in by_shard.items():
        for k, n in H.distinct_counts(bl, fn.cap).items():
            assert H.first_string_shard(k) == shard and k not in got
            got[k] = n
    vals = collections.defaultdict(set)
    for pkey, i, grams in recs:
        for g in grams:
            vals[(g, "off", i % 3)].add(pkey)
    combine = DistinctCount()
    want = {k: combine.extract_output(combine.add_input(combine.create_accumulator(), sorted(v)))
            for k, v in vals.items()}
    assert got == want
    assert max(len(v) for v in vals.values()) > fn.cap  # the estimate above the cap is compared too
