"""Validation-only comparison of text-normalisation and training-mix variants for the default toxicity model.

    .venv/bin/python bench/toxicity_select_variants.py [--data ../shared/data] [--jobs 2]

Same selection data and score as bench/toxicity_select.py: mean ROC-AUC over the TweetEval offensive and hate
*val* splits, plus the share of GSM8K + code instruction sides flagged at the fpr:0.1 validation threshold.
Never read here: TweetEval test splits, Wikipedia Talk, HateCheck, T0. Each variant is a transformation applied
after the shipped normalisation (lazaret-tox-norm-1), at training and scoring time alike, or a change of the
training mix; the fastText parameters are the shipped ones (not quantised).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import shutil
import re
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from toxicity_select import BASE, DEFAULT_DATA, fit, load  # noqa: E402

_FURNITURE = re.compile(r"(?:^| )(?:@user|url)(?= |$)")
_NONASCII_SYM = re.compile(r"(?:^| )[^\x00-\x7f\w]+(?= |$)")


def drop_furniture(lines):
    return [" ".join(_FURNITURE.sub(" ", t).split()) for t in lines]


def drop_symbols(lines):
    return [" ".join(_NONASCII_SYM.sub(" ", _FURNITURE.sub(" ", t)).split()) for t in lines]


def drop_punct(lines):
    return [" ".join(w for w in t.split() if any(c.isalnum() for c in w)) for t in lines]


TRANSFORMS = {"norm-1": lambda x: x, "drop @user/url": drop_furniture,
              "drop @user/url + emoji/symbols": drop_symbols, "drop all punctuation/emoji/furniture": drop_punct}


def main(argv=None) -> int:
    import fasttext
    import numpy as np

    from lazaret.checks.toxicity.normalize import normalize_many
    from lazaret.training.metrics import choose_threshold, evaluate_scores

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--extra", default="{}", help="JSON of fastText parameters overriding the shipped ones")
    args = ap.parse_args(argv)
    params = {**BASE, **json.loads(args.extra)}
    train, val_off, val_hate, benign = load(pathlib.Path(args.data))
    n_dav = 24783  # Davidson rows come first in load()
    mixes = {
        "davidson + tweeteval": train,
        "tweeteval only": train[n_dav:],
        "davidson x0.5 + tweeteval": [r for i, r in enumerate(train) if i >= n_dav or i % 2 == 0],
        "davidson + tweeteval x2": train + train[n_dav:],
    }
    jobs = [(t, "davidson + tweeteval") for t in TRANSFORMS] + [("norm-1", m) for m in mixes if m != "davidson + tweeteval"]
    work = tempfile.mkdtemp(prefix="tox-variants-")
    norm_val_off = normalize_many([t for t, _ in val_off])
    norm_val_hate = normalize_many([t for t, _ in val_hate])
    norm_benign = normalize_many(benign)

    def run(job):
        tname, mname = job
        tf = TRANSFORMS[tname]
        rows = list(mixes[mname])
        order = list(range(len(rows)))
        random.Random(0).shuffle(order)
        texts = tf(normalize_many([rows[i][0] for i in order]))
        path = os.path.join(work, f"{abs(hash(job))}.txt")
        with open(path, "w", encoding="utf-8") as fh:
            for i, text in zip(order, texts):
                if text:
                    fh.write(("__label__toxic " if rows[i][1] else "__label__clean ") + text + "\n")
        out = path[:-4] + ".bin"
        fit({"train": path, "out": out, "params": params, "quantize": None})
        return job, out

    def score(model, lines):
        lines = [t if t else " " for t in lines]
        labels, probs = model.predict(lines, k=-1)
        return np.array([dict(zip(l, p)).get("__label__toxic", 0.0) for l, p in zip(labels, probs)])

    with ThreadPoolExecutor(args.jobs) as pool:
        for (tname, mname), out in pool.map(run, jobs):
            tf = TRANSFORMS[tname]
            model = fasttext.load_model(out)
            s_off, s_hate = score(model, tf(norm_val_off)), score(model, tf(norm_val_hate))
            y_off, y_hate = [y for _, y in val_off], [y for _, y in val_hate]
            th = choose_threshold(y_off + y_hate, list(s_off) + list(s_hate), "fpr:0.1")
            a_off = evaluate_scores(y_off, s_off, th)["roc_auc"]
            a_hate = evaluate_scores(y_hate, s_hate, th)["roc_auc"]
            b = score(model, tf(norm_benign))
            print(json.dumps({"transform": tname, "mix": mname, "val_auc_off": a_off, "val_auc_hate": a_hate,
                              "val_auc_mean": round((a_off + a_hate) / 2, 4), "threshold": th,
                              "benign_flag_rate": round(float((b >= th).mean()), 4)}), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
