"""fastText's own hyperparameter search (autotune) on the default model's data, validation rows only (issue 20).

    nice -n 5 .venv/bin/python bench/toxicity_autotune.py [--duration 900] [--model-size 4M] [--start-from-shipped]
                                                          [--metric f1:__label__toxic] [--data ../shared/data]

The training file is exactly the one `bench/train_default_toxicity.py` trains the shipped model on (same files,
hash split, --train-repeat weights, lazaret normalisation). The autotune validation file holds the validation
rows of the four sources the selection score averages over (TweetEval offensive and hate val, CAT-LARGE
hash-val, ToxiChat dev; Davidson's val is left out as in the score), normalised the same way. No test split,
held-out set or clean instruction corpus is read. Autotune runs single-threaded (`thread=1`) with
`autotuneModelSize` so the quantised model stays within the size budget, and prints the hyperparameters it
chose; `bench/toxicity_longform_select.py` then retrains them as an ordinary candidate (one
`lazaret train-toxicity` command line) so they are measured like every other row of docs/toxicity.md.
Prints the CPU-seconds of the autotune child process.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from train_default_toxicity import DEFAULT_DATA, PARAMS, train_files  # noqa: E402

SCORED = ("offensive", "hate", "cat_large", "toxichat")  # the selection score's sources (Davidson left out)

CHILD = r"""
import json, sys
import fasttext
spec = json.loads(sys.argv[1])
model = fasttext.train_supervised(input=spec["train"], autotuneValidationFile=spec["val"],
                                  autotuneMetric=spec["metric"], autotuneDuration=spec["duration"],
                                  autotuneModelSize=spec["size"], thread=1, seed=0, verbose=3, **spec["start"])
a = model.f.getArgs()
keys = ["lr", "dim", "ws", "epoch", "minCount", "wordNgrams", "loss", "bucket", "minn", "maxn", "lrUpdateRate",
        "t", "dsub", "qnorm", "cutoff", "retrain", "qout"]
out = {k: (str(getattr(a, k)) if k == "loss" else getattr(a, k)) for k in keys if hasattr(a, k)}
out["quantized"] = model.is_quantized()
model.save_model(spec["out"])
print("CHOSEN " + json.dumps(out))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--duration", type=int, default=900, help="autotune seconds (wall clock, fastText's own)")
    ap.add_argument("--model-size", default="4M", help="autotuneModelSize (%(default)s)")
    ap.add_argument("--metric", default="f1:__label__toxic", help="autotuneMetric (%(default)s)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "tox_autotune"))
    ap.add_argument("--start-from-shipped", action="store_true",
                    help="start the search at the shipped model's parameters (dim 8, word bigrams, bucket 200k, "
                         "lr 0.1, epoch 5) instead of fastText's defaults (dim 100): cheaper trials, so more of "
                         "them in the same time, around the recipe to beat")
    args = ap.parse_args(argv)
    from lazaret.checks.toxicity.normalize import normalize_many
    from lazaret.training.toxicity import build_parser, load_data, write_fasttext_file

    data = pathlib.Path(args.data)
    files = train_files(data)
    targs = build_parser().parse_args(["--train", *map(str, files), "--out", "unused.ftz",
                                       "--train-splits", "train", "--val-splits", "val", "dev", *PARAMS])
    train_rows, val_rows, _ = load_data(targs)
    keep = [i for i, s in enumerate(targs.val_sources) if any(k in files[s].name for k in SCORED)]
    val = [val_rows[i] for i in keep]
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lazaret-autotune-") as tmp:
        train_txt = os.path.join(tmp, "train.txt")
        val_txt = os.path.join(tmp, "val.txt")
        n_train = write_fasttext_file(train_rows, train_txt, targs.label, 0, targs.max_chars)
        n_val = write_fasttext_file(val, val_txt, targs.label, 0, targs.max_chars)
        print(f"train lines {n_train}, autotune validation lines {n_val} "
              f"({sum(y for _, y in val)} toxic; sources {', '.join(SCORED)})", flush=True)
        spec = {"train": train_txt, "val": val_txt, "metric": args.metric, "duration": args.duration,
                "size": args.model_size, "out": str(out_dir / "autotuned.ftz"),
                "start": ({"dim": 8, "wordNgrams": 2, "bucket": 200000, "lr": 0.1, "epoch": 5}
                          if args.start_from_shipped else {})}
        t0 = os.times()
        done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True)
        t1 = os.times()
    cpu = (t1.children_user - t0.children_user) + (t1.children_system - t0.children_system)
    (out_dir / "autotune.log").write_text(done.stdout + "\n" + done.stderr)
    if done.returncode:
        print(done.stderr[-3000:], file=sys.stderr)
        return 1
    chosen = [line for line in done.stdout.splitlines() if line.startswith("CHOSEN ")]
    result = json.loads(chosen[-1][len("CHOSEN "):])
    result.update({"start_from_shipped": args.start_from_shipped, "duration": args.duration,
                   "model_size": args.model_size, "metric": args.metric,
                   "cpu_seconds": round(cpu, 1), "autotuned_file_bytes": (out_dir / "autotuned.ftz").stat().st_size})
    scores = [float(line.split("=")[1]) for line in done.stderr.splitlines() if line.startswith("currentScore")]
    result["trials_scored"] = len(scores)
    result["best_trial_metric"] = max(scores) if scores else None
    print(f"trials scored: {len(scores)}, best {args.metric} {result['best_trial_metric']} "
          f"(full log: {out_dir / 'autotune.log'})")
    (out_dir / "chosen.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
