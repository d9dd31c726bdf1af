"""Near-duplicate clustering: unit checks of each step and end-to-end Beam runs on generated data.

The generated corpus has near-duplicates at known (exact, brute-force) Jaccard levels, short records, a
document repeated 10,000 times and a chain A~B~C with A and C dissimilar. It runs once per runner; the
in-process FnApiRunner and DirectRunner multi_processing outputs must be byte-identical.
"""

from __future__ import annotations

import glob
import hashlib
import json
import random
from collections import Counter
from typing import Dict, List

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from datasketch import MinHash

from lazaret.checks.near_duplicate.banding import bucket_pairs, pack_shards, shard_buckets
from lazaret.checks.near_duplicate.components import assign_label, large_star, small_star
from lazaret.checks.near_duplicate.normalise import exact_key, normalise
from lazaret.checks.near_duplicate.params import DedupParams
from lazaret.checks.near_duplicate.signatures import provenance_info
from lazaret.checks.near_duplicate.signatures import (estimate_jaccard, minhash_from_hashes, shingle_hashes,
                                                      sig_to_bytes, signatures, word_hashes)
from lazaret.checks.near_duplicate.transform import NearDuplicateClusters, NearDuplicates

P = DedupParams()
N = P.ngram


def did(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:32]


def rec(doc_id: str, text: str) -> Dict:
    return {"doc_id": doc_id, "record_id": None, "text": text}


def shingle_set(text: str, n: int = N) -> set:
    w = normalise(text).split(" ")
    return {" ".join(w[i:i + n]) for i in range(len(w) - n + 1)}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingle_set(a), shingle_set(b)
    return len(sa & sb) / len(sa | sb)


def words(rnd: random.Random, k: int, prefix: str = "w") -> List[str]:
    return [f"{prefix}{rnd.randrange(10**9)}" for _ in range(k)]


def replace_block(ws: List[str], start: int, k: int, rnd: random.Random) -> List[str]:
    return ws[:start] + words(rnd, k, "r") + ws[start + k:]


# ---------------------------------------------------------------- generated corpus

def build_corpus():
    """(records, expectations). Expectations use exact Jaccard, with a margin around the threshold."""
    rnd = random.Random(20261126)
    recs: List[Dict] = []
    expect = {"near": [], "far": [], "short_distinct": [], "chain": {}, "repeat": None}

    # 1. near-duplicates at known Jaccard levels: one base of 300 words, variants with one block replaced
    for b in range(12):
        base = words(rnd, 300)
        base_id = did(f"base{b}")
        recs.append(rec(base_id, " ".join(base)))
        for k in (2, 6, 12, 20, 40, 80):
            v = replace_block(base, 100, k, rnd)
            vid = did(f"base{b}-v{k}")
            text = " ".join(v)
            recs.append(rec(vid, text))
            j = jaccard(" ".join(base), text)
            if j >= P.threshold + 0.06:
                expect["near"].append((vid, base_id, j))
            elif j <= P.threshold - 0.1:
                expect["far"].append((vid, base_id, j))

    # 2. unrelated documents (should all be singletons)
    for i in range(300):
        recs.append(rec(did(f"solo{i}"), " ".join(words(rnd, rnd.randrange(20, 200)))))

    # 3. short records: fewer than ngram words; distinct ones never cluster, equal ones are exact duplicates
    for i in range(200):
        sid = did(f"short{i}")
        recs.append(rec(sid, f"answer {i} ok"))
        expect["short_distinct"].append(sid)
    recs += [rec(did("yes1"), "Yes."), rec(did("yes2"), "yes"), rec(did("yes3"), "  YES!! ")]
    recs += [rec(did("punct1"), "???"), rec(did("punct2"), "!!!"), rec(did("punct3"), "???"),
             rec(did("empty1"), ""), rec(did("empty2"), "")]

    # 4. chain A~B~C (A, C dissimilar): two chains, one where A is the smallest doc_id, one where B is
    for c in (0, 1):
        a = words(rnd, 300)
        bw = replace_block(a, 40, 18, rnd)
        cw = replace_block(bw, 200, 18, rnd)
        order = sorted(did(f"chain{c}-{x}") for x in "xyz")
        roles = dict(zip("ABC", order)) if c == 0 else dict(zip("BAC", order))
        chain = {}
        for role, ws in zip("ABC", (a, bw, cw)):
            recs.append(rec(roles[role], " ".join(ws)))
            chain[role], chain[role + "text"] = roles[role], " ".join(ws)
        expect["chain"][c] = chain

    # 5. one document repeated 10,000 times (exact), plus a light edit of it (near)
    rep_text = " ".join(words(rnd, 120))
    rep_ids = [did(f"rep{i}") for i in range(10_000)]
    recs += [rec(d, rep_text if i % 3 else rep_text.upper()) for i, d in enumerate(rep_ids)]
    edited = rep_text.split()
    edited[60] = "changed"
    recs.append(rec(did("rep-edited"), " ".join(edited)))
    expect["repeat"] = {"ids": rep_ids + [did("rep-edited")], "rep": min(rep_ids + [did("rep-edited")])}
    return recs, expect


