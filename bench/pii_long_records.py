"""PII cost of one long record: CPU-seconds of a whole ``lazaret scan --checks pii`` on one record of 0.25, 1
and 4 MB, and whether every phone number and e-mail address in it was redacted in ``clean/``.

The record is one ``text`` field of repeated sentences with names, phone numbers (several formats, some with
spaces, so a window cut at a space could split one) and e-mail addresses, every value distinct. Linear cost
means the CPU-seconds per MB stay flat as the record grows; the scan's start-up (~5-8 CPU-s) is measured
separately with a 1 KB record and subtracted.

Run: .venv/bin/python bench/pii_long_records.py [--sizes 0.25,1,4] [--pii-nlp none|spacy]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from typing import List, Tuple

from _common import ROOT, machine

NAMES = ("Maria Lopez", "John Smith", "Aiko Tanaka", "Peter Brown", "Fatima Haddad", "Olga Ivanova")
PHONE_FORMATS = ("555-{a}-{b}", "({a3}) {a} {b}", "+1 {a3} {a} {b}", "{a3}.{a}.{b}")


def long_record(size: int, seed: int = 7) -> Tuple[str, List[str]]:
    """A text of at least ``size`` characters and the phone numbers and e-mail addresses written in it."""
    rng = random.Random(seed)
    parts: List[str] = []
    values: List[str] = []
    length = 0
    i = 0
    while length < size:
        phone = PHONE_FORMATS[i % len(PHONE_FORMATS)].format(a3=rng.randint(201, 989), a=rng.randint(200, 999),
                                                              b=rng.randint(1000, 9999))
        email = f"{NAMES[i % len(NAMES)].split()[0].lower()}.{i}@example-{i % 97}.org"
        s = (f"{NAMES[i % len(NAMES)]} called {phone} on Monday and then wrote to {email} about the order "
             f"of {rng.randint(2, 90)} boxes. ")
        if i % 7 == 6:
            s += "\n\n"
        parts.append(s)
        values += [phone, email]
        length += len(s)
        i += 1
    return "".join(parts), values


def scan(path: str, out: str, nlp: str) -> Tuple[float, float]:
    """(CPU-seconds of the scan's process tree, wall seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.time()
    cmd = [str(ROOT / ".venv" / "bin" / "lazaret"), "scan", path, "--out", out, "--checks", "pii", "--pii-nlp", nlp,
           "--quiet", "--no-report", "--overwrite", "--runner=FnApiRunner"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.time() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def clean_text(out: str) -> str:
    texts = []
    clean = os.path.join(out, "clean")
    for name in sorted(os.listdir(clean)):
        with gzip.open(os.path.join(clean, name), "rt", encoding="utf-8") as fh:
            texts += [json.loads(line)["text"] for line in fh]
    return "\n".join(texts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="0.25,1,4", help="record sizes in MB")
    ap.add_argument("--pii-nlp", default="none", choices=("none", "spacy"))
    args = ap.parse_args()
    print(f"PII cost of one long record, lazaret scan --checks pii --pii-nlp {args.pii_nlp}, FnApiRunner "
          f"({machine()}; CPU-seconds of the process tree)")
    with tempfile.TemporaryDirectory() as tmp:
        base_path = os.path.join(tmp, "tiny.jsonl")
        with open(base_path, "w", encoding="utf-8") as fh:
            fh.write(json.dumps({"text": long_record(1000)[0]}) + "\n")
        base_cpu, _ = scan(base_path, os.path.join(tmp, "out0"), args.pii_nlp)
        print(f"start-up (1 KB record): {base_cpu:.1f} CPU-s")
        print(f"{'MB':>6}{'chars':>10}{'values':>8}{'CPU-s':>8}{'- start-up':>11}{'CPU-s/MB':>10}{'wall s':>8}"
              f"{'left in clean':>15}")
        for mb in (float(x) for x in args.sizes.split(",")):
            text, values = long_record(int(mb * 1_000_000))
            path = os.path.join(tmp, f"long_{mb}.jsonl")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(json.dumps({"text": text}) + "\n")
            out = os.path.join(tmp, f"out_{mb}")
            cpu, wall = scan(path, out, args.pii_nlp)
            clean = clean_text(out)
            left = sum(1 for v in values if v in clean)
            net = cpu - base_cpu
            print(f"{mb:>6.2f}{len(text):>10}{len(values):>8}{cpu:>8.1f}{net:>11.1f}{net / (len(text) / 1e6):>10.1f}"
                  f"{wall:>8.1f}{left:>15}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
