"""Choose the calibration recipe of the default toxicity model on validation data only (issue 20).

    nice -n 5 .venv/bin/python bench/toxicity_calibration_select.py MODEL.ftz [--data ../shared/data]

For a trained model (raw scores: its calibration file is ignored), every recipe = method (platt | isotonic) x
weighting (per-file | pooled) x fitted on (all validation rows | the long-form sources' rows only) is scored by
2-fold cross-fitting on the validation rows: fit on one half (split by a hash of the row), measure the ECE
(10 equal-width bins, as everywhere in lazaret) on the other half, per source, and average the two folds. No
test row is read. The recipe with the lowest mean ECE over the two long-form sources (CAT-LARGE, ToxiChat) is
the one bench/train_default_toxicity.py uses, among those that keep <= 1% of the GSM8K + code instruction
records (never trained on) with a side >= 0.5 (the calibration fitted on all the validation rows of the recipe);
the tweet sources' ECE is printed beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from train_default_toxicity import DEFAULT_DATA, PARAMS, train_files  # noqa: E402

LONGFORM = ("cat_large", "toxichat")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    args = ap.parse_args(argv)
    from lazaret.checks.toxicity.calibration import fit_calibration
    from lazaret.checks.toxicity.model import ToxicityModel
    from lazaret.training.metrics import evaluate_scores
    from lazaret.training.toxicity import build_parser, load_data

    files = [str(p) for p in train_files(pathlib.Path(args.data))]
    targs = build_parser().parse_args(["--train", *files, "--out", "unused.ftz", *PARAMS,
                                       "--val-splits", "val", "dev"])
    _, val, _ = load_data(targs)
    src = np.array(targs.val_sources)
    y = np.array([lab for _, lab in val])
    model = ToxicityModel.load(args.model, calibration="none")
    raw = np.array(model.raw_batch([t for t, _ in val]))
    fold = np.array([int(hashlib.sha256(t.encode()).hexdigest()[:2], 16) % 2 for t, _ in val])
    names = [pathlib.Path(f).name.split(".")[0] for f in files]
    longform = np.array([any(k in names[s] for k in LONGFORM) for s in src])
    from toxicity_longform_select import clean_sides

    clean = clean_sides(pathlib.Path(args.data))
    gc = [side for name in ("gsm8k", "code") for rec in clean[name] for side in rec]
    gc_raw = np.array(model.raw_batch(gc)).reshape(-1, 2)

    def gc_rate(cal) -> str:
        top = (cal.apply(gc_raw.ravel()) if cal else gc_raw.ravel()).reshape(-1, 2).max(axis=1)
        return f"{100 * float((top >= 0.5).mean()):.2f}%"

    print("| method | weighting | fitted on | " + " | ".join(f"ECE {n}" for n in names)
          + " | mean ECE long-form | GSM8K+code records with a side >= 0.5 (fit on all val rows) |")
    print("|---|---|---|" + "---|" * len(names) + "---|---|")
    raw_eces = [evaluate_scores(y[src == i], raw[src == i], 0.5)["ece"] for i in range(len(names))]
    print("| none (raw) | | | " + " | ".join(f"{e:.3f}" for e in raw_eces) + " | "
          f"{np.mean([e for e, n in zip(raw_eces, names) if any(k in n for k in LONGFORM)]):.3f} | {gc_rate(None)} |")
    for method in ("platt", "isotonic"):
        for weighting in ("per-file", "pooled"):
            for subset in ("all", "long-form"):
                eces = np.zeros(len(names))
                for k in (0, 1):
                    fit = (fold != k) & (longform if subset == "long-form" else True)
                    w = None
                    if weighting == "per-file":
                        counts = {s: int((src[fit] == s).sum()) for s in set(src[fit].tolist())}
                        w = np.array([1.0 / counts[s] for s in src[fit]])
                    cal = fit_calibration(method, raw[fit], y[fit], model.sha256, weights=w)
                    probs = cal.apply(raw)
                    for i in range(len(names)):
                        held = (fold == k) & (src == i)
                        eces[i] += evaluate_scores(y[held], probs[held], 0.5)["ece"] / 2
                lf = np.mean([e for e, n in zip(eces, names) if any(k in n for k in LONGFORM)])
                fit = longform if subset == "long-form" else np.ones(len(y), dtype=bool)
                w = None
                if weighting == "per-file":
                    counts = {s: int((src[fit] == s).sum()) for s in set(src[fit].tolist())}
                    w = np.array([1.0 / counts[s] for s in src[fit]])
                full = fit_calibration(method, raw[fit], y[fit], model.sha256, weights=w)
                print(f"| {method} | {weighting} | {subset} | " + " | ".join(f"{e:.3f}" for e in eces)
                      + f" | {lf:.3f} | {gc_rate(full)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
