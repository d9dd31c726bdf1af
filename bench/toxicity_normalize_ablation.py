"""Does the toxicity text normalisation help? Train the default's parameters on three normalisations.

    .venv/bin/python bench/toxicity_normalize_ablation.py [--data ../shared/data]

For each variant (whitespace folding only; + lower-casing; the full lazaret normalisation) train on the
default training data (Davidson + TweetEval offensive/hate train, not quantised), then print the TweetEval
*validation* ROC-AUC and the T0 flag rate per side at the `fpr:0.1` threshold chosen on validation.
No held-out set is used.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pathlib
import random
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_DATA = pathlib.Path(os.environ.get("LAZARET_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _rows(path):
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def main(argv=None) -> int:
    import fasttext
    import numpy as np

    from lazaret.checks.toxicity.normalize import normalize_many
    from lazaret.training.metrics import choose_threshold, evaluate_scores
    from lazaret.training.toxicity import fit_fasttext

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    args = ap.parse_args(argv)
    data = pathlib.Path(args.data)
    labelled = _rows(data / "toxicity_tweeteval_offensive" / "offensive.jsonl.gz")
    labelled += _rows(data / "toxicity_tweeteval_hate" / "hate.jsonl.gz")
    train = [(r["text"], r["label"]) for r in _rows(data / "toxicity_davidson" / "labeled_data.jsonl.gz")]
    train += [(r["text"], r["label"]) for r in labelled if r["split"] == "train"]
    val = [(r["text"], r["label"]) for r in labelled if r["split"] == "val"]
    random.Random(0).shuffle(train)
    t0 = _rows(data / "instruct_t0_train_50k" / "t0_train_50k.jsonl.gz")
    prompts = [r["instruction"] for r in t0]
    responses = [r["output"] for r in t0]

    variants = {
        "whitespace only": lambda ts: [" ".join(t.split()) for t in ts],
        "+ lower-case": lambda ts: [" ".join(t.lower().split()) for t in ts],
        "lazaret normalize": normalize_many,
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "train.txt")
        for name, prep in variants.items():
            with open(path, "w", encoding="utf-8") as fh:
                for (_, y), text in zip(train, prep([t for t, _ in train])):
                    if text:
                        fh.write(("__label__toxic " if y else "__label__clean ") + text + "\n")
            # fit_fasttext trains in a fresh process (fastText 0.9.2 misbehaves when it trains twice in one)
            fit_fasttext(path, os.path.join(tmp, "m.bin"), dict(lr=0.1, epoch=5, dim=16, bucket=100000,
                                                                  wordNgrams=2, thread=1, seed=0))
            model = fasttext.load_model(os.path.join(tmp, "m.bin"))

            def score(texts):
                prepared = [t if t else " " for t in prep(texts)]
                labels, probs = model.predict(prepared, k=-1)
                return np.array([dict(zip(l, p)).get("__label__toxic", 0.0) for l, p in zip(labels, probs)])

            yv = [y for _, y in val]
            sv = score([t for t, _ in val])
            th = choose_threshold(yv, sv, "fpr:0.1")
            auc = evaluate_scores(yv, sv, th)["roc_auc"]
            sp, sr = score(prompts), score(responses)
            print(f"{name:18s} validation ROC-AUC {auc:.3f}  threshold {th:.2f}  "
                  f"T0 flagged: prompt {100 * (sp >= th).mean():.2f}%  response {100 * (sr >= th).mean():.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
