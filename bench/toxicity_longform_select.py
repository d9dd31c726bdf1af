"""Candidates for the long-form default toxicity model (issue 20): train each, report validation and test.

    nice -n 5 .venv/bin/python bench/toxicity_longform_select.py [--only NAME ...] [--data ../shared/data]

Every candidate is one `bench/train_default_toxicity.py` command line (so one `lazaret train-toxicity` command
line) with the extra options listed in CANDIDATES, trained single-threaded into bench/results/tox_cands/NAME.
For each it prints one Markdown row:
- validation (selection uses these only): ROC-AUC and ECE on each source's validation rows (TweetEval val,
  ToxiChat dev, the hash-held-out 15% of Davidson and CAT-LARGE), and the share of GSM8K + code instruction
  records with a side at or above 0.5 / at or above the model's threshold (never trained on);
- test (each candidate touches them once, here; never used to choose): ROC-AUC on the Wikipedia talk test set,
  ToxiChat test, TweetEval offensive test, HateCheck, CAT-LARGE's hash-held-out test rows; ECE on Wikipedia
  talk and ToxiChat test; the T0 share with a side >= 0.5 and acted on.
Results accumulate in bench/results/toxicity_longform_select.json (git-ignored; a rerun skips finished
candidates unless --force).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_DATA = pathlib.Path(os.environ.get("LAZARET_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results"

# name -> extra `lazaret train-toxicity` options on top of bench/train_default_toxicity.py's PARAMS.
CANDIDATES = {
    "B_all_sources_unweighted": ["--balance-sources", "0"],
    "C_balanced_0.3_rep10": ["--balance-sources", "0.3", "--balance-max-repeat", "10"],
    "D_balanced_0.5_rep10": ["--balance-sources", "0.5", "--balance-max-repeat", "10"],
    "E_balanced_0.3_subwords": ["--balance-sources", "0.3", "--balance-max-repeat", "10", "--minn", "3",
                                "--maxn", "5", "--bucket", "400000"],
    "F_balanced_0.3_dim16_ep10": ["--balance-sources", "0.3", "--balance-max-repeat", "10", "--dim", "16",
                                  "--epoch", "10"],
    "G_balanced_0.3_rep30": ["--balance-sources", "0.3", "--balance-max-repeat", "30"],
    # unweighted by class; long-form files (CAT-LARGE, ToxiChat) repeated so that they weigh like the tweets
    "H_longform_x3": ["--train-repeat", "1", "1", "1", "3", "3"],
    "I_subwords": ["--minn", "3", "--maxn", "5", "--bucket", "400000"],
    "J_longform_x3_subwords": ["--train-repeat", "1", "1", "1", "3", "3", "--minn", "3", "--maxn", "5",
                               "--bucket", "400000"],
    "K_dim16_ep10": ["--dim", "16", "--epoch", "10"],
    "L_lr0.3_ep10": ["--lr", "0.3", "--epoch", "10"],
    "M_not_quantised": ["--no-quantize"],
    "N_unigrams": ["--word-ngrams", "1"],
    "O_dim32_ep10_lr0.05": ["--dim", "32", "--epoch", "10", "--lr", "0.05"],
    # --train-repeat order: Davidson, TweetEval offensive, TweetEval hate, CAT-LARGE, ToxiChat; 0 = validate only
    "P_davidson_half_longform_x3": ["--train-repeat", "0.5", "1", "1", "3", "3"],
    # HatEval counts only hate against women or immigrants: its profane non-hate tweets are label 0, the
    # opposite of every other source's definition; trained without it (its val split still scored)
    "Q_no_hateval_train": ["--train-repeat", "1", "1", "0", "1", "1"],
    "R_no_hateval_longform_x3": ["--train-repeat", "1", "1", "0", "3", "3"],
    # issue 20, second round (docs/toxicity.md): a long-form specialist (tweets down, long-form up) and word
    # n-gram settings; the autotuned candidate's options come from bench/toxicity_autotune.py
    "S_tweets_quarter_longform_x6": ["--train-repeat", "0.25", "0.5", "0.5", "6", "6"],
    "T_trigrams_bucket2M_cutoff300k": ["--train-repeat", "0.5", "1", "1", "3", "3", "--word-ngrams", "3",
                                       "--bucket", "2000000", "--cutoff", "300000"],
    "U_bigrams_bucket2M_cutoff300k": ["--train-repeat", "0.5", "1", "1", "3", "3", "--bucket", "2000000",
                                      "--cutoff", "300000"],
    # the same larger bucket without pruning (quantised cutoff 0: about 8 MB at dim 8)
    "V_bigrams_bucket2M": ["--train-repeat", "0.5", "1", "1", "3", "3", "--bucket", "2000000"],
    "W_trigrams_bucket2M": ["--train-repeat", "0.5", "1", "1", "3", "3", "--word-ngrams", "3",
                            "--bucket", "2000000"],
    # fastText autotune's pick (bench/toxicity_autotune.py --duration 1200 --model-size 4M, metric
    # f1:__label__toxic on the four scored sources' validation rows), retrained the ordinary way
    "X_autotune_1200s_4M": ["--train-repeat", "0.5", "1", "1", "3", "3", "--lr", "0.1692979210449485",
                            "--dim", "105", "--epoch", "2", "--word-ngrams", "5", "--minn", "3", "--maxn", "6",
                            "--bucket", "580456", "--cutoff", "60804"],
}


def _rows(path: pathlib.Path) -> list:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def clean_sides(data: pathlib.Path) -> dict:
    """{corpus: [(prompt, response)]} for the clean instruction corpora (none of them is trained on)."""
    out = {}
    files = {"t0": [data / "instruct_t0_train_50k" / "t0_train_50k.jsonl.gz"],
             "gsm8k": [data / "instruct_gsm8k" / "gsm8k.jsonl.gz"],
             "code": sorted((data / "instruct_code").glob("*.jsonl.gz"))}
    for name, paths in files.items():
        recs = []
        for path in paths:
            for r in _rows(path):
                prompt = "\n\n".join(str(r[k]) for k in ("instruction", "input") if r.get(k))
                recs.append((prompt, str(r.get("output") or "")))
        out[name] = recs
    return out


def clean_rates(model, threshold: float, corpora: dict) -> dict:
    """Per corpus: share of records with a side scoring >= 0.5, and >= the model's threshold (acted on)."""
    out = {}
    for name, recs in corpora.items():
        sp = model.predict_batch([p for p, _ in recs])
        sr = model.predict_batch([r for _, r in recs])
        top = [max(a, b) for a, b in zip(sp, sr)]
        out[name] = {"records": len(recs), "ge_0.5": sum(s >= 0.5 for s in top) / len(recs),
                     "acted": sum(s >= threshold for s in top) / len(recs)}
    return out


