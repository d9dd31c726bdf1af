"""``NearDuplicates``: exact + MinHash near-duplicate clustering as Beam transforms.

Data flow (every arrow that changes the key is a shuffle; nothing collects the corpus on one worker):

  records -> exact entries (with band keys) + members + node records   exact key = hash of normalised text;
                                                       signatures per bundle, numpy, datasketch affine32
          -> GroupByKey(shard of exact key)            one representative per exact group (smallest doc_id)
          -> GroupByKey(shard of band keys)            LSH buckets -> candidate pairs, capped (banding.py)
          -> LocalForest + ConnectedComponents         of the candidate graph, large-star/small-star
          -> node records meet their labels at home    home = shard of the first band key (_AtHomeFn)
          -> group by shard of the candidate root      Jaccard of every pair (exact where cheap), clusters by
                                                       union-find, cluster id = smallest doc_id, Jaccard of
                                                       each member to the representative (verify.py)
  -> GroupByKey(shard of exact_key) with every record  exactly one finding per input record
  -> CombinePerKey(cluster_id)                         cluster summaries (size, members, evidence)

Shuffles keyed by a shard carry packed, compressed blobs, one element per (bundle, shard): see shards.py
for why.

Chain policy (A~B~C, A and C dissimilar): the representative is the smallest doc_id of the connected
component; a member is dropped only when its Jaccard *to the representative* is >= threshold.
Members linked only through others stay in clean/ (action none) but keep the cluster_id, so the report
shows them. Records with fewer words than ``ngram`` are exact-match only and never enter MinHash.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from lazaret.checks.findings import make_finding
from lazaret.checks.near_duplicate.banding import BucketPairsFn
from lazaret.checks.near_duplicate.components import ConnectedComponents, LocalForestFn
from lazaret.checks.near_duplicate.exact import SIZE, ExactShardFn, merge_group, pack_groups
from lazaret.checks.near_duplicate.normalise import prepare
from lazaret.checks.near_duplicate.params import DedupParams
from lazaret.checks.near_duplicate.shards import (ShardBuffer, home_of, pack_members, pack_pairs, pack_rows,
                                                  pack_texts, shard_of, shards_for, unpack, unpack_members,
                                                  unpack_pairs, unpack_rows)
from lazaret.checks.near_duplicate.signatures import (band_key_bytes_for, band_keys, keys_to_bytes,
                                                      minhash_from_hashes, node_values, shingle_hashes, shingle_sets,
                                                      similarity)
from lazaret.checks.near_duplicate.verify import FLUSH_ITEMS, LABEL, NODE, PAIR, verified_clusters

CHECK = "near_duplicate"


class _PrepareFn(beam.DoFn):
    """Records -> exact-group entries, node records and members.

    Main output: (shard of exact key, packed ((exact_key, smallest doc_id, n_tokens, count, band keys), ...)),
    copies of one text merged over the bundle, with the LSH band keys of the texts of at least ``ngram``
    words (exact.py: the band keys cross the exact shuffle, not the text). Output ``nodes``: (home shard,
    ("n", packed node records (sig, norm, n, shard of exact_key, 1, doc_id))) for the same texts, where
    their labels will find them (``_AtHomeFn``, verify.py). Output ``members``: (shard, ("m",
    ((exact_key, doc_id, record_id, snippet, n_tokens), ...))) for the findings join. The heavy record dict
    stops here. The snippet is raw text; it is masked (``evidence_fn``) only for the few members shown in
    summaries. Without ``snippets`` it is empty: a scan's cluster rows take their evidence from the decision
    step (``checks.clusters.cluster_row``), so a snippet of every record would cross two shuffles for nothing
    (0.2 bytes per input byte on T0 5k).

    A node record carries the shard of its exact key (a small int), not the 32-character key: the findings
    join finds a node's assignment by its doc_id, which is the smallest doc_id of its exact group. It carries
    the normalised text where ``node_values`` gives a shingle set, and the set is rebuilt where pairs are
    verified (``_VerifyClustersFn``, ``signatures.shingle_sets``). Why: text compresses where 4-byte shingle
    hashes do not, and a candidate component's records are near-duplicate texts, which fold.
    """

    MEMBERS = "members"
    NODES = "nodes"
    # What a bundle holds before it flushes: distinct texts (each with its normalised text) and members
    # (each with a snippet). The read stage is one bundle per worker however large the input, so these
    # bound its memory; they are set below what a 1x T0 worker sees (~27,600 records), so a bigger corpus
    # holds no more: at 32,768 / 65,536 the 4x worker peaked at 354-368 MB against 294-298 MB at 1x
    # (2 workers, bench/dedup_speed.py --modes beam-mp); at these values 278-279 / 298-300 MB at 1x / 4x.
    # Smaller flushes make more, smaller shuffle elements: 4-12% more CPU in-process (two runs each).
    FLUSH_GROUPS = 1 << 13
    FLUSH_MEMBERS = 1 << 14

    def __init__(self, params: DedupParams, snippets: bool = True) -> None:
        self.params = params
        self.snippet_chars = params.evidence_chars if snippets else 0
        self.records = Metrics.counter("dedup", "records")
        self.short = Metrics.counter("dedup", "short_records_exact_only")
        self.groups: Dict[str, List] = {}
        self.members: Optional[ShardBuffer] = None

    def start_bundle(self) -> None:
        self.groups = {}
        self.members = ShardBuffer(self.params.band_shards, self.FLUSH_MEMBERS, pack_members)

    def process(self, record: Mapping[str, Any]):
        text = record.get("text") or ""
        norm, key, n_tokens = prepare(text)
        doc_id = record["doc_id"]
        self.records.inc()
        if n_tokens < self.params.ngram:
            self.short.inc()
        merge_group(self.groups, key, doc_id, norm, n_tokens, 1)
        self.members.add(key, (key, doc_id, record.get("record_id"), text[: self.snippet_chars], n_tokens))
        if len(self.groups) >= self.FLUSH_GROUPS:
            yield from self._drain_groups(lambda v: v)
        if self.members.full:
            for shard, block in self.members.drain():
                yield beam.pvalue.TaggedOutput(self.MEMBERS, (shard, ("m", block)))

    def finish_bundle(self):
        yield from self._drain_groups(GlobalWindows.windowed_value)
        for shard, block in self.members.drain():
            yield beam.pvalue.TaggedOutput(self.MEMBERS, GlobalWindows.windowed_value((shard, ("m", block))))

    def _drain_groups(self, wrap):
        groups, self.groups = self.groups, {}
        p = self.params
        keys: Dict[str, bytes] = {}
        nodes = ShardBuffer(p.band_shards, len(groups) + 1, pack_texts)
        todo = sorted((g[0], g[1], key) for key, g in groups.items() if g[2] >= p.ngram)
        for lo in range(0, len(todo), p.batch_size):
            batch = todo[lo:lo + p.batch_size]
            hashes, counts = shingle_hashes([b[1] for b in batch], p.ngram)
            sigs = minhash_from_hashes(hashes, counts, p)
            values = node_values(hashes, counts, sigs, p)
            bands = band_keys(sigs, p)
            narrow = keys_to_bytes(bands, p.band_key_bytes).reshape(len(batch), -1)
            for (doc_id, norm, key), (sig_b, set_b, n), row, row_b in zip(batch, values, bands, narrow):
                keys[key] = row_b.tobytes()
                nodes.add_to(home_of(row[0], p.band_shards),
                             (sig_b, norm if set_b else "", n, shard_of(key, p.band_shards), 1, doc_id))
        for block in pack_groups(groups, keys, p.band_shards):
            yield wrap(block)
        for shard, blob in nodes.drain():
            yield beam.pvalue.TaggedOutput(self.NODES, wrap((shard, (NODE, blob))))


class _ToRootFn(beam.DoFn):
    """Candidate labels (in the components' last shuffle, keyed by the shard of the node), joined with each
    node's home shard and exact size and with the candidate pairs of the shard's smaller ends.

    Main output: (home shard, ("l", ``shards.pack_rows`` (node, root, converged, exact size))), where the node's record
    waits (``_AtHomeFn``). Output ``pairs``: (shard of root, ("p", ``shards.pack_pairs`` (a, b, degraded))),
    to the verification (verify.py): a pair arrives at the shard of its smaller end, whose label names the
    component of both ends."""

    PAIRS = "pairs"

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self.labels: Optional[ShardBuffer] = None
        self.pairs: Optional[ShardBuffer] = None

    def start_bundle(self) -> None:
        self.labels = ShardBuffer(self.shards, FLUSH_ITEMS, lambda rows: pack_rows(rows, 2))
        self.pairs = ShardBuffer(self.shards, FLUSH_ITEMS, pack_pairs)

    def process(self, element):
        _shard, (labels, extra) = element
        roots = {node: (root, converged) for node, root, converged in unpack(labels)}
        homes = {doc_id: (home, size)
                 for tag, blob in extra if tag == SIZE for doc_id, home, size in unpack_rows(blob)}
        for node in sorted(roots):
            home, size = homes[node]
            self.labels.add_to(home, (node, roots[node][0], int(roots[node][1]), size))
        pairs = []
        for tag, blob in extra:
            if tag == PAIR:
                for a, b, degraded in unpack_pairs(blob):
                    found = roots.get(a)
                    if found is None:
                        raise ValueError(f"dedup: candidate pair end {a} has no candidate component")
                    pairs.append((found[0], a, b, degraded))
        for root, a, b, degraded in sorted(pairs):
            self.pairs.add(root, (a, b, degraded))
        if self.labels.full or self.pairs.full:
            yield from self._drain(lambda v: v)

    def finish_bundle(self):
        yield from self._drain(GlobalWindows.windowed_value)

    def _drain(self, wrap):
        for shard, blob in self.labels.drain():
            yield wrap((shard, (LABEL, blob)))
        for shard, blob in self.pairs.drain():
            yield beam.pvalue.TaggedOutput(self.PAIRS, wrap((shard, (PAIR, blob))))


class _AtHomeFn(beam.DoFn):
    """Per home shard: node records meet their candidate labels and leave for the shard of their root.

    Output: (shard of root, ("n", packed ((root, node, record without doc_id, converged), ...))), sorted by
    root and node. Why the home: a node record's shard is that of its first band key (``shards.home_of``),
    so this shuffle's blocks gather near-duplicate texts and compress; keyed by the doc_id's shard they held
    one or two unrelated texts each on the T0 5k slice. Records without a label (no candidate pair) stop here.
    """

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self.out: Optional[ShardBuffer] = None

    def start_bundle(self) -> None:
        self.out = ShardBuffer(self.shards, FLUSH_ITEMS, pack_texts)

    def process(self, element):
        _shard, values = element
        labels = {node: (root, bool(converged), size)
                  for tag, blob in values if tag == LABEL for node, root, converged, size in unpack_rows(blob)}
        if not labels:
            return
        found = []
        for tag, blob in values:
            if tag == NODE:
                for rec in unpack(blob):
                    lab = labels.get(rec[5])
                    if lab is not None:
                        found.append((lab[0], rec[5], rec[:4] + (lab[2],), lab[1]))
        for entry in sorted(found, key=lambda e: e[:2]):
            self.out.add(entry[0], entry)
        if self.out.full:
            for shard, blob in self.out.drain():
                yield shard, (NODE, blob)

    def finish_bundle(self):
        for shard, blob in self.out.drain():
            yield GlobalWindows.windowed_value((shard, (NODE, blob)))


class _VerifyClustersFn(beam.DoFn):
    """Per shard of candidate roots: verify the candidate pairs, the verified clusters by union-find, then the
    Jaccard of every member to its representative (verify.py); one assignment per member, packed by the
    shard of its exact key for the findings join: (shard, ("n", ((node doc_id, assignment), ...))); the node
    is its exact group's representative."""

    def __init__(self, threshold: float, shards: int, ngram: int) -> None:
        self.threshold = threshold
        self.shards = shards
        self.ngram = ngram
        self.out: Optional[ShardBuffer] = None
        self.kept = Metrics.counter("dedup", "verified_edges")
        self.rejected = Metrics.counter("dedup", "rejected_candidate_pairs")
        self.across = Metrics.counter("dedup", "pairs_across_unconverged")
        self.clusters = Metrics.counter("dedup", "near_duplicate_clusters")
        self.chain_kept = Metrics.counter("dedup", "chain_members_kept")
        # what one shard holds: the records of whole candidate components (verify.py)
        self.component_nodes = Metrics.distribution("dedup", "candidate_component_nodes")
        self.cluster_nodes = Metrics.distribution("dedup", "cluster_nodes")

    def start_bundle(self) -> None:
        self.out = ShardBuffer(self.shards, FLUSH_ITEMS)

    def process(self, element):
        _shard, blocks = element
        records: Dict[str, Tuple[Any, bool]] = {}
        roots: Dict[str, str] = {}
        pairs: Dict[Tuple[str, str], bool] = {}
        for tag, blob in blocks:
            if tag == NODE:
                for root, node, rec, converged in unpack(blob):
                    records[node] = (rec, converged)
                    roots[node] = root
            else:
                for a, b, degraded in unpack_pairs(blob):
                    pairs[(a, b)] = pairs.get((a, b), True) and degraded
        with_text = [x for x in sorted(records) if records[x][0][1]]
        for x, set_b in zip(with_text, shingle_sets([records[x][0][1] for x in with_text], self.ngram)):
            (sig_b, _norm, n, key_shard, size), converged = records[x]
            records[x] = ((sig_b, set_b, n, key_shard, size), converged)
        clusters, kept, rejected, across = verified_clusters(records, roots, pairs, self.threshold, similarity)
        self.kept.inc(kept)
        self.rejected.inc(rejected)
        self.across.inc(len(across))
        for size in collections.Counter(roots.values()).values():
            self.component_nodes.update(size)
        for root in sorted(clusters):
            self.cluster_nodes.update(len(clusters[root]))
            self._score(root, clusters[root])
        if self.out.full:
            for shard, block in self.out.drain():
                yield shard, ("n", block)

    def finish_bundle(self):
        for shard, block in self.out.drain():
            yield GlobalWindows.windowed_value((shard, ("n", block)))

    def _score(self, root: str, members: List) -> None:
        rep = next(m[1] for m in members if m[0] == root)
        n_docs = len(members)
        n_records = sum(m[1][4] for m in members)
        converged = all(m[2] for m in members)
        degraded = any(m[3] for m in members)
        self.clusters.inc()
        for node, rec, _c, _d in members:
            j, exact = (1.0, True) if node == root else similarity(rec, rep)
            dropped = node != root and j >= self.threshold
            if node != root and not dropped:
                self.chain_kept.inc()
            self.out.add_to(rec[3], (node, (root, j, exact, dropped, n_docs, n_records, converged, degraded)))


# an assignment crosses the findings join as a tuple of these (names pickled with every value were a third of it)
ASSIGNMENT = ("cluster_id", "score", "exact", "dropped", "n_docs", "n_records", "converged", "degraded")


def _jac(a: Mapping[str, Any]) -> str:
    return f"Jaccard {a['score']:.3f}" if a.get("exact") else f"estimated Jaccard {a['score']:.3f}"


def _flags(a: Mapping[str, Any]) -> str:
    notes = []
    if a.get("degraded"):
        notes.append("; candidate search capped in an oversized LSH bucket")
    if not a.get("converged", True):
        notes.append("; connected components not converged (cluster may be split)")
    return "".join(notes)


class _FindingsFn(beam.DoFn):
    """Join by the shard of the exact key: exactly one finding per record, plus cluster-summary entries."""

    CLUSTERS = "clusters"

    def __init__(self, params: DedupParams) -> None:
        self.params = params
        self.n = {a: Metrics.counter("dedup", f"findings_{a}") for a in ("drop_duplicate", "none")}

    def process(self, element):
        _shard, values = element
        # pass 1: per exact key (representative, size, n_tokens) and the cluster assignments by node (a node is
        # the representative of its exact group: its smallest doc_id); the state is one
        # entry per distinct text of the shard, so a group of millions of exact copies needs no list in memory
        groups: Dict[str, List] = {}
        assigned: Dict[str, Mapping[str, Any]] = {}
        for tag, block in values:
            if tag == "n":
                assigned.update((node, dict(zip(ASSIGNMENT, values))) for node, values in unpack(block))
                continue
            for key, doc_id, _record_id, _snippet, n_tok in unpack_members(block):
                g = groups.get(key)
                if g is None:
                    groups[key] = [doc_id, 1, n_tok]
                else:
                    g[1] += 1
                    if doc_id < g[0]:
                        g[0], g[2] = doc_id, n_tok
        # pass 2 (GroupByKey values are re-iterable)
        for tag, block in values:
            if tag != "m":
                continue
            for key, doc_id, record_id, snippet, _ in unpack_members(block):
                ex_rep, ex_size, n_tokens = groups[key]
                yield from self._member(doc_id, record_id, snippet, assigned.get(ex_rep), ex_rep, ex_size, n_tokens)

    def _member(self, doc_id, record_id, snippet, a, ex_rep, ex_size, n_tokens):
        """The finding of one record (and its cluster-summary entry) from its exact group and assignment."""
        p = self.params
        rec = {"doc_id": doc_id, "record_id": record_id}
        if a is not None:
            cid, root = a["cluster_id"], a["cluster_id"]
            size = a["n_records"]
            flags = _flags(a)
            if doc_id == ex_rep:
                if doc_id == root:
                    f = make_finding(rec, CHECK, "minhash", "all", 1.0,
                                     f"representative of near-duplicate cluster of {size} records "
                                     f"({a['n_docs']} distinct texts){flags}", "none", cid, None)
                elif a["dropped"]:
                    f = make_finding(rec, CHECK, "minhash", "all", a["score"],
                                     f"near-duplicate ({_jac(a)}) of {root}; "
                                     f"cluster of {size} records{flags}", "drop_duplicate", cid, root)
                else:
                    f = make_finding(rec, CHECK, "minhash", "all", a["score"],
                                     f"kept: in cluster {cid} of {size} records through other members, but "
                                     f"{_jac(a)} to the representative is below "
                                     f"{p.threshold}{flags}", "none", cid, None)
            elif a["dropped"]:
                f = make_finding(rec, CHECK, "minhash", "all", a["score"],
                                 f"exact copy of {ex_rep}, a near-duplicate ({_jac(a)}) of {root}; "
                                 f"cluster of {size} records{flags}",
                                 "drop_duplicate", cid, root)
            else:
                f = make_finding(rec, CHECK, "exact", "all", 1.0,
                                 f"exact duplicate (normalised text) of {ex_rep}; exact group of {ex_size}, "
                                 f"in near-duplicate cluster {cid} of {size} records{flags}",
                                 "drop_duplicate", cid, ex_rep)
        elif ex_size > 1:
            cid = ex_rep
            if doc_id == ex_rep:
                f = make_finding(rec, CHECK, "exact", "all", 1.0,
                                 f"representative of exact-duplicate group of {ex_size} records",
                                 "none", cid, None)
            else:
                f = make_finding(rec, CHECK, "exact", "all", 1.0,
                                 f"exact duplicate (normalised text) of {ex_rep}; group of {ex_size} records",
                                 "drop_duplicate", cid, ex_rep)
        else:
            if n_tokens < p.ngram:
                detail = (f"no exact duplicate; {n_tokens} words < ngram {p.ngram}, "
                          f"so not checked for near-duplicates")
            else:
                detail = "no duplicate found"
            f = make_finding(rec, CHECK, "none", "all", 0.0, detail, "none", None, None)
        self.n[f["action"]].inc()
        yield f
        if f["cluster_id"] is not None:
            kind = "minhash" if a is not None else "exact"
            info = (a or {})
            yield beam.pvalue.TaggedOutput(self.CLUSTERS, (f["cluster_id"], (
                doc_id, snippet, f["action"] == "drop_duplicate", kind,
                bool(info.get("degraded", False)), bool(info.get("converged", True)))))


class ClusterSummaryFn(beam.CombineFn):
    """Per cluster: size, representative, the smallest ``cap`` member doc_ids with snippets (bounded).

    The accumulator is a list [size, dropped, minhash, degraded, converged, members], not a dict: accumulators
    cross the summaries' shuffle (combiner lifting), and a dict's six key names and the kind's name were
    pickled with every one of them (T0 5k: Summaries 0.045 -> 0.037 bytes per input byte)."""

    def __init__(self, cap: int, evidence_members: int) -> None:
        self.cap = cap
        self.evidence_members = evidence_members

    def create_accumulator(self):
        return [0, 0, False, False, True, []]

    def add_input(self, acc, value):
        doc_id, snippet, dropped, kind, degraded, converged = value
        acc[0] += 1
        acc[1] += int(dropped)
        acc[2] = acc[2] or kind == "minhash"
        acc[3] = acc[3] or degraded
        acc[4] = acc[4] and converged
        members = acc[5]
        members.append((doc_id, snippet))
        if len(members) > 2 * self.cap:
            acc[5] = sorted(members)[: self.cap]
        return acc

    def merge_accumulators(self, accs):
        out = self.create_accumulator()
        for a in accs:
            out[0] += a[0]
            out[1] += a[1]
            out[2] = out[2] or a[2]
            out[3] = out[3] or a[3]
            out[4] = out[4] and a[4]
            out[5].extend(a[5])
            out[5] = sorted(out[5])[: self.cap]
        return out

    def extract_output(self, acc):
        size, dropped, minhash, degraded, converged, members = acc
        members = sorted(members)[: self.cap]
        return {"size": size, "dropped": dropped, "kind": "minhash" if minhash else "exact",
                "degraded": degraded, "converged": converged,
                "members": [m[0] for m in members],
                "members_truncated": size > len(members),
                "evidence": [{"doc_id": d, "snippet": s} for d, s in members[: self.evidence_members]]}


def _summary(kv, evidence_fn: Optional[Callable[[str], str]] = None) -> Dict[str, Any]:
    """The cluster summary dict; ``evidence_fn`` (e.g. the PII masker) runs only on the few evidence snippets."""
    cid, s = kv
    notes = []
    if s["degraded"]:
        notes.append("candidate search capped in an oversized LSH bucket")
    if not s["converged"]:
        notes.append("connected components did not converge within max_cc_rounds")
    return {"cluster_id": cid, "kind": s["kind"], "size": s["size"], "dropped": s["dropped"],
            "representative": cid, "members": s["members"], "members_truncated": s["members_truncated"],
            "evidence": [{"doc_id": e["doc_id"],
                          "snippet": evidence_fn(e["snippet"]) if evidence_fn else e["snippet"]}
                         for e in s["evidence"]],
            "notes": notes}


def used_params(section: Optional[Mapping[str, Any]], input_bytes: Optional[int]) -> DedupParams:
    """The policy's parameters with what the input's size sets: the shuffles' shard count (``shards_for``) and
    the band keys' width (``band_key_bytes_for``). One function for the stage and its provenance entry."""
    params = DedupParams.from_section(section)
    return dataclasses.replace(params, band_shards=shards_for(input_bytes, params.band_shards),
                               band_key_bytes=band_key_bytes_for(input_bytes, params.bands))


class NearDuplicateClusters(beam.PTransform):
    """records -> {"findings": one finding per record, "clusters": one summary dict per cluster}.

    ``section`` is the validated policy ``dedup`` section (plain dict). ``evidence_fn`` (optional, must
    pickle) masks snippets before they leave the transform, e.g. the PII stage's masker. ``snippets=False``
    leaves the summaries' ``evidence`` empty and keeps record text out of the stage's shuffles (what the
    scan uses: its cluster rows take evidence from the decision step). ``input_bytes`` (``shards.input_bytes``
    of the scan's inputs) sets the shard count of the stage's shuffles (``shards.shards_for``) and the width
    of its band keys (``signatures.band_key_bytes_for``); without it the count is the policy's ``band_shards``
    and the keys are 8 bytes.
    """

    def __init__(self, section: Optional[Mapping[str, Any]] = None,
                 evidence_fn: Optional[Callable[[str], str]] = None, snippets: bool = True,
                 input_bytes: Optional[int] = None) -> None:
        super().__init__()
        self.params = used_params(section, input_bytes)
        self.evidence_fn = evidence_fn
        self.snippets = snippets

    def expand(self, records):
        p = self.params
        prepared = records | "Prepare" >> beam.ParDo(_PrepareFn(p, self.snippets)).with_outputs(
            _PrepareFn.MEMBERS, _PrepareFn.NODES, main="exact")
        reps = (prepared.exact
                | "ExactGroups" >> beam.GroupByKey()
                | "ExactReps" >> beam.ParDo(ExactShardFn(p)).with_outputs(ExactShardFn.SIZES, main="bands"))
        pairs = (reps.bands
                 | "BandGroup" >> beam.GroupByKey()
                 | "BucketPairs" >> beam.ParDo(BucketPairsFn(p.max_bucket_size, p.bucket_anchors, p.band_shards)
                                               ).with_outputs(BucketPairsFn.EDGES, main="pairs"))
        forest = pairs[BucketPairsFn.EDGES] | "LocalForest" >> beam.ParDo(LocalForestFn(
            p.local_forest_edges)).with_outputs(LocalForestFn.FORESTS, main="edges")
        labels = ((forest.edges, (reps[ExactShardFn.SIZES], pairs.pairs))
                  | "Components" >> ConnectedComponents(p.max_cc_rounds, p.band_shards,
                                                        forest[LocalForestFn.FORESTS])
                  | "ToRoot" >> beam.ParDo(_ToRootFn(p.band_shards)).with_outputs(_ToRootFn.PAIRS, main="labels"))
        at_home = ((labels.labels, prepared[_PrepareFn.NODES])
                   | "FlattenHome" >> beam.Flatten()
                   | "HomeGroup" >> beam.GroupByKey()
                   | "AtHome" >> beam.ParDo(_AtHomeFn(p.band_shards)))
        assignments = ((at_home, labels[_ToRootFn.PAIRS])
                       | "FlattenClusters" >> beam.Flatten()
                       | "ClusterGroup" >> beam.GroupByKey()
                       | "VerifyClusters" >> beam.ParDo(_VerifyClustersFn(p.threshold, p.band_shards, p.ngram)))
        out = ((prepared[_PrepareFn.MEMBERS], assignments)
               | "FlattenRecords" >> beam.Flatten()
               | "JoinRecords" >> beam.GroupByKey()
               | "Findings" >> beam.ParDo(_FindingsFn(p)).with_outputs(_FindingsFn.CLUSTERS, main="findings"))
        clusters = (out[_FindingsFn.CLUSTERS]
                    | "Summaries" >> beam.CombinePerKey(ClusterSummaryFn(
                        p.summary_members, p.evidence_members if self.snippets else 0))
                    | "SummaryDict" >> beam.Map(_summary, self.evidence_fn))
        return {"findings": out.findings, "clusters": clusters}


class NearDuplicates(beam.PTransform):
    """records -> findings only (the shape every check returns). Use NearDuplicateClusters for summaries."""

    def __init__(self, section: Optional[Mapping[str, Any]] = None,
                 evidence_fn: Optional[Callable[[str], str]] = None) -> None:
        super().__init__()
        self.section = section
        self.evidence_fn = evidence_fn

    def expand(self, records):
        return (records | "Clusters" >> NearDuplicateClusters(self.section, self.evidence_fn,
                                                              snippets=False))["findings"]
