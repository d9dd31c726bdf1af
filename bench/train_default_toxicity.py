"""Reproduce the shipped default toxicity model (src/lazaret/models/toxicity_default.ftz + .json).

    .venv/bin/python bench/train_default_toxicity.py [--data ../shared/data] [--out DIR] [--name NAME]
                                                     [any further `lazaret train-toxicity` option, which
                                                      overrides the default's, e.g. --minn 3 --maxn 5]

Training data (see docs/toxicity.md for why): Davidson et al. 2017, the TweetEval offensive and hate *train*
splits, CAT-LARGE Wikipedia talk comments and ToxiChat Reddit turns (its *train* split). Files without splits
(Davidson, CAT-LARGE) are split by a hash of the row id: 70% train, 15% val, 15% test. Validation (calibration
fit; parameters were chosen on it too): the TweetEval *val* splits, ToxiChat *dev*, the hash-val rows.
Never trained or tuned on: every test split and hash-test share, the Wikipedia Talk test set, HateCheck, and
the clean instruction corpora (T0, GSM8K, code). The calibration file (Platt coefficients, JSON) is written
beside the model; the threshold 0.5 is a calibrated probability. Training is single-threaded with a fixed
seed, so the same data and parameters give the same model file.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_DATA = pathlib.Path(os.environ.get("LAZARET_SHARED_DATA", ROOT.parent / "shared" / "data"))

# The parameters of the shipped model, selected on validation data only by bench/toxicity_longform_select.py
# and bench/toxicity_calibration_select.py (docs/toxicity.md, "Issue 20: long-form data and calibration").
SELECTION = (
    "issue 20: bench/toxicity_longform_select.py trained 17 candidates (source weighting by class balancing or "
    "file repetition, subwords, dim/epoch/lr, unigrams, quantisation, without HatEval) on Davidson + TweetEval "
    "offensive/hate train + CAT-LARGE (hash 70% train) + ToxiChat train; score = mean ROC-AUC over the "
    "TweetEval offensive val, TweetEval hate val, CAT-LARGE hash-val and ToxiChat dev rows, subject to <= 0.8% of "
    "GSM8K + code instruction records with a side >= 0.5 (1% target less a margin for the shift to other "
    "corpora), <= 10 MB, and a prediction cost no higher than the previous default (dim <= 8, word bigrams, no "
    "subwords: dim 32 measured 23k tweets per CPU-second against the 50k target); best: Davidson weighted 0.5, "
    "CAT-LARGE and ToxiChat weighted 3 (--train-repeat), dim 8, quantised. Calibration: "
    "bench/toxicity_calibration_select.py, 2-fold cross-fitted on the validation rows, lowest mean ECE over the "
    "CAT-LARGE and ToxiChat validation rows under the same false-positive constraint: Platt, per-file weights, "
    "all validation rows. No test row (TweetEval/ToxiChat/CAT test, Wikipedia Talk, HateCheck, T0) was used to "
    "choose."
)
PARAMS = [
    "--lr", "0.1", "--epoch", "5", "--dim", "8", "--word-ngrams", "2",
    "--minn", "0", "--maxn", "0", "--bucket", "200000", "--min-count", "1",
    "--seed", "0", "--thread", "1", "--cutoff", "0", "--dsub", "2",
    "--hash-split", "15", "15",
    # Davidson, TweetEval offensive, TweetEval hate, CAT-LARGE, ToxiChat (the order of train_files())
    "--train-repeat", "0.5", "1", "1", "3", "3",
    "--calibration", "platt", "--calibration-weighting", "per-file",
    "--threshold", "0.5",
]


def train_files(data: pathlib.Path) -> "list[pathlib.Path]":
    """The labelled training files (their train splits are trained on, their val/dev splits validate)."""
    return [
        data / "toxicity_davidson" / "labeled_data.jsonl.gz",
        data / "toxicity_tweeteval_offensive" / "offensive.jsonl.gz",
        data / "toxicity_tweeteval_hate" / "hate.jsonl.gz",
        data / "toxicity_longform" / "cat_large_wikipedia_talk.jsonl.gz",
        data / "toxicity_longform" / "toxichat_reddit.jsonl.gz",
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="the shared data folder (%(default)s)")
    ap.add_argument("--out", default=str(ROOT / "src" / "lazaret" / "models"), help="output folder")
    ap.add_argument("--name", default="toxicity_default", help="model name and file stem (%(default)s)")
    ap.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation in the metadata")
    args, extra = ap.parse_known_args(argv)
    data = pathlib.Path(args.data)
    train = train_files(data)
    held_out = [
        data / "toxicity_wikipedia_talk_testset" / "wiki_toxicity_testset.jsonl.gz",
        data / "toxicity_hatecheck" / "test_suite_cases.jsonl.gz",
        # the training files' own test rows: their test split, or the --hash-split test share for files
        # without splits (Davidson, CAT-LARGE), so each source shows its AUC on its own test rows
        *train,
    ]
    missing = [str(p) for p in train + held_out if not p.is_file()]
    if missing:
        print("missing data files: " + ", ".join(missing), file=sys.stderr)
        return 2
    from lazaret.training.toxicity import main as train_main

    cli = ["--train", *map(str, train), "--out", str(pathlib.Path(args.out) / f"{args.name}.ftz"),
           "--name", args.name, "--label", "__label__toxic",
           "--train-splits", "train", "--val-splits", "val", "dev", "--eval-splits", "test",
           "--paths-relative-to", str(data.parent), "--selection", SELECTION, *PARAMS]
    extra = [str(data / "toxicity_longform" / e[len("longform:"):]) if e.startswith("longform:") else e
             for e in extra]  # --calibration-files longform:cat_large_wikipedia_talk.jsonl.gz ...
    cli += extra  # argparse keeps the last value of a repeated option: these override PARAMS
    if not args.no_eval:
        cli += ["--eval", *map(str, held_out)]
    return train_main(cli)


if __name__ == "__main__":
    sys.exit(main())
