"""The findings of a record meet its locator in the shuffle that writes ``findings/``: one shuffle, not two.

Why: ``findings/`` is sharded by doc_id (``io.writers``: shard = doc_id hash mod shard count), so the shard
writer of a doc_id already receives every finding of that record. Its locator (doc_id -> the block of the file
it lies in, which the mix needs and a finding does not say) is sent to the same shard, and the decisive
findings carry the few values a decision reads beyond the ``findings/`` row (action, cluster, spans,
evidence). The writer writes the shard as before and hands each decided record's findings to ``Decide``.
Before, a second shuffle keyed by doc_id (``Join``: every decisive finding and every locator, one element
each) carried 0.29 bytes per input byte on T0; here the same values ride in the writer's batches
(``io.writers._PackBatches``), where the repeated check, rule and block values fold.

The shard count is the ``findings/`` row count's, as before (locators are not rows), so the files do not change.
"""

from __future__ import annotations

import hashlib
import pickle
from typing import Any, Callable, Dict, Iterator, List, Tuple

import apache_beam as beam

from lazaret.graph.decide import decisive
from lazaret.io.schemas import CLUSTERS, FINDINGS
from lazaret.io.writers import ShardSpec, _PackBatches, _zipper, batch_values, write_shard

#: a finding's ``findings/`` row values (schema order), then, for a decisive finding, these values too
ROW_FIELDS = tuple(FINDINGS.names)
EXTRA_FIELDS = ("action", "cluster_id", "duplicate_of", "spans", "evidence")
#: what :func:`lazaret.graph.decide.decide` reads of a finding
DECISION_FIELDS = ("check", "rule", "side", "score", "detail") + EXTRA_FIELDS
_ROW_AT = {name: i for i, name in enumerate(ROW_FIELDS)}
_DOC = _ROW_AT["doc_id"]
assert len(ROW_FIELDS) + 1 != 2, "WriteAndGather tells findings from locators by their length"


def _hash(doc_id: str) -> int:
    # the writers' shard hash of a doc_id (io.writers._key_and_pickle with key_field="doc_id")
    return int(doc_id[:12], 16)


def key_finding(f: Dict[str, Any]) -> Tuple[int, bytes]:
    """(shard hash, pickled row values + (extra values or None,)). Extras only for a decisive finding, and its
    evidence only when it can be a reason (quarantine/ reads the evidence of reasons only)."""
    row = tuple(f.get(k) for k in ROW_FIELDS)
    extras = None
    if decisive(f):
        extras = [f.get(k) for k in EXTRA_FIELDS]
        if f["action"] not in ("quarantine", "drop_duplicate") and f["check"] != "malformed":
            extras[-1] = None
        extras = tuple(extras)
    return _hash(f["doc_id"]), pickle.dumps(row + (extras,), protocol=pickle.HIGHEST_PROTOCOL)


def key_locator(doc_id: str, at: int) -> Tuple[int, bytes]:
    """(shard hash, pickled (doc_id, block key)): where a record lies, for its decision's way to the mix. Two
    values, where a finding has eight (how :class:`WriteAndGather` tells them apart)."""
    return _hash(doc_id), pickle.dumps((doc_id, at), protocol=pickle.HIGHEST_PROTOCOL)


class JoinInShards(beam.PTransform):
    """Rows and the values that must meet them, in one writer's shuffle: {main: rows, side: values} -> ((shard, shard
    count), [packed batches]) grouped (the count in the key: ``io.writers._assign``). ``key_main`` / ``key_side``
    give each its (shard hash, pickled values); the shard count is the rows' (the side values ride along), and the
    batches are packed per bundle and shard. One transform for both joins below, which differ only in what they
    key."""

    def __init__(self, rows_per_shard: int, batch_rows: int, main: str, side: str,
                 key_main: Callable[..., Tuple[int, bytes]], key_side: Callable[..., Tuple[int, bytes]],
                 labels: Tuple[str, str]) -> None:
        super().__init__()
        self.rows_per_shard = rows_per_shard
        self.batch_rows = batch_rows
        self.main, self.side = main, side
        self.key_main, self.key_side = key_main, key_side
        self.labels = labels  # the two keying steps' labels (stage names runners show)

    def expand(self, inputs):
        keyed = inputs[self.main] | self.labels[0] >> beam.Map(self.key_main)
        count = keyed | "Count" >> beam.combiners.Count.Globally()
        side = inputs[self.side] | self.labels[1] >> beam.Map(self.key_side)
        grouped = ((keyed, side)
                   | "Both" >> beam.Flatten()
                   | "PackBatches" >> beam.ParDo(_PackBatches(self.rows_per_shard, self.batch_rows),
                                                 beam.pvalue.AsSingleton(count))
                   | "GroupShard" >> beam.GroupByKey())
        return grouped


def _key_located(kv: Tuple[str, int]) -> Tuple[int, bytes]:
    return key_locator(*kv)


def JoinFindings(rows_per_shard: int, batch_rows: int) -> JoinInShards:
    """{'findings': finding dicts, 'located': (doc_id, block key)} -> findings and locators in ``findings/``'s
    shards (:class:`JoinInShards`)."""
    return JoinInShards(rows_per_shard, batch_rows, "findings", "located", key_finding,
                        _key_located, ("KeyFindings", "KeyLocators"))


