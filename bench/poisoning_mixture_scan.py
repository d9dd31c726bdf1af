"""The chat mixture as ONE file, scanned by `lazaret scan` itself (not the in-process harness of
bench/poisoning_space.py): the way a user meets a corpus concatenated from several sources.

    python bench/poisoning_mixture_scan.py --size 50 --seed 1 [--clean-only] [--families a,b] [--rules DIR] [--work DIR]

Writes the mixture base of bench/poisoning_bases.py (GSM8K, T0 4k, code; chat rows with Alpaca rows among them,
some with a system prompt) plus, unless --clean-only, the nine families of bench/attacks/space.py at --size
records each (--seed; seeds >= 100 draw the held-out parameter range) to one .jsonl, runs
`lazaret scan FILE --checks poisoning`, and prints per family the share of planted records held with a
poisoning reason, and the clean records held as poisoning (by rule). Planted ids start with "poison-<family>-".
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.attacks.space import DEFAULT, SPACE  # noqa: E402
from bench.poisoning_bases import chat_mixture, cpu_s, load_alpaca  # noqa: E402


def write_mixture(path: str, size: int, seed: int, clean_only: bool, families=None) -> int:
    objs = chat_mixture(4000)
    if not clean_only:
        pool = load_alpaca("gsm8k") + load_alpaca("t0", 4000) + load_alpaca("code")
        for fam in families or DEFAULT:
            objs += SPACE[fam](pool, size, seed, "messages").records
    random.Random(seed).shuffle(objs)
    with open(path, "w", encoding="utf-8") as fh:
        for o in objs:
            fh.write(json.dumps(o, sort_keys=True) + "\n")
    return len(objs)


def score(out: str, path: str):
    import pyarrow.dataset as ds

    held = {}
    for r in ds.dataset(os.path.join(out, "quarantine"), format="parquet").to_table().to_pylist():
        held[r["record_id"]] = [f'{x.get("check")}:{x.get("rule")}' for x in r.get("reasons") or []]
    fam, found, fp = collections.Counter(), collections.Counter(), collections.Counter()
    n_clean = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            rid = str(json.loads(line)["id"])
            pois = [x for x in held.get(rid, ()) if x.startswith("poisoning:")]
            if rid.startswith("poison-"):
                f = rid.split("-")[1]
                fam[f] += 1
                found[f] += bool(pois)
            else:
                n_clean += 1
                if pois:
                    fp[pois[0]] += 1
    return {f: round(found[f] / fam[f], 2) for f in sorted(fam)}, n_clean, dict(fp)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--clean-only", action="store_true")
    ap.add_argument("--rules", default=None, help="rules directory (e.g. a policy with other poisoning bounds)")
    ap.add_argument("--work", default=None, help="where the file and the scan output go (default: a temp dir)")
    ap.add_argument("--families", default="", help="comma-separated families to plant (default: all nine at once, "
                                                   "about 10%% of the corpus at --size 250)")
    args = ap.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    unknown = sorted(set(families) - set(SPACE))
    if unknown:
        ap.error(f"unknown families: {', '.join(unknown)} (known: {', '.join(sorted(SPACE))})")
    work = args.work or tempfile.mkdtemp(prefix="lazaret-mixture-")
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, "mixture.jsonl")
    n = write_mixture(path, args.size, args.seed, args.clean_only, families)
    out = os.path.join(work, "out")
    cmd = [os.path.join(os.path.dirname(sys.executable), "lazaret"), "scan", path, "--out", out, "--checks",
           "poisoning", "--overwrite", "--quiet", "--no-report"] + (["--rules", args.rules] if args.rules else [])
    c0 = cpu_s()
    subprocess.run(cmd, check=True)
    recall, n_clean, fp = score(out, path)
    print(f"records {n}, scan {cpu_s() - c0:.0f} CPU-s; size {args.size}, seed {args.seed}")
    print("recall (held as poisoning):", json.dumps(recall))
    print(f"clean {n_clean}, held as poisoning {sum(fp.values())} ({100 * sum(fp.values()) / max(n_clean, 1):.2f}%):",
          json.dumps(fp))


if __name__ == "__main__":
    main()