def train(name: str, extra: list, data: pathlib.Path, out_dir: pathlib.Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(ROOT / "bench" / "train_default_toxicity.py"), "--data", str(data),
           "--out", str(out_dir), "--name", "toxicity_default", *extra]
    t0 = os.times()
    done = subprocess.run(cmd, capture_output=True, text=True)
    t1 = os.times()
    if done.returncode:
        raise SystemExit(f"{name}: training failed\n{done.stdout}\n{done.stderr}")
    meta = json.loads((out_dir / "toxicity_default.json").read_text())
    meta["cpu_seconds_children"] = round((t1.children_user - t0.children_user)
                                         + (t1.children_system - t0.children_system), 1)
    meta["stdout"] = done.stdout
    return meta


def short_key(path: str) -> str:
    for key in ("wiki_toxicity", "hatecheck", "offensive", "hate", "labeled_data", "cat_large", "toxichat"):
        if key in path:
            return {"wiki_toxicity": "wiki", "labeled_data": "davidson", "cat_large": "cat"}.get(key, key)
    return path


def row(name: str, res: dict) -> str:
    v = {short_key(k): m for k, m in (res["validation_by_file"] or {}).items()}
    e = {short_key(k): m for k, m in (res.get("eval") or {}).items()}
    c = res["clean"]

    def auc(d, k):
        m = d.get(k) or {}
        return f"{m['roc_auc']:.3f}" if m.get("roc_auc") is not None else "-"

    def ece(d, k):
        m = d.get(k) or {}
        return f"{m['ece']:.3f}" if m.get("n") else "-"

    gc = c["gsm8k"]["records"] + c["code"]["records"]
    gc_05 = (c["gsm8k"]["ge_0.5"] * c["gsm8k"]["records"] + c["code"]["ge_0.5"] * c["code"]["records"]) / gc
    gc_act = (c["gsm8k"]["acted"] * c["gsm8k"]["records"] + c["code"]["acted"] * c["code"]["records"]) / gc
    return (f"| {name} | {auc(v, 'offensive')} / {auc(v, 'hate')} / {auc(v, 'davidson')} / {auc(v, 'cat')} / "
            f"{auc(v, 'toxichat')} | {ece(v, 'cat')} / {ece(v, 'toxichat')} | {100 * gc_05:.2f}% / "
            f"{100 * gc_act:.2f}% | {auc(e, 'wiki')} / {auc(e, 'toxichat')} / {auc(e, 'offensive')} / "
            f"{auc(e, 'hatecheck')} / {auc(e, 'cat')} | {ece(e, 'wiki')} / {ece(e, 'toxichat')} | "
            f"{100 * c['t0']['ge_0.5']:.2f}% / {100 * c['t0']['acted']:.2f}% | {res['threshold']:.2f} | "
            f"{res['model_size_bytes'] / 1e6:.1f} MB |")


