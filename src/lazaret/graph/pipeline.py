"""The scan as one Beam graph: read (JSONL in tasks) -> checks -> decisions -> mix (records read again) ->
deterministic writers.

The checks come from one registry (lazaret.checks): each returns findings and optional clusters in one
schema, and nothing here knows which checks exist. Nothing here touches the local disk of the launcher:
inputs and outputs go through Beam's filesystems and all configuration travels inside the transforms
(pickled), so the same graph runs on Dataflow or Flink.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Dict, List

import apache_beam as beam

from lazaret.checks import (RESERVED_FINDING_NAMES, Check, CheckContext, CheckResult,
                            checks as registered_checks)
from lazaret.graph.decide import Mix, decide, dump_decision, reject_row
from lazaret.graph.join import JoinClusterEvidence, JoinFindings, WriteAndGather, WriteClusterShard
from lazaret.graph.packing import (MIX_BLOCK, PackPerKey, SpreadInBlocks, block_key, dump_record,
                                   load_record)
from lazaret.graph.outdir import SEEK_DIR
from lazaret.io.readers import ReadFile, ReadTask
from lazaret.io.writers import ShardSpec, WriteJson, WriteManifests

ROWS_PER_SHARD = {"clean": 5000, "held": 5000, "quarantine": 10000, "findings": 10000, "clusters": 10000}
# rows cross their writer's shuffle in batches of up to this many (io.writers._PackBatches): findings/ rows repeat
# the same check, rule, side and detail values, clean lines the same templates, and fold together. As large as a
# shard (a bundle's rows of one shard in one batch; what a bundle holds open is bounded by _PackBatches): more
# rows share one compression window (T0 5k, Join/GroupShard 0.179 -> 0.124 bytes per input byte; WriteClean
# 0.072 -> 0.061). A record's findings from different checks still never share a batch: the batching runs
# fused into each producing stage, so each check's findings of a record are batched apart.
WRITE_PACK_ROWS = 10000


@dataclasses.dataclass
class ScanPlan:
    """Everything the graph needs, already validated by the launcher; plain data so it pickles."""

    inputs: List[str]
    staging: str
    checks: List[str]
    sections: Dict[str, Dict[str, Any]]
    custom_recognizers: List[Dict[str, Any]]
    check_rules: Dict[str, Any]  # check name -> what its load_rules read on the launcher (lazaret.checks)
    fmt: str = "auto"
    id_field: str = "id"
    max_record_bytes: int = 8 * 1024 * 1024


def reject_counts(rej: Dict[str, Any]):
    yield ("action", "reject")
    yield ("reason", f"malformed:{rej['rule']}")


class OwnFindings(beam.DoFn):
    """A check's findings, passed on unchanged once their ``check`` is known to be the check's manifest name
    (or a reserved one: ``malformed`` for a record it failed on, ``rule``).

    Why here and not in make_finding: the registry is per process. A check registered by user code on the
    launcher is not registered in the worker processes of multi_processing, a portable worker pool, Flink or
    Dataflow, which only unpickle its DoFns; the names this step accepts travel pickled with it.
    """

    def __init__(self, check: str, allowed: tuple) -> None:
        self.check = check
        self.allowed = frozenset(allowed)

    def process(self, finding):
        if finding["check"] not in self.allowed:
            raise ValueError(f"check {self.check!r} emitted a finding named {finding['check']!r}; its findings "
                             f"carry one of {sorted(self.allowed)}")
        yield finding


class RunCheck(beam.PTransform):
    """records -> CheckResult: one registered check (lazaret.checks) as a labelled composite, its findings
    checked by :class:`OwnFindings`."""

    def __init__(self, check: Check, ctx: CheckContext) -> None:
        super().__init__()
        self.check = check
        self.ctx = ctx

    def expand(self, records):
        result = self.check.expand(records, self.ctx)
        if not isinstance(result, CheckResult):
            raise TypeError(f"check {self.check.name!r} returned {type(result).__name__}, not a CheckResult")
        allowed = (self.check.manifest_name,) + RESERVED_FINDING_NAMES
        return result._replace(findings=result.findings
                               | "OwnFindings" >> beam.ParDo(OwnFindings(self.check.name, allowed)))


def run_checks(records, plan: ScanPlan) -> Dict[str, CheckResult]:
    """Every selected check, in registry order; a check reads the results of the checks it needs."""
    results: Dict[str, CheckResult] = {}
    for check in registered_checks():
        if check.name not in plan.checks:
            continue
        ctx = CheckContext(policy=check.section(plan.sections), plan=plan, finding_name=check.manifest_name,
                           rules=plan.check_rules.get(check.name),
                           needed={need: results[need] for need in check.needs if need in results})
        results[check.name] = records | f"Check_{check.name}" >> RunCheck(check, ctx)
    return results


#: the tagged output of "Decide" that lists, per cluster a decided record belongs to, (cluster, (raw doc_id,
#: block key, position of the cluster in the decision's clusters)): the candidates for the cluster's evidence.
#: Compact on purpose (one per cluster member): the cluster as the first 16 bytes of the sha256 of its key,
#: the doc_id as its 16 raw bytes (lowercase hex and raw bytes sort alike, so the smallest are the same).
CLUSTER_MEMBERS = "cluster_members"


def _cluster_hash(check: str, cluster_id: str) -> bytes:
    return hashlib.sha256(f"{check}:{cluster_id}".encode("utf-8")).digest()[:16]


def decision_row(gathered):
    """(doc_id, block key, [decisive finding]) of a record with decisive findings -> (block key, (doc_id, dumped
    decision)); records without are clean and have no row. Also (tagged CLUSTER_MEMBERS) one (cluster hash,
    (raw doc_id, block key, position)) per cluster of the decision."""
    doc_id, at, findings = gathered
    decision = decide(findings)
    yield at, (doc_id, dump_decision(decision))
    for i, (check, cluster_id) in enumerate(decision["clusters"]):
        yield beam.pvalue.TaggedOutput(CLUSTER_MEMBERS, (_cluster_hash(check, cluster_id),
                                                         (bytes.fromhex(doc_id), at, i)))


def evidence_to_block(kv):
    """(cluster, [(raw doc_id, block key, position)] chosen) -> (block key, (raw doc_id, position)) per chosen
    member, so the mix of the member's block sends its masked snippet for that cluster."""
    _cluster, chosen = kv
    for raw_id, at, i in chosen:
        yield at, (raw_id, i)