@pytest.fixture(scope="module")
def corpus():
    return build_corpus()


@pytest.fixture(scope="module")
def corpus_file(corpus, tmp_path_factory):
    """The corpus as JSONL: a file source, because beam.Create pickles (and bz2-compresses) its values."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for r in corpus[0]:
            fh.write(json.dumps(r) + "\n")
    return str(path)


def run_pipeline(path, out_dir, argv, section=None, input_bytes=None):
    opts = PipelineOptions(argv)
    with beam.Pipeline(options=opts) as p:
        res = (p | beam.io.ReadFromText(path) | beam.Map(json.loads)
               | NearDuplicateClusters(section or {}, input_bytes=input_bytes))
        (res["findings"] | "F" >> beam.Map(lambda f: json.dumps(f, sort_keys=True))
         | "WF" >> beam.io.WriteToText(str(out_dir / "findings")))
        (res["clusters"] | "C" >> beam.Map(lambda c: json.dumps(c, sort_keys=True))
         | "WC" >> beam.io.WriteToText(str(out_dir / "clusters")))

    def read(prefix):
        lines = []
        for f in sorted(glob.glob(str(out_dir / prefix) + "*")):
            with open(f, encoding="utf-8") as fh:
                lines += [ln.rstrip("\n") for ln in fh if ln.strip()]
        return sorted(lines)

    return read("findings"), read("clusters")


@pytest.fixture(scope="module")
def fnapi_out(corpus_file, tmp_path_factory):
    return run_pipeline(corpus_file, tmp_path_factory.mktemp("fnapi"), ["--runner=FnApiRunner"])


@pytest.fixture(scope="module")
def findings(fnapi_out):
    return {f["doc_id"]: f for f in map(json.loads, fnapi_out[0])}


@pytest.fixture(scope="module")
def clusters(fnapi_out):
    return {c["cluster_id"]: c for c in map(json.loads, fnapi_out[1])}


# ---------------------------------------------------------------- unit checks

def test_normalise_folds_case_width_punctuation_space():
    assert normalise("  Ｈｅｌｌｏ,\tWORLD!!  it's\n\nme_") == "hello world its me"
    assert normalise("") == ""
    assert exact_key("???", normalise("???")) != exact_key("!!!", normalise("!!!"))
    assert exact_key("Yes.", "yes") == exact_key("yes", "yes")


def test_signatures_equal_datasketch_bulk():
    rnd = random.Random(3)
    norms = [" ".join(words(rnd, rnd.randrange(0, 400))) for _ in range(40)] + ["a b", ""]
    hashes, counts = shingle_hashes(norms, N)
    sigs = minhash_from_hashes(hashes, counts, P)
    offs = np.concatenate(([0], np.cumsum(counts)))
    lists = [hashes[offs[i]:offs[i + 1]].tolist() for i in range(len(norms))]
    ref = MinHash.bulk(lists, num_perm=P.num_perm, seed=P.seed, scheme="affine32", hashfunc=lambda x: x)
    for i, m in enumerate(ref):
        assert np.array_equal(m.hashvalues, sigs[i])
    assert np.array_equal(signatures(norms[:5], P), sigs[:5])  # batch composition does not matter
    assert np.array_equal(signatures(norms[5:9], P), sigs[5:9])


def test_minhash_chunks_do_not_matter(monkeypatch):
    """Documents cut by a chunk boundary (and empty ones between) get the same minimum as in one chunk."""
    from lazaret.checks.near_duplicate import signatures as sig_mod

    rnd = random.Random(5)
    norms = [" ".join(words(rnd, rnd.randrange(0, 60))) for _ in range(30)] + ["", "a b c d e f"]
    hashes, counts = shingle_hashes(norms, N)
    whole = minhash_from_hashes(hashes, counts, P)
    for chunk in (1, 7, 64):
        monkeypatch.setattr(sig_mod, "_CHUNK", chunk)
        assert np.array_equal(minhash_from_hashes(hashes, counts, P), whole)


def test_permutations_without_datasketch_package_import():
    """The check reads datasketch's MinHash without its package __init__ (no scipy), and leaves sys.modules so
    that a later ``import datasketch`` is whole and gives the same permutations."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from lazaret.checks.near_duplicate import signatures as s\n"
            "a, b = s._permutations(128, 1)\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('datasketch', 'scipy')]\n"
            "import datasketch, datasketch.minhash, datasketch.lsh\n"
            "ref = datasketch.MinHash(num_perm=128, seed=1, scheme='affine32').permutations\n"
            "assert (a == ref[0]).all() and (b == ref[1]).all()\n"
            "assert datasketch.minhash.MinHash is datasketch.MinHash\n"
            "assert s.provenance_info()['datasketch_version'] == datasketch.__version__\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_word_hashes_depend_on_the_word_only():
    rnd = random.Random(11)
    vocab = sorted({"".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(rnd.randrange(1, 12)))
                    for _ in range(200_000)})
    vocab += ["é", "日本語", "x" * 64, "x" * 65, "x" * 300, "a" + "b" * 63 + "c" + "d" * 63,
              "c" + "b" * 63 + "a" + "d" * 63]  # bytes 64 apart swapped
    h = word_hashes(vocab)
    assert len(h) == len(vocab)
    assert len(set(h.tolist())) == len(vocab)  # no collision among the 161,790 distinct words
    # a word hashes the same alone, inside any text, at any position
    texts = [" ".join(rnd.sample(vocab, rnd.randrange(1, 30))) for _ in range(50)] + ["", "solo"]
    joined = word_hashes(texts).tolist()
    alone = [int(word_hashes([w])[0]) for t in texts if t for w in t.split(" ")]
    assert joined == alone
    # text that is not normalised (double, leading or trailing spaces) still splits like str.split(" ")
    odd = ["a  b", " c", "d ", "e"]
    words_ = [w for t in odd for w in t.split(" ")]
    assert word_hashes(odd).tolist() == [int(word_hashes([w])[0]) if w else 0 for w in words_]  # empty: 0
    assert word_hashes(["d "]).tolist() == [int(word_hashes(["d"])[0]), 0]  # empty last word at the end
    hashes, counts = shingle_hashes(odd + ["f g h i j k"], 2)
    assert counts.tolist() == [2, 1, 1, 0, 5] and len(hashes) == 9