HEADER = ("| candidate | val ROC-AUC: offensive / hate / Davidson / CAT / ToxiChat | val ECE: CAT / ToxiChat | "
          "GSM8K+code: side >= 0.5 / acted | test ROC-AUC: wiki / ToxiChat / offensive / HateCheck / CAT | "
          "test ECE: wiki / ToxiChat | T0: side >= 0.5 / acted | threshold | size |\n|---|---|---|---|---|---|---|---|---|")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--only", nargs="*", help="candidate names to run (default: all)")
    ap.add_argument("--force", action="store_true", help="retrain candidates that already have results")
    ap.add_argument("--shipped", action="store_true",
                    help="also print the row of the shipped model from its sidecar (no training, no test re-run "
                         "beyond the clean corpora)")
    args = ap.parse_args(argv)
    data = pathlib.Path(args.data)
    store = RESULTS / "toxicity_longform_select.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = json.loads(store.read_text()) if store.exists() else {}
    from lazaret.checks.toxicity.model import ToxicityModel

    corpora = clean_sides(data)
    for name, extra in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        if name in results and not args.force:
            continue
        started = time.process_time()
        res = train(name, extra, data, RESULTS / "tox_cands" / name)
        model = ToxicityModel.load(str(RESULTS / "tox_cands" / name / "toxicity_default.ftz"))
        res["clean"] = clean_rates(model, float(res["threshold"]), corpora)
        res["cpu_seconds_self"] = round(time.process_time() - started, 1)
        res.pop("stdout", None)
        results[name] = res
        store.write_text(json.dumps(results, indent=1, sort_keys=True))
        print(HEADER.splitlines()[0] if len(results) == 1 else "", end="")
        print(row(name, res), flush=True)
    print(HEADER)
    for name in CANDIDATES:
        if name in results:
            print(row(name, results[name]))
    if args.shipped:
        from lazaret.checks.toxicity.model import default_model_path

        shipped = ToxicityModel.load("default")
        meta = dict(shipped.metadata)
        meta["clean"] = clean_rates(shipped, float(meta["threshold"]), corpora)
        print(row(f"**shipped** ({os.path.basename(default_model_path())}, "
                  f"{meta['calibration']['method']} calibration)", meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
