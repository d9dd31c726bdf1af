"""Soak: the full scan over K x the T0 corpus (concatenated with small random edits), sampling the resident
memory of the whole process tree over time. Memory must stay flat as the run goes on.

Run: .venv/bin/python bench/soak_bench.py [--copies 4] [--workers 1] [--interval 5] [--checks ...] [--csv f]
     [--runner in-process|flink|spark] [--runner-arg=--OPTION=VALUE ...] [--stop-after SECONDS]

`--runner flink` / `spark` scan with `pipelines/runners/{flink,spark}-local.args` (Flink's embedded cluster,
Spark local[2]; their job server JVM is a child of the scan). Besides the runner / largest worker columns the
bench prints the peak RSS of every process of the tree (JVM included) and the CPU-seconds (user+sys) of the
whole tree: the kernel's count for every reaped descendant, and the sum of each process's last sample.
`--stop-after` ends the run (the whole tree) after that many seconds, `--stall-after` when the tree has used
less than one CPU-second in that many seconds (a 4x T0 run on Flink local deadlocked in its data plane), and
either way the bench reports what it measured; so does a scan that fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import tempfile
import time

import psutil

from _common import ROOT, machine, need_shared, read_jsonl


def perturb(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    for _ in range(max(1, len(words) // 50)):
        i = rng.randrange(len(words))
        words[i] = words[i][::-1] if rng.random() < 0.5 else words[i] + rng.choice("abcdefgh")
    return " ".join(words)


def rss_mb(proc: psutil.Process) -> tuple:
    """(launcher/runner process RSS, largest SDK worker RSS, whole tree RSS) in MB."""
    own = 0.0
    workers = []
    try:
        own = proc.memory_info().rss / 2 ** 20
        children = proc.children(recursive=True)
    except psutil.Error:
        children = []
    for p in children:
        try:
            workers.append(p.memory_info().rss / 2 ** 20)
        except psutil.Error:
            pass
    return own, max(workers, default=0.0), own + sum(workers)


def label(p: psutil.Process) -> str:
    """A short name for a process of the scan's tree: the scan itself, a Beam SDK worker, a JVM (job server)."""
    try:
        cmd = p.cmdline()
    except psutil.Error:
        return "?"
    joined = " ".join(cmd)
    if cmd and os.path.basename(cmd[0]) == "java":
        jar = next((os.path.basename(a) for a in cmd if a.endswith(".jar")), "")
        return f"java {jar or joined[:60]}"
    if "beam_worker" in joined or "sdk_worker" in joined:
        return "python SDK worker"
    if len(cmd) > 2 and cmd[1] == "-m":
        return f"python -m {cmd[2]}"
    return os.path.basename(cmd[1] if len(cmd) > 1 and "python" in cmd[0] else (cmd[0] if cmd else "?"))


class Tree:
    """Peak RSS and last CPU times of every process ever seen in the tree under one root."""

    def __init__(self, root: psutil.Process):
        self.root = root
        self.peak = {}  # pid -> (label, peak RSS MB)
        self.cpu = {}  # pid -> user+sys seconds at the last sample

    def sample(self) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        for p in procs:
            try:
                rss = p.memory_info().rss / 2 ** 20
                t = p.cpu_times()
                cpu = t.user + t.system
            except psutil.Error:
                continue
            name, peak = self.peak.get(p.pid, (None, 0.0))
            self.peak[p.pid] = (name or label(p), max(peak, rss))
            self.cpu[p.pid] = cpu