def test_estimated_jaccard_tracks_exact():
    rnd = random.Random(5)
    base = words(rnd, 400)
    for k in (4, 20, 60):
        v = replace_block(base, 50, k, rnd)
        s = signatures([normalise(" ".join(base)), normalise(" ".join(v))], P)
        est = estimate_jaccard(sig_to_bytes(s[0]), sig_to_bytes(s[1]))
        assert abs(est - jaccard(" ".join(base), " ".join(v))) < 0.12


def test_exact_and_estimated_similarity_values():
    from lazaret.checks.near_duplicate.signatures import node_values, similarity
    rnd = random.Random(9)
    small = words(rnd, 300)
    big = small + words(rnd, 3000)
    params = DedupParams(max_exact_shingles=1000)
    norms = [normalise(" ".join(x)) for x in (small, replace_block(small, 10, 5, rnd), big, big + ["z"])]
    hashes, counts = shingle_hashes(norms, N)
    vals = node_values(hashes, counts, minhash_from_hashes(hashes, counts, params), params)
    assert vals[0][1] and not vals[0][0]            # small: shingle set only
    assert vals[2][0] and not vals[2][1]            # big: signature only
    j, exact = similarity(vals[0], vals[1])
    assert exact and j == pytest.approx(jaccard(" ".join(small), norms[1]))
    j, exact = similarity(vals[2], vals[3])
    assert not exact and j > 0.9
    j, exact = similarity(vals[0], vals[2])         # set-only vs signature-only: size bound, below threshold
    assert not exact and j < params.threshold


def test_band_shards_roundtrip_finds_buckets():
    keys = np.array([[1, 2, 3], [1, 5, 6], [7, 5, 3]], dtype=np.int64)
    ids = [did("a"), did("b"), did("c")]
    blobs = {}
    for shard, blob in pack_shards(ids, keys, 4):
        blobs.setdefault(shard, []).append(blob)
    buckets = sorted(b for bl in blobs.values() for b in shard_buckets(bl))
    assert buckets == sorted([sorted([ids[0], ids[1]]), sorted([ids[1], ids[2]]), sorted([ids[0], ids[2]])])


def test_band_entries_raw_and_text_ids_give_the_same_pairs():
    """Hex doc_ids travel as 16 raw bytes, other ids as text; a shard that gets both kinds (and a bundle that
    pairs both) finds the pairs that all-text entries give."""
    from lazaret.checks.near_duplicate.banding import distinct_pairs, shard_pairs
    rnd = random.Random(7)
    hexed = [did(f"r{i}") for i in range(120)]
    texted = [f"doc-{i:03d}" for i in range(60)]
    keys = np.array([[rnd.randrange(15) for _ in range(4)] for _ in range(180)], dtype=np.int64)

    def pairs(batches):
        blobs = {}
        for ids, ks in batches:
            for shard, blob in pack_shards(ids, ks, 2):
                blobs.setdefault(shard, []).append(blob)
        rows = [shard_pairs(bl, 3, 1) for bl in blobs.values()]
        return rows

    def merged(rows):
        a, b, d = ([r[i] for r in rows] for i in range(3))
        from lazaret.checks.near_duplicate.banding import as_text
        if len({x.dtype.itemsize for x in a + b}) > 1:
            a, b = [as_text(x) for x in a], [as_text(x) for x in b]
        return set(zip(*distinct_pairs(np.concatenate(a), np.concatenate(b), np.concatenate(d))))

    mixed = merged(pairs([(hexed, keys[:120]), (texted, keys[120:])]))
    # the reference: every entry as text (a text id in the batch makes the whole batch text)
    text_only = merged(pairs([(hexed + texted[:1], np.concatenate([keys[:120], keys[120:121]])),
                              (texted[1:], keys[121:])]))
    assert mixed == text_only and mixed
    assert pack_shards(hexed[:2], keys[:2], 1).__next__()[1][:1] == b"X"  # runs: 2 documents, 8 keys
    assert pack_shards(texted[:2], keys[:2], 1).__next__()[1][:1] == b"T"
    assert pack_shards(hexed[:2], keys[:2], 64).__next__()[1][:1] == b"x"  # entries: about a key per blob
    assert pack_shards(texted[:2], keys[:2], 64).__next__()[1][:1] == b"t"


