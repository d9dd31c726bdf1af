"""PII throughput: the whole scan (PII only) vs plain Presidio and spaCy NER alone, on T0 texts.

* lazaret scan, PII only, on the first N records of ../shared/data/instruct_t0_train_50k, 1 worker
  (in-process) and 2 workers (DirectRunner multi_processing); wall time includes start-up and writing.
* plain Presidio: BatchAnalyzerEngine over the same texts (prompt and response), same spaCy model, 1 core.
* spaCy NER alone: nlp.pipe with only tok2vec+ner, same texts, 1 core: the speed limit of model-based
  name detection.
* memory: peak RSS of the largest process (the scan or one SDK worker) at N and 4N records, 1 and 2 workers.

Run: .venv/bin/python bench/pii_speed.py [--n 5000] [--skip-baselines]

End to end on one core (issue 21): ``--end-to-end`` writes the first N T0 records with instruction, input and
output joined into one ``text`` field, then runs, each pinned to core 0 (``taskset -c 0``) as its own process
(start-up and model load included): ``lazaret scan --checks pii --runner=FnApiRunner`` and plain Presidio's
``BatchAnalyzerEngine`` (batch 50, the same spaCy small model) over the same texts. Reports CPU-seconds of
each process tree (user+sys, robust to a shared machine) and wall seconds.

Run: .venv/bin/python bench/pii_speed.py --end-to-end [--n 5000] [--skip-presidio] [--pii-nlp none]
     [--repeat 3] [--compare-src DIR]   (DIR: e.g. ``git archive main | tar -x -C DIR``, run interleaved)
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from _common import ROOT, machine, need_shared, read_jsonl


def write_slice(rows, path):
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def run_scan(path: str, out: str, extra) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB of the largest process: the scan itself or one of its SDK workers),
    sampled every 0.1 s with psutil (ru_maxrss of children only ever rises across runs)."""
    import psutil

    cmd = [str(ROOT / ".venv" / "bin" / "lazaret"), "scan", path, "--out", out, "--checks", "pii", "--quiet",
           "--no-report", "--overwrite", *extra]
    t = time.time()
    proc = subprocess.Popen(cmd)
    ps = psutil.Process(proc.pid)
    peak = 0.0
    while proc.poll() is None:
        try:
            procs = [ps, *ps.children(recursive=True)]
        except psutil.Error:
            break
        for q in procs:
            try:
                peak = max(peak, q.memory_info().rss / 2**20)
            except psutil.Error:
                pass
        time.sleep(0.1)
    if proc.wait() != 0:
        raise SystemExit(f"scan failed: {' '.join(cmd)}")
    return time.time() - t, peak


def texts_of(rows):
    out = []
    for r in rows:
        out.append(r["instruction"] + (("\n\n" + r["input"]) if r.get("input") else ""))
        out.append(r["output"])
    return out


def joined_texts(rows):
    return ["\n\n".join(x for x in (r["instruction"], r.get("input") or "", r["output"]) if x) for r in rows]


def presidio_batch(path: str) -> None:
    """Plain Presidio over the ``text`` field of a JSONL file: BatchAnalyzerEngine, batch 50, same model."""
    from lazaret.checks.pii.engine import SPACY_MODEL, offline_tldextract

    offline_tldextract()
    from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    with open(path, encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh]
    analyzer = AnalyzerEngine(nlp_engine=SpacyNlpEngine(models=[{"lang_code": "en", "model_name": SPACY_MODEL}]))
    found = 0
    for results in BatchAnalyzerEngine(analyzer_engine=analyzer).analyze_iterator(texts, language="en",
                                                                                   batch_size=50):
        found += len(results)
    print(f"presidio: {len(texts)} texts, {found} results")


def timed_child(cmd, env=None) -> tuple[float, float, float]:
    """(CPU-seconds of the child's process tree, wall seconds, peak RSS of the child in MB).

    ``os.wait4`` reports this child's own usage (with the descendants it waited for), so the peak RSS is the
    scan process's: with FnApiRunner the one worker runs inside it."""
    t = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env)
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.time() - t
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024.0


def same_outputs(a: str, b: str) -> bool:
    """Every output file but provenance.json (paths and times) is byte-identical in the two scans."""
    import filecmp

    def files(root):
        return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
                      if f != "provenance.json")

    names = files(a)
    return names == files(b) and all(filecmp.cmp(os.path.join(a, f), os.path.join(b, f), shallow=False)
                                     for f in names)


