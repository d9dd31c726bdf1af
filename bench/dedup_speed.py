"""Throughput and peak memory of near-duplicate clustering on the T0 corpus (55,185 records) at 1x and 4x.

Each measurement runs in a fresh subprocess (so peak RSS is its own); the input is written to JSONL first
and not timed. Figures: wall seconds, CPU seconds, docs per CPU-second (~ per core: FnApiRunner and the
baseline are single-process), peak RSS.

  sigs      normalise + shingle hashes + MinHash (lazaret.checks.near_duplicate.signatures), one core
  beam      NearDuplicateClusters end to end on the in-process FnApiRunner (read JSONL -> findings)
  baseline  in-memory: datasketch MinHash.bulk (default SHA1 hashfunc) over the same shingles +
            MinHashLSH(threshold, num_perm) insert/query + union-find, one process; input already parsed
  baseline+read  the same, timing the JSONL parsing too (as the beam figure does)
  beam-mp   the Beam transform on DirectRunner multi_processing (2 SDK worker processes) with the spilling
            shuffle buffers and allocator settings lazaret scan uses (lazaret.runners.spill, lazaret.runners.memory);
            CPU = runner + workers; prints the runner's
            and the largest worker's peak RSS (sampled every 0.1 s)

    .venv/bin/python bench/dedup_speed.py                 # all modes at 1x and 4x
    .venv/bin/python bench/dedup_speed.py --modes beam --scales 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _write_input(scale: int) -> str:
    from _dedup_data import load_t0, scaled

    path = os.path.join(tempfile.gettempdir(), f"lazaret_dedup_t0_x{scale}.jsonl")
    if not os.path.exists(path):
        recs = scaled(load_t0(), scale, seed=scale)
        with open(path + ".tmp", "w", encoding="utf-8") as fh:
            for r in recs:
                fh.write(json.dumps(r) + "\n")
        os.replace(path + ".tmp", path)
    return path


def _read(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def run_sigs(path: str) -> dict:
    from lazaret.checks.near_duplicate.normalise import normalise
    from lazaret.checks.near_duplicate.params import DedupParams
    from lazaret.checks.near_duplicate.signatures import band_keys, signatures

    recs = _read(path)
    p = DedupParams()
    t0, c0 = time.time(), time.process_time()
    for lo in range(0, len(recs), p.batch_size):
        norms = [normalise(r["text"]) for r in recs[lo:lo + p.batch_size]]
        band_keys(signatures(norms, p), p)
    return {"docs": len(recs), "wall": time.time() - t0, "cpu": time.process_time() - c0}


def run_beam(path: str) -> dict:
    import apache_beam as beam

    from lazaret.checks.near_duplicate.transform import NearDuplicateClusters

    out = tempfile.mkdtemp(prefix="dedup-speed-")
    t0, c0 = time.time(), time.process_time()
    p = beam.Pipeline(runner="FnApiRunner")
    res = p | beam.io.ReadFromText(path) | beam.Map(json.loads) | NearDuplicateClusters({})
    (res["findings"] | beam.Filter(lambda f: f["action"] == "drop_duplicate")
     | beam.Map(lambda f: f["doc_id"]) | beam.io.WriteToText(os.path.join(out, "drops")))
    result = p.run()
    result.wait_until_finish()
    wall, cpu = time.time() - t0, time.process_time() - c0
    drops = 0
    for name in os.listdir(out):
        with open(os.path.join(out, name)) as fh:
            drops += sum(1 for _ in fh)
    docs = sum(1 for _ in open(path, encoding="utf-8"))
    return {"docs": docs, "wall": wall, "cpu": cpu, "drops": drops}


def run_beam_mp(path: str, workers: int = 2) -> dict:
    """The same transform on DirectRunner ``multi_processing`` with the spilling shuffle buffers
    (lazaret.runners.spill, as ``lazaret scan`` runs it): the runner's and each SDK worker's peak RSS, sampled."""
    import threading

    import apache_beam as beam
    import psutil
    from apache_beam.options.pipeline_options import PipelineOptions

    from lazaret.checks.near_duplicate.transform import NearDuplicateClusters
    from lazaret.runners.memory import tune_allocator
    from lazaret.runners.spill import install

    tune_allocator()  # as lazaret scan does: allocator thresholds and arenas, here and in the workers
    out = tempfile.mkdtemp(prefix="dedup-speed-")
    me = psutil.Process()
    peaks = {"runner": 0.0, "worker": 0.0}
    workers_cpu = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peaks["runner"] = max(peaks["runner"], me.memory_info().rss / 2**20)
            for child in me.children(recursive=True):
                try:
                    peaks["worker"] = max(peaks["worker"], child.memory_info().rss / 2**20)
                    t = child.cpu_times()
                    workers_cpu[child.pid] = t.user + t.system
                except psutil.Error:
                    pass
            time.sleep(0.1)

    opts = PipelineOptions(["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                            f"--direct_num_workers={workers}"])
    sampler = threading.Thread(target=sample, daemon=True)
    t0, c0 = time.time(), time.process_time()
    sampler.start()
    with install():
        p = beam.Pipeline(options=opts)
        res = p | beam.io.ReadFromText(path) | beam.Map(json.loads) | NearDuplicateClusters({})
        (res["findings"] | beam.Filter(lambda f: f["action"] == "drop_duplicate")
         | beam.Map(lambda f: f["doc_id"]) | beam.io.WriteToText(os.path.join(out, "drops")))
        p.run().wait_until_finish()
    done.set()
    sampler.join()
    wall, cpu = time.time() - t0, time.process_time() - c0 + sum(workers_cpu.values())
    drops = 0
    for name in os.listdir(out):
        with open(os.path.join(out, name)) as fh:
            drops += sum(1 for _ in fh)
    docs = sum(1 for _ in open(path, encoding="utf-8"))
    return {"docs": docs, "wall": wall, "cpu": cpu, "drops": drops,
            "runner_peak_mb": peaks["runner"], "worker_peak_mb": peaks["worker"]}


def run_baseline(path: str, include_read: bool = False) -> dict:
    """``include_read``: time the JSONL parsing too, as the Beam run does (its figure includes reading)."""
    from datasketch import MinHash, MinHashLSH

    from lazaret.checks.near_duplicate.normalise import normalise
    from lazaret.checks.near_duplicate.params import DedupParams

    p = DedupParams()
    if include_read:
        t0, c0 = time.time(), time.process_time()
        recs = _read(path)
    else:
        recs = _read(path)
        t0, c0 = time.time(), time.process_time()
    lsh = MinHashLSH(threshold=p.threshold, num_perm=p.num_perm)
    ids_all = []
    parent = {}

    def find(x):
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x

    for lo in range(0, len(recs), 2048):
        shingle_lists, ids = [], []
        for r in recs[lo:lo + 2048]:
            w = normalise(r["text"]).split(" ")
            if len(w) >= p.ngram:
                shingle_lists.append([" ".join(w[i:i + p.ngram]).encode("utf-8")
                                      for i in range(len(w) - p.ngram + 1)])
                ids.append(r["doc_id"])
        ids_all += ids
        mhs = MinHash.bulk(shingle_lists, num_perm=p.num_perm, seed=p.seed)
        for doc, m in zip(ids, mhs):
            for other in lsh.query(m):
                a, b = find(doc), find(other)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            lsh.insert(doc, m)
    drops = sum(1 for d in ids_all if find(d) != d)
    return {"docs": len(recs), "wall": time.time() - t0, "cpu": time.process_time() - c0, "drops": drops}


def child(mode: str, scale: int) -> None:
    path = _write_input(scale)
    out = {"sigs": run_sigs, "beam": run_beam, "beam-mp": run_beam_mp, "baseline": run_baseline,
           "baseline+read": lambda p: run_baseline(p, include_read=True)}[mode](path)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.update(mode=mode, scale=scale)
    print("RESULT " + json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", default="sigs,beam,baseline,baseline+read")
    ap.add_argument("--scales", default="1,4")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "SCALE"))
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    print(f"{'mode':13} {'scale':>5} {'docs':>8} {'wall s':>8} {'CPU s':>8} {'docs/CPU-s':>10} {'docs/s':>8} "
          f"{'peak RSS MB':>11} {'drops':>7}")
    for scale in [int(s) for s in args.scales.split(",")]:
        _write_input(scale)
        for mode in args.modes.split(","):
            proc = subprocess.run([sys.executable, __file__, "--child", mode, str(scale)],
                                  capture_output=True, text=True)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if not line:
                print(f"{mode} x{scale} failed:\n{proc.stderr[-2000:]}")
                continue
            r = json.loads(line[0][7:])
            print(f"{mode:13} {scale:>5} {r['docs']:>8} {r['wall']:>8.1f} {r['cpu']:>8.1f} "
                  f"{r['docs'] / r['cpu']:>10.0f} {r['docs'] / r['wall']:>8.0f} {r['peak_rss_mb']:>11.0f} "
                  f"{r.get('drops', ''):>7}" + (f"  runner {r['runner_peak_mb']:.0f} MB, largest worker "
                                                 f"{r['worker_peak_mb']:.0f} MB" if "worker_peak_mb" in r else ""),
                  flush=True)


if __name__ == "__main__":
    main()