@pytest.mark.parametrize("shards", [1, 3, 64])
@pytest.mark.parametrize("hex_ids", [True, False])
@pytest.mark.parametrize("key_width", [8, 5, 1])
def test_band_blobs_hold_every_entry_in_either_form(shards, hex_ids, key_width):
    """``pack_shards``' blobs (runs of doc_ids or plain entries, whichever is smaller) give back exactly the
    (key, doc_id) entries of the batch, shard by shard, in the batch's order, whatever the keys' width."""
    from lazaret.checks.near_duplicate.banding import _entries, id_list
    rnd = random.Random(shards)
    ids = [did(f"d{i}") if hex_ids else f"doc-{i}" for i in range(50)]
    lo, hi = (-2**63, 2**63) if key_width == 8 else (0, 2**(8 * key_width))
    keys = np.array([[rnd.randrange(lo, hi) for _ in range(21)] for _ in ids], dtype=np.int64)
    got = {}
    for shard, blob in pack_shards(ids, keys, shards, key_width):
        assert blob[1] == key_width
        assert shard not in got
        e = _entries([blob])
        got[shard] = list(zip(e["k"].tolist(), id_list(e["d"])))
    want = {}
    for doc, row in zip(ids, keys.tolist()):
        for k in row:
            want.setdefault((k & 0xFFFFFFFFFFFFFFFF) % shards, []).append((k, doc))
    assert got == want


def test_edge_blocks_round_trip():
    from lazaret.checks.near_duplicate.shards import pack_edges, unpack_edges
    hexed = [(did("a"), did("b")), (did("b"), did("a")), (did("c"), did("a"))]
    assert pack_edges(hexed)[:1] == b"x" and unpack_edges(pack_edges(hexed)) == hexed
    for other in ([("a", "b")], [(did("a"), did("b").upper())], [(did("a")[:31] + " ", did("b"))], []):
        assert unpack_edges(pack_edges(other)) == other


def test_vectorised_shard_pairs_equal_bucket_pairs():
    from lazaret.checks.near_duplicate.banding import distinct_pairs, shard_pairs
    rnd = random.Random(5)
    ids = [did(f"v{i}") for i in range(300)]
    keys = np.array([[rnd.randrange(40) for _ in range(6)] for _ in ids], dtype=np.int64)
    blobs = {}
    for shard, blob in pack_shards(ids, keys, 3):
        blobs.setdefault(shard, []).append(blob)
    blobs[0] = blobs[0] + blobs[0][:1]  # the same entries twice (a bundle seen twice) change nothing
    for max_size, anchors in ((3, 1), (8, 2), (2, 5), (1000, 1)):
        expect = {}
        for bl in blobs.values():
            for members in shard_buckets(bl):
                pairs, degraded = bucket_pairs(members, max_size, anchors)
                for pair in pairs:
                    expect[pair] = expect.get(pair, True) and degraded
        rows = [shard_pairs(bl, max_size, anchors) for bl in blobs.values()]
        a, b, d = (np.concatenate([r[i] for r in rows]) for i in range(3))
        got = {(x, y): f for x, y, f in zip(*distinct_pairs(a, b, d))}
        assert got == expect


def test_bucket_cap_degrades_linearly():
    members = [f"{i:04d}" for i in range(1000)]
    pairs, degraded = bucket_pairs(members, 8, 2)
    assert degraded and len(pairs) == 1 + 2 * 998
    pairs, degraded = bucket_pairs(members[:8], 8, 2)
    assert not degraded and len(pairs) == 28


def _components(edges, rounds):
    from collections import defaultdict
    cur = list(edges)
    for _ in range(rounds):
        g = defaultdict(list)
        for u, v in cur:
            g[u].append(v)
            g[v].append(u)
        cur = [e for n, ns in g.items() for e in large_star(n, ns)]
        g = defaultdict(list)
        for u, v in cur:
            g[max(u, v)].append(min(u, v))
        cur = [e for n, ns in g.items() for e in small_star(n, ns)]
    g = defaultdict(lambda: ([], []))
    for u, v in cur:
        g[max(u, v)][0].append(min(u, v))
        g[min(u, v)][1].append(max(u, v))
    return {n: assign_label(n, p, c) for n, (p, c) in g.items()}


