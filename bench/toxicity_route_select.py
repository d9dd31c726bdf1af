"""Two models, one score: a short-form and a long-form model combined by a fixed rule, on VALIDATION rows only.

    nice -n 5 .venv/bin/python bench/toxicity_route_select.py SHORT.ftz LONG.ftz [--cuts 0 140 200 280 400]

Issue 20 asks whether a long-form specialist (a model trained with the long-form sources weighted up and the
tweets down) combined with the shipped model closes the gap on long-form text. The rules are fixed here, before
any figure is read: (a) route by normalised-text length: a side longer than CUT characters is scored by LONG,
else by SHORT (CUT 0 = LONG everywhere; a cut above every text = SHORT everywhere); (b) the mean of the two
calibrated probabilities (costs two predictions per side, reported for comparison only). Each model applies its
own calibration file, so the combined score stays a probability.

Rows: the validation rows of bench/train_default_toxicity.py's data (TweetEval offensive/hate val, ToxiChat
dev, the hash-val 15% of Davidson and CAT-LARGE). Prints per source ROC-AUC and ECE, and the selection score
(mean ROC-AUC over offensive, hate, CAT-LARGE and ToxiChat, as in bench/toxicity_longform_select.py). No test
split, held-out set or clean corpus is read.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from train_default_toxicity import DEFAULT_DATA, PARAMS, train_files  # noqa: E402

SOURCES = {"offensive": "offensive", "hate": "hate", "labeled_data": "davidson", "cat_large": "cat",
           "toxichat": "toxichat"}
SCORED = ("offensive", "hate", "cat", "toxichat")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("short")
    ap.add_argument("long")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--cuts", type=int, nargs="*", default=[0, 100, 140, 200, 280, 400, 10**9])
    args = ap.parse_args(argv)
    from lazaret.checks.toxicity.model import ToxicityModel
    from lazaret.training.metrics import evaluate_scores
    from lazaret.training.toxicity import build_parser, load_data

    files = train_files(pathlib.Path(args.data))
    targs = build_parser().parse_args(["--train", *map(str, files), "--out", "unused.ftz",
                                       "--train-splits", "train", "--val-splits", "val", "dev", *PARAMS])
    _, val_rows, _ = load_data(targs)
    names = [next(v for k, v in SOURCES.items() if k in files[s].name) for s in targs.val_sources]
    short, long_ = ToxicityModel.load(args.short), ToxicityModel.load(args.long)
    texts = [t for t, _ in val_rows]
    y = [lab for _, lab in val_rows]
    lengths = [len(p) for p in short.prepare_many(texts)]
    s_short, s_long = short.predict_batch(texts), long_.predict_batch(texts)
    rules = {f"length > {c} -> long" if c < 10**9 else "short only": [b if n > c else a for a, b, n in
                                                                       zip(s_short, s_long, lengths)]
             for c in args.cuts}
    rules["mean of both (2 predictions)"] = [(a + b) / 2 for a, b in zip(s_short, s_long)]
    print("| rule | " + " | ".join(f"{n} AUC / ECE" for n in ("offensive", "hate", "davidson", "cat", "toxichat"))
          + " | score |\n|---|---|---|---|---|---|---|")
    for rule, scores in rules.items():
        cells, aucs = [], []
        for src in ("offensive", "hate", "davidson", "cat", "toxichat"):
            idx = [i for i, n in enumerate(names) if n == src]
            m = evaluate_scores([y[i] for i in idx], [scores[i] for i in idx], 0.5)
            cells.append(f"{m['roc_auc']:.3f} / {m['ece']:.3f}")
            if src in SCORED:
                aucs.append(m["roc_auc"])
        print(f"| {rule} | " + " | ".join(cells) + f" | {sum(aucs) / len(aucs):.4f} |")
    for src in ("offensive", "hate", "davidson", "cat", "toxichat"):
        ls = sorted(n for n, s in zip(lengths, names) if s == src)
        print(f"{src}: {len(ls)} val rows, normalised length median {ls[len(ls) // 2]}, "
              f"share > 280: {sum(n > 280 for n in ls) / len(ls):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