class WriteAndGather(beam.DoFn):
    """((shard, shard count), [packed batches]) -> the ``findings/`` shard's path, and (tagged DECIDED) (doc_id,
    block key, [decisive finding as a dict of DECISION_FIELDS]) for every record of the shard with decisive
    findings and a locator (a record read from the input). A shard with no finding rows writes no file, as before."""

    DECIDED = "decided"

    def __init__(self, spec: ShardSpec) -> None:
        self.spec = spec

    def process(self, element: Tuple[Tuple[int, int], Any]) -> Iterator[Any]:
        (shard, total), batches = element
        rows: List[Tuple[Any, ...]] = []
        at: Dict[str, int] = {}
        decisive_of: Dict[str, List[Dict[str, Any]]] = {}
        for batch in batches:
            for value in batch_values(batch):
                if len(value) == 2:
                    at[value[0]] = value[1]
                    continue
                row, extras = value[:-1], value[-1]
                rows.append(row)
                if extras is not None:
                    decisive_of.setdefault(row[_DOC], []).append(
                        dict(zip(DECISION_FIELDS, tuple(row[_ROW_AT[k]] for k in DECISION_FIELDS[:5]) + extras)))
        if rows:
            yield write_shard(self.spec, shard, total, rows, _zipper(self.spec.fields))
        for doc_id in sorted(decisive_of):
            if doc_id in at:
                yield beam.pvalue.TaggedOutput(self.DECIDED, (doc_id, at[doc_id], decisive_of[doc_id]))


#: a cluster row's values as they cross the shuffle: ``clusters/``'s columns but its evidence (filled here)
CLUSTER_FIELDS = tuple(n for n in CLUSTERS.names if n != "evidence")
_CLUSTER_AT = {name: i for i, name in enumerate(CLUSTER_FIELDS)}
assert len(CLUSTER_FIELDS) != 2, "WriteClusterShard tells rows from evidence by their length"


def _cluster_hash(cluster_key: str) -> int:
    # the writers' shard hash of a cluster row (key_field "cluster_key": the sha256 of "check:cluster_id")
    return int(hashlib.sha256(cluster_key.encode()).hexdigest()[:12], 16)


def key_cluster(row: Dict[str, Any]) -> Tuple[int, bytes]:
    """(shard hash, pickled row values without evidence): a cluster row in ``clusters/``'s shards."""
    return int(row["cluster_key"][:12], 16), pickle.dumps(tuple(row.get(k) for k in CLUSTER_FIELDS),
                                                          protocol=pickle.HIGHEST_PROTOCOL)


def key_evidence(kv: Tuple[str, List[Tuple[str, str]]]) -> Tuple[int, bytes]:
    """(shard hash, pickled ("check:cluster_id", [(doc_id, masked snippet)])): a mix's snippets of one cluster,
    sent to the shard its row is written in. Two values, where a row has len(CLUSTER_FIELDS) (seven)."""
    return _cluster_hash(kv[0]), pickle.dumps(kv, protocol=pickle.HIGHEST_PROTOCOL)


def JoinClusterEvidence(rows_per_shard: int, batch_rows: int) -> JoinInShards:
    """{'rows': cluster rows, 'evidence': (cluster key, [(doc_id, snippet)]) from the mix}: a cluster's row and
    its masked snippets meet in the shuffle that writes ``clusters/`` (before, a join keyed by cluster and then
    the writer's shuffle: two) (:class:`JoinInShards`)."""
    return JoinInShards(rows_per_shard, batch_rows, "rows", "evidence", key_cluster, key_evidence,
                        ("KeyClusters", "KeyEvidence"))


class WriteClusterShard(beam.DoFn):
    """((shard, shard count), [packed batches]) -> the ``clusters/`` shard's path: each row with its evidence
    replaced by the PII-masked snippets of its members from the mix (the EVIDENCE_PER_CLUSTER smallest doc_ids of
    its decided members; members listed first, then by doc_id). A shard with no rows writes no file, as before."""

    def __init__(self, spec: ShardSpec) -> None:
        self.spec = spec

    def process(self, element: Tuple[Tuple[int, int], Any]) -> Iterator[str]:
        (shard, total), batches = element
        rows: List[Tuple[Any, ...]] = []
        samples: Dict[str, List[Tuple[str, str]]] = {}
        for batch in batches:
            for value in batch_values(batch):
                if len(value) == 2:  # (cluster key, snippets); a row has len(CLUSTER_FIELDS) values
                    samples.setdefault(value[0], []).extend(value[1])
                else:
                    rows.append(value)
        if not rows:
            return
        check_at, id_at, members_at = _CLUSTER_AT["check"], _CLUSTER_AT["cluster_id"], _CLUSTER_AT["members"]
        full = []
        for values in rows:
            listed = set(values[members_at])
            ordered = sorted(samples.get(f"{values[check_at]}:{values[id_at]}", ()),
                             key=lambda s: (s[0] not in listed, s[0]))
            full.append(values + ([text for _doc, text in ordered],))
        yield write_shard(self.spec, shard, total, full, _zipper(CLUSTER_FIELDS + ("evidence",)))