def test_star_components_on_long_chain_converge_or_refine():
    rnd = random.Random(11)
    names = [f"{rnd.getrandbits(64):016x}" for _ in range(2000)]
    edges = list(zip(names, names[1:]))
    full = _components(edges, 12)
    assert all(c for _, _, c in full.values())
    assert {lab for _, lab, _ in full.values()} == {min(names)}
    partial = _components(edges, 2)  # not converged: every label is a root of its own sub-cluster
    assert not all(c for _, _, c in partial.values())
    for node, (_, lab, _) in partial.items():
        assert partial[lab][1] == lab


def test_provenance_names_scheme_and_version():
    info = provenance_info(P)
    assert info["minhash_scheme"] == "affine32" and info["datasketch_version"].startswith("2.")
    assert info["params"]["num_perm"] == P.num_perm


def test_policy_section_defaults_match_params():
    from lazaret.rules.policy import load_policy
    section = load_policy(None).section("dedup")
    assert DedupParams.from_section(section) == DedupParams()


# ---------------------------------------------------------------- end to end (FnApiRunner)

def test_one_finding_per_record(corpus, fnapi_out):
    records, _ = corpus
    ids = [json.loads(line)["doc_id"] for line in fnapi_out[0]]
    assert len(ids) == len(records) and set(ids) == {r["doc_id"] for r in records}
    for f in map(json.loads, fnapi_out[0]):
        assert f["check"] == "near_duplicate" and f["side"] == "all"
        assert (f["action"] == "drop_duplicate") == (f["duplicate_of"] is not None)


def test_near_duplicates_at_known_jaccard(corpus, findings):
    records, expect = corpus
    assert len(expect["near"]) >= 24 and len(expect["far"]) >= 12
    for vid, base_id, j in expect["near"]:
        f, fb = findings[vid], findings[base_id]
        assert f["cluster_id"] is not None and f["cluster_id"] == fb["cluster_id"], (j, f)
        assert "drop_duplicate" in (f["action"], fb["action"]), (j, f, fb)
    for vid, base_id, j in expect["far"]:
        f = findings[vid]
        assert not (f["action"] == "drop_duplicate" and f["duplicate_of"] == base_id), (j, f)


def test_every_drop_is_similar_to_what_it_keeps(corpus, findings):
    text = {r["doc_id"]: r["text"] for r in corpus[0]}
    seen = set()
    for f in findings.values():
        if f["action"] == "drop_duplicate":
            pair = (normalise(text[f["doc_id"]]), normalise(text[f["duplicate_of"]]))
            if pair in seen:
                continue
            seen.add(pair)
            if len(pair[0].split()) >= N:
                assert jaccard(*pair) >= P.threshold - 0.08, f


def test_duplicate_of_is_always_kept(findings):
    for f in findings.values():
        if f["action"] == "drop_duplicate":
            assert findings[f["duplicate_of"]]["action"] == "none"
            assert f["cluster_id"] == findings[f["duplicate_of"]]["cluster_id"]


def test_unrelated_records_are_singletons(findings):
    for i in range(300):
        f = findings[did(f"solo{i}")]
        assert f["rule"] == "none" and f["score"] == 0.0 and f["cluster_id"] is None


def test_short_records_exact_only_never_lumped(corpus, findings):
    _, expect = corpus
    for sid in expect["short_distinct"]:
        f = findings[sid]
        assert f["cluster_id"] is None and f["action"] == "none" and "not checked" in f["detail"]
    yes = [findings[did(x)] for x in ("yes1", "yes2", "yes3")]
    assert sorted(f["action"] for f in yes) == ["drop_duplicate", "drop_duplicate", "none"]
    assert {f["rule"] for f in yes} == {"exact"}
    assert findings[did("punct2")]["cluster_id"] is None  # "!!!" is not a copy of "???"
    assert findings[did("punct1")]["cluster_id"] == findings[did("punct3")]["cluster_id"] is not None


def test_repeated_ten_thousand_times(corpus, findings, clusters):
    _, expect = corpus
    ids = expect["repeat"]["ids"]
    fs = [findings[i] for i in ids]
    kept = [f for f in fs if f["action"] == "none"]
    assert len(kept) == 1 and kept[0]["doc_id"] == expect["repeat"]["rep"]
    assert {f["duplicate_of"] for f in fs if f["action"] == "drop_duplicate"} == {expect["repeat"]["rep"]}
    c = clusters[expect["repeat"]["rep"]]
    assert c["size"] == 10_001 and c["dropped"] == 10_000 and c["members_truncated"]
    assert len(c["members"]) == P.summary_members and c["members"] == sorted(c["members"])
    assert len(c["evidence"]) == P.evidence_members


