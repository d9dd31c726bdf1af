"""Prediction speed of two toxicity models, interleaved in one process (a fair comparison on a shared machine).

    nice -n 5 .venv/bin/python bench/toxicity_speed_pair.py OLD.ftz [NEW.ftz|default] [--runs 5]

Both score the same 50,000 short texts (TweetEval tweets, repeated) with `predict_batch` in batches of 1,024
(normalisation, fastText and, where the model has one, the calibration), alternating A, B, A, B, ...; prints
the median records per CPU-second of this process for each.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from toxicity_bench import DEFAULT_DATA, short_texts  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b", nargs="?", default="default")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    args = ap.parse_args(argv)
    from lazaret.checks.toxicity.model import ToxicityModel

    texts = short_texts(pathlib.Path(args.data))
    models = {name: ToxicityModel.load(name) for name in (args.a, args.b)}
    rates: dict = {name: [] for name in models}
    for name, model in models.items():
        model.predict_batch(texts[:2000])  # warm-up
    for _ in range(args.runs):
        for name, model in models.items():
            cpu = time.process_time()
            for i in range(0, len(texts), 1024):
                model.predict_batch(texts[i : i + 1024])
            rates[name].append(len(texts) / (time.process_time() - cpu))
    for name, values in rates.items():
        values.sort()
        cal = "calibrated" if models[name].calibration is not None else "raw"
        print(f"{name} ({models[name].sha256[:12]}, {cal}): median {values[len(values) // 2]:,.0f} short records "
              f"per CPU-second over {args.runs} runs (min {values[0]:,.0f}, max {values[-1]:,.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
