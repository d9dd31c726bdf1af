"""Source-to-sink paths through the scan's Beam graph: what Flink's batch optimizer pays to plan it.

Flink's DataSet optimizer (the job server's Flink 1.19) runs plan visitors that walk the DAG path by path
(``UnionParallelismAndForwardEnforcer``, ``RangePartitionRewriter``): a node reached by N paths is visited N times,
so planning time follows the number of paths, not of steps. Every side input and every branch that meets its own
source again (a count read back by the rows it counted) adds paths for all that lies upstream of it. This prints
the count for a scan's graph (its leaf transforms, side inputs included), the fan-outs that cost most, and the
chain of steps with the most paths (docs/engines.md, "Planning time").

    .venv/bin/python bench/plan_paths.py                       # sample_data/, the default rules and policy
    .venv/bin/python bench/plan_paths.py --policy FILE --checks dedup,poisoning

The graph is built, never run: the inputs are listed, not read, and the counts do not depend on the data.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import graphlib
import pathlib
import sys
import tempfile
import time
from typing import Dict, List, Tuple

ROOT = pathlib.Path(__file__).resolve().parent.parent


def graph_of(scan_args: List[str], out_dir: str):
    """(leaf transforms by id, their producers' ids by input) of the scan ``lazaret scan`` would build (its staging
    folder under ``out_dir``)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from lazaret import scan as S

    parser = argparse.ArgumentParser()
    S.add_scan_arguments(parser)
    out = pathlib.Path(out_dir) / "out"
    args = parser.parse_args([str(ROOT / "sample_data"), "--out", str(out), *scan_args])
    setup = S.configure(args, dt.datetime.now(dt.timezone.utc), time.time())
    staging = S._prepare_out(args.out, True)
    comps = S.build_pipeline(PipelineOptions([]), S._plan(args, setup, staging)).to_runner_api().components
    leaves = {tid: t for tid, t in comps.transforms.items() if not t.subtransforms}
    producer = {pc: tid for tid, t in leaves.items() for pc in t.outputs.values()}
    preds = {tid: [producer[pc] for pc in t.inputs.values() if pc in producer and producer[pc] != tid]
             for tid, t in leaves.items()}
    return leaves, preds


def path_counts(preds: Dict[str, List[str]]) -> Dict[str, int]:
    """Paths from any source to each node, in topological order (a source has one)."""
    paths: Dict[str, int] = {}
    for t in graphlib.TopologicalSorter(preds).static_order():
        paths[t] = sum(paths[s] for s in preds[t]) if preds[t] else 1
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--top", type=int, default=12, help="fan-outs and chain steps to print")
    known, scan_args = ap.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="lazaret-plan-") as tmp:
        leaves, preds = graph_of(scan_args, tmp)
    paths = path_counts(preds)
    consumers = collections.Counter(s for ps in preds.values() for s in ps)
    sinks = [t for t in leaves if not consumers[t]]
    print(f"scan args: {' '.join(scan_args) or '(defaults)'}")
    print(f"leaf transforms {len(leaves)}, sinks {len(sinks)}, source-to-sink paths {sum(paths[s] for s in sinks):,}")
    print("fan-outs that cost most ((consumers - 1) x paths into the step):")
    fan: List[Tuple[int, int, int, str]] = sorted(
        (((c - 1) * paths[t], c, paths[t], leaves[t].unique_name) for t, c in consumers.items() if c > 1),
        reverse=True)
    for cost, c, n, name in fan[:known.top]:
        print(f"  {cost:>14,}  {c} consumers of {n:,} paths  {name}")
    print("the chain with most paths (steps that join more than one input):")
    t = max(sinks, key=lambda s: paths[s])
    shown = 0
    while preds[t] and shown < known.top:
        if len(preds[t]) > 1:
            print(f"  {paths[t]:>14,}  {len(preds[t])} inputs  {leaves[t].unique_name}")
            shown += 1
        t = max(preds[t], key=lambda s: paths[s])
    return 0


if __name__ == "__main__":
    sys.exit(main())