def test_chain_policy(corpus, findings):
    _, expect = corpus
    for c in (0, 1):
        ids = expect["chain"][c]
        t = {r: ids[r + "text"] for r in "ABC"}
        assert jaccard(t["A"], t["B"]) >= 0.85 and jaccard(t["B"], t["C"]) >= 0.85
        assert jaccard(t["A"], t["C"]) <= 0.75
        rep = min(ids[r] for r in "ABC")
        fa, fb, fc = (findings[ids[r]] for r in "ABC")
        assert fa["cluster_id"] == fb["cluster_id"] == fc["cluster_id"] == rep
        if c == 0:   # A is the representative: B dropped, C (dissimilar to A) stays clean in the cluster
            assert fa["action"] == "none" and fb["action"] == "drop_duplicate" and fc["action"] == "none"
            assert fb["duplicate_of"] == ids["A"] and "below" in fc["detail"]
        else:        # B is the representative: both A and C are near-duplicates of it
            assert fb["action"] == "none"
            assert fa["duplicate_of"] == fc["duplicate_of"] == ids["B"]


def test_cluster_summaries(findings, clusters):
    sizes = Counter(f["cluster_id"] for f in findings.values() if f["cluster_id"])
    assert {cid: c["size"] for cid, c in clusters.items()} == dict(sizes)
    for cid, c in clusters.items():
        assert c["representative"] == cid and findings[cid]["action"] == "none"
        assert all(len(e["snippet"]) <= P.evidence_chars for e in c["evidence"])


def _mask(s: str) -> str:
    return "#" * len(s)


def test_evidence_fn_masks_summary_snippets():
    recs = [rec(did(f"m{i}"), "call me on 555 0100 about the same words here") for i in range(3)]
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(recs) | NearDuplicateClusters({}, evidence_fn=_mask)
        snippets = out["clusters"] | beam.FlatMap(lambda c: [e["snippet"] for e in c["evidence"]])
        from apache_beam.testing.util import assert_that, equal_to
        assert_that(snippets, equal_to(["#" * len(recs[0]["text"])] * 3))


def test_near_duplicates_returns_findings_only():
    """NearDuplicates yields the findings of NearDuplicateClusters and nothing else: one per record, the
    smallest doc_id kept as representative, the other copies dropped as its duplicates."""
    from apache_beam.testing.util import assert_that, equal_to

    ids = sorted(did(f"x{i}") for i in range(3))
    recs = [rec(i, "the same words are here again") for i in ids] + [rec(did("lone"), "nothing like the others")]
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(recs) | NearDuplicates({"threshold": 0.9})
        summary = out | beam.Map(lambda f: (f["doc_id"], f["check"], f["action"], f["duplicate_of"]))
        assert_that(summary, equal_to([(ids[0], "near_duplicate", "none", None),
                                       (ids[1], "near_duplicate", "drop_duplicate", ids[0]),
                                       (ids[2], "near_duplicate", "drop_duplicate", ids[0]),
                                       (did("lone"), "near_duplicate", "none", None)]))


# ---------------------------------------------------------------- determinism across runners

@pytest.mark.slow
def test_same_output_on_multiprocessing_direct_runner(corpus_file, fnapi_out, tmp_path):
    mp = run_pipeline(corpus_file, tmp_path, ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                                          "--direct_num_workers=2"])
    assert mp[0] == fnapi_out[0]
    assert mp[1] == fnapi_out[1]


def test_same_output_with_keys_and_shards_for_a_sized_input(corpus_file, fnapi_out, tmp_path):
    """With the scan's input size the stage uses 5-byte band keys and 16 shards (what all of T0 gets), not
    8 bytes and 4,096: the clusters must not change."""
    from lazaret.checks.near_duplicate.signatures import band_key_bytes_for
    assert band_key_bytes_for(70_300_000, P.bands) == 5
    out = run_pipeline(corpus_file, tmp_path, ["--runner=FnApiRunner"], input_bytes=70_300_000)
    assert out == fnapi_out


def test_provenance_records_the_keys_and_shards_the_stage_ran_with(tmp_path):
    """provenance.json's dedup params are what ran: the band-key width and shard count set from the input's size
    (the same function as the stage's), not the policy's fallbacks (4,096 shards, 8-byte keys)."""
    from lazaret.checks.near_duplicate import provenance
    from lazaret.checks.near_duplicate.shards import input_bytes
    from lazaret.checks.near_duplicate.transform import NearDuplicateClusters, used_params

    path = tmp_path / "c.jsonl"
    path.write_text("".join('{"text": "record %d"}\n' % i for i in range(100)))
    info = provenance({}, [str(path)])["params"]
    assert (info["band_key_bytes"], info["band_shards"]) == (5, 1)
    assert info == used_params({}, input_bytes([str(path)])).as_dict() == \
        NearDuplicateClusters({}, input_bytes=input_bytes([str(path)])).params.as_dict()
    # without inputs (a library caller): the policy's values, as the stage then uses
    assert (provenance({})["params"]["band_key_bytes"], provenance({})["params"]["band_shards"]) == (8, 4096)