def kill_tree(proc: psutil.Process) -> None:
    try:
        procs = [*proc.children(recursive=True), proc]
    except psutil.Error:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--limit", type=int, default=None, help="records of T0 per copy (default: all)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--checks", default="pii,toxicity,dedup,poisoning")
    ap.add_argument("--pii-nlp", default="spacy")
    ap.add_argument("--csv", default=None)
    ap.add_argument("--policy", default=None, help="policy file passed to the scan (default: the packaged one)")
    ap.add_argument("--runner", choices=("in-process", "flink", "spark"), default="in-process",
                    help="flink / spark: pipelines/runners/{flink,spark}-local.args (--workers is ignored)")
    ap.add_argument("--runner-arg", action="append", default=[], metavar="ARG",
                    help="flink / spark: one more pipeline option after the runner's .args (repeatable; a later "
                         "option wins), e.g. --runner-arg=--job_server_jvm_properties=-Xmx3g (docs/engines.md)")
    ap.add_argument("--stop-after", type=float, default=None, help="stop the scan after this many seconds")
    ap.add_argument("--stall-after", type=float, default=600.0,
                    help="stop the scan when its tree used < 1 CPU-s in this many seconds (0: never)")
    args = ap.parse_args()
    shared = need_shared()
    rows = read_jsonl(shared / "instruct_t0_train_50k" / "t0_train_50k.jsonl.gz", limit=args.limit)
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "soak.jsonl")
        n = 0
        with open(path, "w", encoding="utf-8") as fh:
            for copy in range(args.copies):
                for r in rows:
                    r = dict(r, id=f"{r['id']}#{copy}")
                    if copy:
                        r["output"] = perturb(r["output"], rng)
                    fh.write(json.dumps(r, ensure_ascii=False) + "\n")
                    n += 1
        if args.runner != "in-process":
            extra = (ROOT / "pipelines" / "runners" / f"{args.runner}-local.args").read_text().split()
            extra += args.runner_arg
        else:
            extra = ([] if args.workers == 1 else
                     ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                      f"--direct_num_workers={args.workers}"])
        cmd = [str(ROOT / ".venv" / "bin" / "lazaret"), "scan", path, "--out", os.path.join(tmp, "out"),
               "--checks", args.checks, "--pii-nlp", args.pii_nlp, "--quiet", "--no-report", *extra]
        if args.policy:
            cmd += ["--policy", args.policy]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        proc = subprocess.Popen(cmd, cwd=ROOT)  # the runners' .args name their job server jars from the root
        ps = psutil.Process(proc.pid)
        tree = Tree(ps)
        stopped = stalled = False
        progress = (t0, 0.0)  # (when, tree CPU-s) of the last sample that showed progress
        samples = []
        log = open(args.csv, "w") if args.csv else None  # written as we go: a killed run keeps its samples
        if log:
            log.write("seconds,runner_mb,largest_worker_mb,tree_mb\n")
        while proc.poll() is None:
            if args.stop_after and time.time() - t0 > args.stop_after:
                kill_tree(ps)
                proc.wait()
                stopped = True
                break
            tree.sample()
            busy = sum(tree.cpu.values())
            if busy >= progress[1] + 1.0:
                progress = (time.time(), busy)
            elif args.stall_after and time.time() - progress[0] > args.stall_after:
                kill_tree(ps)
                proc.wait()
                stopped = stalled = True
                break
            samples.append((time.time() - t0, *rss_mb(ps)))
            if log:
                log.write("%.1f,%.1f,%.1f,%.1f\n" % samples[-1])
                log.flush()
            time.sleep(args.interval)
        if log:
            log.close()
        wall = time.time() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        failed = proc.returncode != 0 and not stopped
    where = (f"{args.workers} worker(s)" if args.runner == "in-process" else
             " ".join(a.split("=")[0] + "=..." if "job_server_jar" in a else a for a in extra))
    print(f"Soak: {n} records ({args.copies} x T0), checks {args.checks}, pii-nlp {args.pii_nlp}, "
          f"{args.runner}: {where} ({machine()})")
    if stalled:
        print(f"STALLED: no CPU used since {progress[0] - t0:.0f} s, stopped after {wall:.0f} s "
              f"(--stall-after {args.stall_after:.0f}): the figures below are partial")
    elif stopped:
        print(f"STOPPED after {wall:.0f} s (--stop-after {args.stop_after:.0f}): the figures below are partial")
    elif failed:
        print(f"FAILED: the scan exited {proc.returncode} after {wall:.0f} s: the figures below are partial")
    else:
        print(f"wall {wall:.0f} s, {n / wall:.1f} records/s")
    reaped = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"CPU-s (user+sys) of the process tree: {reaped:.1f} reaped by the kernel's count, "
          f"{sum(tree.cpu.values()):.1f} summed from each process's last sample")
    if tree.peak:
        print(f"{'peak RSS of every process':<40}{'pid':>8}{'MB':>10}")
        for pid, (name, peak) in sorted(tree.peak.items(), key=lambda kv: -kv[1][1]):
            print(f"{name[:40]:<40}{pid:>8}{peak:>10.0f}")
    if samples:
        q = max(1, len(samples) // 4)
        print(f"{'peak RSS, MB':<18}{'runner':>10}{'largest worker':>16}{'whole tree':>12}")
        for name, part in (("first quarter", samples[:q]), ("second quarter", samples[q:2 * q]),
                           ("third quarter", samples[2 * q:3 * q]), ("last quarter", samples[3 * q:])):
            if part:
                print(f"{name:<18}{max(s[1] for s in part):>10.0f}{max(s[2] for s in part):>16.0f}"
                      f"{max(s[3] for s in part):>12.0f}")
        print(f"{len(samples)} samples every {args.interval:.0f} s")
    if failed:
        raise SystemExit(f"scan failed with exit {proc.returncode}")



if __name__ == "__main__":
    main()