def end_to_end(n: int, skip_presidio: bool, nlp: str = "spacy", repeat: int = 1, srcs=("",)) -> None:
    """``srcs``: source trees to compare ("" = this checkout; a directory = its ``src`` on PYTHONPATH, e.g. a
    ``git archive`` of another commit), run interleaved ``repeat`` times; the median is printed."""
    rows = read_jsonl(need_shared() / "instruct_t0_train_50k" / "t0_train_50k.jsonl.gz", limit=n)
    print(f"PII end to end on one core (taskset -c 0), {n} T0 records as one text field, --pii-nlp {nlp} "
          f"({machine()}; CPU-seconds of each process tree, peak RSS of the scan process = its one worker)")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t0.jsonl")
        write_slice([{"text": t} for t in joined_texts(rows)], path)
        pin = ["taskset", "-c", "0"]
        runs = {src: [] for src in srcs}
        for rep in range(repeat):
            for k, src in enumerate(srcs):
                env = dict(os.environ)
                if src:
                    env["PYTHONPATH"] = os.path.join(src, "src")
                lz = [str(ROOT / ".venv" / "bin" / "lazaret"), "scan", path, "--out", os.path.join(tmp, f"out{k}"),
                      "--checks", "pii", "--pii-nlp", nlp, "--runner=FnApiRunner", "--quiet", "--no-report",
                      "--overwrite"]
                cpu, wall, rss = timed_child(pin + lz, env=env)
                runs[src].append((cpu, wall, rss))
                print(f"run {rep + 1} {src or 'this checkout'}: lazaret scan --checks pii: {cpu:7.1f} CPU-s "
                      f"{wall:7.1f} s wall {rss:6.0f} MB peak RSS  ({n / cpu:.1f} records per CPU-s)", flush=True)
        for src, got in runs.items():
            cpu = sorted(c for c, _, _ in got)[len(got) // 2]
            rss = sorted(r for _, _, r in got)[len(got) // 2]
            print(f"median of {len(got)}, {src or 'this checkout'}: {cpu:.1f} CPU-s, {n / cpu:.1f} records per "
                  f"CPU-s, {rss:.0f} MB peak RSS")
        for k, src in enumerate(srcs[1:], 1):
            same = same_outputs(os.path.join(tmp, "out0"), os.path.join(tmp, f"out{k}"))
            print(f"outputs of {src} and this checkout (all but provenance.json) byte-identical: {same}")
        if not skip_presidio:
            pcpu, pwall, prss = timed_child(pin + [sys.executable, __file__, "--presidio-only", path])
            print(f"Presidio BatchAnalyzerEngine (50): {pcpu:7.1f} CPU-s  {pwall:7.1f} s wall {prss:6.0f} MB peak RSS")
            mine = sorted(c for c, _, _ in runs[""])[len(runs[""]) // 2]
            print(f"speed-up (CPU-seconds, median of this checkout): {pcpu / mine:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--end-to-end", action="store_true")
    ap.add_argument("--skip-presidio", action="store_true")
    ap.add_argument("--pii-nlp", default="spacy", choices=["spacy", "none"], help="end to end: patterns only or NER")
    ap.add_argument("--repeat", type=int, default=1, help="end to end: runs per source tree (median printed)")
    ap.add_argument("--compare-src", action="append", default=[], metavar="DIR",
                    help="end to end: also run the scan with DIR/src on PYTHONPATH (e.g. git archive of main)")
    ap.add_argument("--presidio-only", metavar="JSONL", help=argparse.SUPPRESS)
    ap.add_argument("--skip-baselines", action="store_true")
    ap.add_argument("--skip-4x", action="store_true")
    args = ap.parse_args()
    if args.presidio_only:
        return presidio_batch(args.presidio_only)
    if args.end_to_end:
        return end_to_end(args.n, args.skip_presidio, args.pii_nlp, args.repeat, ["", *args.compare_src])
    shared = need_shared()
    rows = read_jsonl(shared / "instruct_t0_train_50k" / "t0_train_50k.jsonl.gz")
    n = args.n
    print(f"PII throughput on T0, first {n} records ({machine()})")
    with tempfile.TemporaryDirectory() as tmp:
        p1 = os.path.join(tmp, "t0.jsonl")
        write_slice(rows[:n], p1)
        results = {}
        wall, peak = run_scan(p1, os.path.join(tmp, "o1"), ["--direct_num_workers=1"])
        results["lazaret scan, 1 worker"] = (n / wall, peak)
        wall, peak = run_scan(p1, os.path.join(tmp, "o2"), ["--runner=DirectRunner",
                                                             "--direct_running_mode=multi_processing",
                                                             "--direct_num_workers=2"])
        results["lazaret scan, 2 workers"] = (n / wall, peak)
        if not args.skip_4x:
            p4 = os.path.join(tmp, "t0x4.jsonl")
            big = rows[: 4 * n] if len(rows) >= 4 * n else (rows * 4)[: 4 * n]
            write_slice(big, p4)
            wall, peak4 = run_scan(p4, os.path.join(tmp, "o4"), ["--direct_num_workers=1"])
            results[f"lazaret scan, 1 worker, {4 * n} records"] = (4 * n / wall, peak4)
            wall, peak4 = run_scan(p4, os.path.join(tmp, "o5"), ["--runner=DirectRunner",
                                                                  "--direct_running_mode=multi_processing",
                                                                  "--direct_num_workers=2"])
            results[f"lazaret scan, 2 workers, {4 * n} records"] = (4 * n / wall, peak4)
        texts = texts_of(rows[:n])
        if not args.skip_baselines:
            from lazaret.checks.pii.engine import SPACY_MODEL, offline_tldextract

            offline_tldextract()
            import spacy
            from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine
            from presidio_analyzer.nlp_engine import SpacyNlpEngine

            analyzer = AnalyzerEngine(nlp_engine=SpacyNlpEngine(models=[{"lang_code": "en",
                                                                         "model_name": SPACY_MODEL}]))
            batch = BatchAnalyzerEngine(analyzer_engine=analyzer)
            t = time.time()
            list(batch.analyze_iterator(texts, language="en", batch_size=64))
            results["plain Presidio BatchAnalyzerEngine, 1 core"] = (n / (time.time() - t), float("nan"))
            nlp = spacy.load(SPACY_MODEL, exclude=["tagger", "parser", "attribute_ruler", "lemmatizer", "senter"])
            t = time.time()
            for _ in nlp.pipe(texts, batch_size=64):
                pass
            results["spaCy NER alone (tok2vec+ner), 1 core"] = (n / (time.time() - t), float("nan"))
        print(f"{'what':<48}{'records/s':>10}{'peak RSS MB':>13}")
        for k, (rate, peak) in results.items():
            print(f"{k:<48}{rate:>10.1f}{peak:>13.0f}")
        print("(records/s counts records: each record is a prompt and a response text)")


if __name__ == "__main__":
    main()
