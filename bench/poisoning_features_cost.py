"""CPU of the poisoning scan's per-record features (``record_features``) under two or more source trees.

The scan's first step tokenises every record once; a change there is paid on every record, and the whole-stage
bench (``poisoning_cost_ab.py``) is too noisy on a loaded machine to see a few percent. This runs the function
alone on the first N T0 records, interleaving the trees, best of ``--repeat`` per round (CPU time of this
process).

    .venv/bin/python bench/poisoning_features_cost.py --n 20000 --src OLD/src --src src

Needs ../shared/data (T0).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load(src: str):
    """Import ``record_features`` and the policy defaults from one source tree (a fresh import per tree)."""
    for name in [m for m in sys.modules if m == "lazaret" or m.startswith("lazaret.")]:
        del sys.modules[name]
    sys.path.insert(0, src)
    try:
        features = importlib.import_module("lazaret.checks.poisoning.features")
        policy = importlib.import_module("lazaret.checks.poisoning.policy")
    finally:
        sys.path.remove(src)
    return features.record_features, policy._defaults()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--src", action="append", required=True, help="a source tree (its src/ directory); repeat")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench.poisoning_bases import base_objects, to_pipeline_record

    recs = [to_pipeline_record(o, i, "t0") for i, o in enumerate(base_objects("t0", args.n))]
    for rnd in range(1, args.rounds + 1):
        for src in args.src:
            record_features, params = _load(str(Path(src).resolve()))
            best = float("inf")
            for _ in range(args.repeat):
                t = time.process_time()
                for r in recs:
                    record_features(r, params)
                best = min(best, time.process_time() - t)
            print(f"round {rnd} {src}: record_features on {len(recs)} T0 records, best of {args.repeat}: "
                  f"{best:.2f} CPU-s ({len(recs) / best:,.0f} records per CPU-s)", flush=True)


if __name__ == "__main__":
    main()