def locate(record):
    """(doc_id, key of the mix block the record lies in): what the join needs of a record besides its findings."""
    return record["doc_id"], block_key(record, MIX_BLOCK)


def block_row(block):
    """A block of an input file keyed like its records' decisions (``packing.block_key``)."""
    return block_key({"source_path": block["path"], "source_index": block["block"] * MIX_BLOCK}, MIX_BLOCK), block


def build(p: beam.Pipeline, plan: ScanPlan) -> None:
    """The scan graph for ``plan``; the checks come from the registry (lazaret.checks), in-house ones too."""
    reader = ReadFile(plan.fmt, plan.id_field, plan.max_record_bytes, split=True,
                      index_dir=f"{plan.staging}/{SEEK_DIR}")
    read = (p
            | "Inputs" >> beam.Create(plan.inputs)
            | "SpreadFiles" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(reader).with_outputs(ReadFile.REJECT, ReadFile.FILE, ReadFile.BLOCK,
                                                         ReadFile.TASK, main="records"))
    # Plain and gzip JSONL files are read in tasks where the tasks land (the read is spread, not the
    # records); zstd files and Parquet are read whole, and their records spread in blocks.
    tasks = (read[ReadFile.TASK]
             | "SpreadReads" >> beam.Reshuffle()
             | "ReadTasks" >> beam.ParDo(ReadTask(reader)).with_outputs(ReadFile.REJECT, ReadFile.BLOCK,
                                                                        main="records"))
    # records reach the checks as pickled bytes (packing.dump_record says why), loaded where the checks run
    records = ((read.records | "SpreadRecords" >> SpreadInBlocks(dumped=True),
                tasks.records | "DumpRecords" >> beam.Map(dump_record).with_output_types(bytes))
               | "AllRecords" >> beam.Flatten()
               | "LoadRecords" >> beam.Map(load_record))
    # (doc_id, mix block) of every record, taken where each reader runs (fused into it): only these small
    # pairs cross to the join, not every record dict a second time (~0.7 CPU-s of coding on all of T0).
    located = ((read.records | "LocateWhole" >> beam.Map(locate), tasks.records | "LocateTasks" >> beam.Map(locate))
               | "RecordsRead" >> beam.Flatten())
    read_rejects = (read[ReadFile.REJECT], tasks[ReadFile.REJECT]) | "ReadRejects" >> beam.Flatten()
    read_blocks = (read[ReadFile.BLOCK], tasks[ReadFile.BLOCK]) | "AllBlocks" >> beam.Flatten()

    results = run_checks(records, plan).values()
    finding_sets = [r.findings for r in results]
    cluster_sets = [r.clusters for r in results if r.clusters is not None]
    if finding_sets:
        findings = tuple(finding_sets) | "AllFindings" >> beam.Flatten()
    else:
        findings = p | "NoFindings" >> beam.Create([])

    # Decisions from findings alone: a record's decisive findings, with the block of the file it lies in
    # (its doc_id does not say), become one decision row keyed by that block. They meet in findings/'s
    # shards (graph/join.py), whose writer hands each decided record's findings on.
    out = plan.staging
    grouped = ({"findings": findings, "located": located}
               | "Join" >> JoinFindings(ROWS_PER_SHARD["findings"], WRITE_PACK_ROWS))
    written = grouped | "WriteFindings" >> beam.ParDo(
        WriteAndGather(ShardSpec(out, "findings", "parquet", "finding"))).with_outputs(
            WriteAndGather.DECIDED, main="paths")
    decisions = (written[WriteAndGather.DECIDED]
                 | "Decide" >> beam.FlatMap(decision_row).with_outputs(CLUSTER_MEMBERS, main="decisions"))
    # listed per bundle and block, compressed together (PackPerKey), on their way to the mix
    decision_lists = decisions.decisions | "ListDecisions" >> beam.ParDo(PackPerKey())
    # A cluster's evidence: its decided members with the smallest doc_ids, chosen before the mix so that the
    # mix masks and sends only their snippets (not one per member of every cluster).
    evidence = (decisions[CLUSTER_MEMBERS]
                | "ChooseEvidence" >> beam.combiners.Top.SmallestPerKey(Mix.EVIDENCE_PER_CLUSTER)
                | "EvidenceToBlocks" >> beam.FlatMap(evidence_to_block)
                | "ListEvidence" >> beam.ParDo(PackPerKey()))
    # The mix: each block of each input is read again and its records written under their decisions.
    decided = ({"block": read_blocks | "KeyBlocks" >> beam.Map(block_row),
                "decisions": decision_lists, "evidence": evidence}
               | "GroupDecisions" >> beam.CoGroupByKey()
               | "Mix" >> beam.ParDo(Mix.for_scan(reader, plan.checks, plan.sections["pii"],
                                                  plan.custom_recognizers))
               .with_outputs(Mix.COUNTS, Mix.CLUSTER_EVIDENCE, main="manifests"))

    rejects = read_rejects
    # clean/, quarantine/ (read-time rejects too) and held/: one writer (io.writers.WriteManifests says why)
    manifests = ((decided.manifests,
                  rejects | "RejectRows" >> beam.Map(lambda rej: (Mix.QUARANTINE_ROWS, reject_row(rej))))
                 | "AllManifestRows" >> beam.Flatten())
    _ = manifests | "WriteRecords" >> WriteManifests(out, {
        Mix.CLEAN: ("jsonl", "source", ROWS_PER_SHARD["clean"], "clean_index"),
        Mix.HELD: ("jsonl", "source", ROWS_PER_SHARD["held"], "held_index"),
        Mix.QUARANTINE_ROWS: ("parquet", "source", ROWS_PER_SHARD["quarantine"], None)}, WRITE_PACK_ROWS)
    if cluster_sets:
        # a cluster's row and its members' masked snippets from the mix meet in clusters/'s shards (graph/join.py)
        grouped_clusters = ({"rows": tuple(cluster_sets) | "AllClusters" >> beam.Flatten(),
                             "evidence": decided[Mix.CLUSTER_EVIDENCE]}
                            | "JoinEvidence" >> JoinClusterEvidence(ROWS_PER_SHARD["clusters"], WRITE_PACK_ROWS))
        _ = grouped_clusters | "WriteClusters" >> beam.ParDo(
            WriteClusterShard(ShardSpec(out, "clusters", "parquet", "cluster")))
    counts = ((decided[Mix.COUNTS], rejects | "RejectCounts" >> beam.FlatMap(reject_counts))
              | "AllCounts" >> beam.Flatten()
              | "CountPerKey" >> beam.combiners.Count.PerElement()
              | "CountRow" >> beam.Map(lambda kv: [kv[0][0], kv[0][1], kv[1]]))
    _ = counts | "WriteCounts" >> WriteJson(f"{out}/_counts.json")
    _ = read[ReadFile.FILE] | "WriteFiles" >> WriteJson(f"{out}/_files.json")