def test_colliding_band_keys_cost_work_not_results(corpus_file, tmp_path, monkeypatch):
    """1-byte band keys (256 values a band: distinct bands collide all the time) give the clusters 8-byte keys
    give, as long as no merged bucket crosses ``max_bucket_size``: each pair is verified on full signatures.
    Only the candidate count grows."""
    from lazaret.checks.near_duplicate import transform
    section = {"max_bucket_size": 100_000}
    whole = run_pipeline(corpus_file, tmp_path / "whole", ["--runner=FnApiRunner"], section)
    monkeypatch.setattr(transform, "band_key_bytes_for", lambda n_bytes, bands: 1)
    narrow = run_pipeline(corpus_file, tmp_path / "narrow", ["--runner=FnApiRunner"], section, input_bytes=1)
    assert narrow == whole and whole[0]


def test_prepare_flushes_at_fixed_counts_within_a_bundle():
    """The read stage is one bundle per worker however large the input, so _PrepareFn must flush its exact
    groups and members at fixed counts during the bundle, not only at its end (bounded worker memory)."""
    from apache_beam.utils.windowed_value import WindowedValue

    from lazaret.checks.near_duplicate.shards import unpack_all, unpack_members
    from lazaret.checks.near_duplicate.transform import _PrepareFn

    counts = {"groups": 0, "members": 0}

    def count(out) -> None:
        """Records in one output block: members leave tagged as (shard, ("m", blob)), groups as (shard, blob)."""
        tagged = isinstance(out, beam.pvalue.TaggedOutput)
        value = out.value if tagged else out
        value = value.value if isinstance(value, WindowedValue) else value
        blob = value[1][1] if tagged else value[1]
        records = unpack_members(blob) if tagged else list(unpack_all([blob]))
        counts["members" if tagged else "groups"] += len(records)

    fn = _PrepareFn(DedupParams())
    fn.start_bundle()
    n = max(_PrepareFn.FLUSH_GROUPS, _PrepareFn.FLUSH_MEMBERS) + 10
    for i in range(n):
        for out in fn.process({"doc_id": f"d{i:06d}", "record_id": str(i), "text": f"text number {i} here"}):
            count(out)
        assert len(fn.groups) < _PrepareFn.FLUSH_GROUPS and fn.members.items < _PrepareFn.FLUSH_MEMBERS
    # flushed mid-bundle
    assert counts["groups"] >= _PrepareFn.FLUSH_GROUPS and counts["members"] >= _PrepareFn.FLUSH_MEMBERS
    for out in fn.finish_bundle():
        count(out)
    assert counts == {"groups": n, "members": n}  # nothing lost across the flushes


@pytest.mark.parametrize("edges", [0, 7])
def test_same_output_when_the_candidate_graph_is_not_one_forest(corpus_file, fnapi_out, tmp_path, edges):
    """local_forest_edges 0 (raw edges) and 7 (many small forests) make the components run their rounds
    instead of skipping them (``_ForestGateFn``); the clusters must not change."""
    out = run_pipeline(corpus_file, tmp_path, ["--runner=FnApiRunner"], {"local_forest_edges": edges})
    assert out == fnapi_out


def test_shingle_sets_equal_node_values_sets():
    from lazaret.checks.near_duplicate.signatures import node_values, shingle_sets

    rnd = random.Random(5)
    norms = [" ".join(words(rnd, rnd.randrange(5, 300))) for _ in range(30)]
    norms += [norms[0] + " " + norms[0]]  # repeated shingles
    hashes, counts = shingle_hashes(norms, N)
    values = node_values(hashes, counts, minhash_from_hashes(hashes, counts, P), P)
    assert shingle_sets(norms, N) == [v[1] for v in values]
    assert shingle_sets(norms[3:7], N) == [v[1] for v in values[3:7]]  # batch composition does not matter


def test_verified_clusters_union_find_and_unconverged_pairs():
    from lazaret.checks.near_duplicate.verify import verified_clusters

    def sim(a, b):
        return (1.0 if a[0] == b[0] else 0.0), True

    recs = {"a": (("x",), True), "b": (("x",), True), "c": (("x",), True), "d": (("y",), True),
            "e": (("x",), True), "f": (("x",), False)}
    roots = {"a": "a", "b": "a", "c": "a", "d": "a", "e": "e", "f": "a"}
    pairs = {("b", "c"): False, ("a", "c"): True, ("a", "d"): False, ("c", "e"): False, ("a", "f"): False}
    clusters, kept, rejected, across = verified_clusters(recs, roots, pairs, 0.8, sim)
    assert (kept, rejected, across) == (3, 1, {"c", "e"})  # c-e: different candidate roots, not verified
    assert list(clusters) == ["a"]
    assert clusters["a"] == [("a", ("x",), True, True), ("b", ("x",), True, False),
                             ("c", ("x",), False, True), ("f", ("x",), False, False)]


def test_pair_blocks_round_trip():
    from lazaret.checks.near_duplicate.shards import pack_pairs, unpack_pairs

    hexes = [(did("p1"), did("p2"), True), (did("p1"), did("p3"), False)]
    assert pack_pairs(hexes)[:1] == b"x" and unpack_pairs(pack_pairs(hexes)) == hexes
    texts = [("doc-1", "doc-2", False), (did("p1"), "doc-3", True)]
    assert pack_pairs(texts)[:1] == b"t" and unpack_pairs(pack_pairs(texts)) == texts
    assert unpack_pairs(pack_pairs([])) == []


