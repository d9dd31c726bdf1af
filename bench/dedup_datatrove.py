"""datatrove's 4-stage MinHash dedup on the same JSONL input, for comparison with lazaret's dedup.

Runs in a SEPARATE venv (datatrove's dependencies are not the project's):
    python3 -m venv /tmp/benchvenv && /tmp/benchvenv/bin/pip install datatrove
    /tmp/benchvenv/bin/python bench/dedup_datatrove.py INPUT.jsonl OUT_DIR [--compare OURS_REMOVED.txt]
Input rows: {"doc_id", "text", ...}. Writes OUT_DIR/removed.txt (doc_ids datatrove drops) and prints wall/CPU
seconds and peak RSS (this process and its workers). Config: datatrove defaults (word 5-grams, 14 buckets
x 8 hashes = 112 permutations, no verification), one task, one worker.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import sys
import time


def main() -> None:
    from datatrove.executor.local import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers.jsonl import JsonlWriter

    src, out = sys.argv[1], sys.argv[2]
    compare = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--compare" else None
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.join(out, "input"))
    os.symlink(os.path.abspath(src), os.path.join(out, "input", "data.jsonl"))
    cfg = MinhashConfig()
    reader = lambda: JsonlReader(os.path.join(out, "input"), id_key="doc_id", glob_pattern="*.jsonl")  # noqa: E731
    t0, c0 = time.time(), time.process_time()
    for i, step in enumerate([
        [reader(), MinhashDedupSignature(output_folder=f"{out}/sigs", config=cfg)],
        [MinhashDedupBuckets(input_folder=f"{out}/sigs", output_folder=f"{out}/buckets", config=cfg)],
        [MinhashDedupCluster(input_folder=f"{out}/buckets", output_folder=f"{out}/remove_ids", config=cfg)],
        [reader(), MinhashDedupFilter(input_folder=f"{out}/remove_ids",
                                      exclusion_writer=JsonlWriter(f"{out}/removed")),
         JsonlWriter(f"{out}/kept")],
    ]):
        tasks = cfg.num_buckets if i == 1 else 1
        LocalPipelineExecutor(step, tasks=tasks, workers=1, logging_dir=f"{out}/logs{i}").run()
    wall = time.time() - t0
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - c0 + ch.ru_utime + ch.ru_stime
    removed = []
    for root, _, files in os.walk(f"{out}/removed"):
        for f in files:
            opener = gzip.open if f.endswith(".gz") else open
            with opener(os.path.join(root, f), "rt", encoding="utf-8") as fh:
                removed += [json.loads(line)["id"] for line in fh]
    with open(f"{out}/removed.txt", "w") as fh:
        fh.write("\n".join(sorted(removed)) + "\n")
    if compare:
        with open(compare) as fh:
            ours = {line.strip() for line in fh if line.strip()}
        theirs = set(removed)
        print(f"removed: lazaret {len(ours)}, datatrove {len(theirs)}, both {len(ours & theirs)}, "
              f"only lazaret {len(ours - theirs)}, only datatrove {len(theirs - ours)}, "
              f"Jaccard of the two removed sets {len(ours & theirs) / max(1, len(ours | theirs)):.3f}")
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, ch.ru_maxrss) / 1024
    print("RESULT " + json.dumps({"docs": sum(1 for _ in open(src)), "wall": wall, "cpu": cpu,
                                  "removed": len(removed), "peak_rss_mb": rss}))


if __name__ == "__main__":
    main()
