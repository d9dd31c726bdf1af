"""Peak RSS of `lazaret scan` on decompression bombs and on a file of many short lines (issue 19, item 8).

Prints, per input, the scan's peak RSS (ru_maxrss of the scan process: in-process runner, so runner and
worker) and its CPU-seconds, next to a one-record baseline. The claim it checks: peak RSS is bounded by
configuration (--max-record-bytes, 1 MiB decompression steps, 8 MiB spill thresholds), not by an input's
decompressed size.

    .venv/bin/python bench/hostile_memory.py [--line-gib 2] [--short-lines 300000] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import zlib

import zstandard

SCAN = ["--quiet", "--no-report", "--checks", "pii,dedup", "--pii-nlp", "none"]


def build(work: str, line_gib: int, short_lines: int) -> dict:
    block = b"A" * (1 << 20)
    inputs = {}
    base = os.path.join(work, "baseline")
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, "one.jsonl"), "w") as fh:
        fh.write('{"text": "hello"}\n')
    inputs["baseline: one record"] = base
    for kind in ("gz", "zst"):
        folder = os.path.join(work, f"bomb_{kind}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"line.jsonl.{kind}")
        comp = (zlib.compressobj(9, zlib.DEFLATED, 31) if kind == "gz"
                else zstandard.ZstdCompressor(level=3).compressobj())
        with open(path, "wb") as fh:
            fh.write(comp.compress(b'{"text": "'))
            for _ in range(line_gib * 1024):
                fh.write(comp.compress(block))
            fh.write(comp.compress(b'"}\n') + comp.flush())
        inputs[f"one {line_gib} GiB line, .jsonl.{kind} of {os.path.getsize(path) // 1024} KB"] = folder
    folder = os.path.join(work, "short")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "short.jsonl.gz")
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as fh:
        for i in range(0, short_lines, 1000):
            fh.write(comp.compress(b"".join(b'{"text": "hi %d"}\n' % (j % 7) for j in range(1000))))
        fh.write(comp.flush())
    inputs[f"{short_lines:,} short lines, .jsonl.gz of {os.path.getsize(path) // 1024} KB"] = folder
    return inputs


def measure(folder: str, out: str) -> tuple:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    code = ("import resource,sys; from lazaret.cli import main; rc=main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    res = subprocess.run([sys.executable, "-c", code, "scan", folder, "--out", out, *SCAN],
                         capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return int(res.stdout.strip().splitlines()[-1]) / 1024, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--line-gib", type=int, default=2)
    ap.add_argument("--short-lines", type=int, default=300_000)
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="lazaret-hostile-")
    inputs = build(work, args.line_gib, args.short_lines)
    print(f"{'input':<52} {'peak RSS MB':>12} {'CPU s':>8}")
    for i, (name, folder) in enumerate(inputs.items()):
        peak, cpu = measure(folder, os.path.join(work, f"out{i}"))
        print(f"{name:<52} {peak:>12.0f} {cpu:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