def test_row_blocks_round_trip():
    from lazaret.checks.near_duplicate.shards import pack_rows, unpack_rows

    rows = [(did("r1"), did("r0"), 1, 3), (did("r2"), did("r0"), 0, 1 << 40)]
    assert pack_rows(rows, 2)[:1] == b"x" and unpack_rows(pack_rows(rows, 2)) == rows
    texts = [("doc-1", 7, 2)]
    assert pack_rows(texts, 1)[:1] == b"t" and unpack_rows(pack_rows(texts, 1)) == texts
    assert unpack_rows(pack_rows([], 1)) == []


def test_shard_count_follows_the_input_size(tmp_path):
    """A power of two near one shard per BYTES_PER_SHARD (8 MiB) of input, at most band_shards; compressed
    files count 4x; an unknown size (or a path that does not match one file) keeps band_shards."""
    from lazaret.checks.near_duplicate.shards import BYTES_PER_SHARD, input_bytes, shards_for
    assert shards_for(None, 4096) == 4096
    assert shards_for(0, 4096) == 1
    assert shards_for(BYTES_PER_SHARD, 4096) == 1
    assert shards_for(BYTES_PER_SHARD + 1, 4096) == 2
    assert shards_for(5 * BYTES_PER_SHARD, 4096) == 8
    assert shards_for(10 ** 12, 4096) == 4096
    assert shards_for(10 ** 12, 1000) == 1000
    plain, packed = tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"
    plain.write_bytes(b"x" * 100)
    packed.write_bytes(b"y" * 10)
    assert input_bytes([str(plain), str(packed)]) == 140
    assert input_bytes([str(tmp_path / "missing.jsonl")]) is None
    assert input_bytes([]) == 0
    assert input_bytes([str(plain)] * 1001) is None  # too many files to size: band_shards


def test_band_key_width_follows_the_input_size():
    """5 bytes up to ~117 MB of input (at 1 KiB a record, 1/8 expected colliding pairs of distinct band values),
    6, 7, then 8 (the whole hash), which is also the width when the size is unknown."""
    from lazaret.checks.near_duplicate.signatures import band_key_bytes_for
    assert band_key_bytes_for(None, 21) == 8
    assert band_key_bytes_for(0, 21) == 5
    assert band_key_bytes_for(70_300_000, 21) == 5  # all of T0 as JSONL
    assert band_key_bytes_for(120_000_000, 21) == 6
    assert band_key_bytes_for(10 ** 10, 21) == 7
    assert band_key_bytes_for(10 ** 12, 21) == 8
    assert band_key_bytes_for(117_000_000, 84) == 6  # more bands, more chances to collide


@pytest.mark.parametrize("width", [5, 6, 7])
def test_narrow_band_keys_are_the_low_bytes_of_the_whole_hash(width):
    """A narrow key is the whole key's low bytes, so its band shard and home (``key mod shards``, shards a
    power of two) are the whole key's; ``keys_to_bytes`` / ``keys_from_bytes`` round-trip it."""
    import dataclasses

    from lazaret.checks.near_duplicate.shards import home_of
    from lazaret.checks.near_duplicate.signatures import band_keys, keys_from_bytes, keys_to_bytes
    rnd = np.random.default_rng(width)
    sigs = rnd.integers(0, 2 ** 32, size=(200, P.num_perm), dtype=np.uint64).astype(np.uint32)
    whole, narrow = band_keys(sigs, P), band_keys(sigs, dataclasses.replace(P, band_key_bytes=width))
    assert narrow.dtype == np.int64 and narrow.min() >= 0 and narrow.max() < 2 ** (8 * width)
    assert (narrow == (whole.view(np.uint64) & np.uint64(2 ** (8 * width) - 1)).view(np.int64)).all()
    for shards in (1, 16, 4096):
        assert [home_of(k, shards) for k in narrow[:, 0]] == [home_of(k, shards) for k in whole[:, 0]]
    for keys, w in ((narrow, width), (whole, 8)):
        data = keys_to_bytes(keys, w)
        assert data.shape == (keys.size, w)
        assert (keys_from_bytes(data.tobytes(), w).reshape(keys.shape) == keys).all()


def test_member_blocks_round_trip():
    """Members travel with raw hex ids and pickled columns, or as pickled rows when an id is not hex."""
    from lazaret.checks.near_duplicate.shards import pack_members, unpack_members
    rows = [(did("k1"), did("a"), "r-1", "", 7), (did("k1"), did("b"), None, "snip", 0)]
    assert pack_members(rows)[:1] == b"x" and unpack_members(pack_members(rows)) == rows
    for other in ([("raw text key", did("a"), 1, "", 3)], [(did("k"), "doc-1", "r", "", 2)], []):
        assert unpack_members(pack_members(other)) == other
