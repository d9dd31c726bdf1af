"""Validation-only hyper-parameter selection for the default toxicity model (docs/toxicity.md).

    .venv/bin/python bench/toxicity_select.py [--data ../shared/data] [--jobs 1] [--stage all|1|2|3|4]
                                              [--json bench/results/toxicity_select.json]

Selection data, and nothing else:
- score: mean of the ROC-AUC on the TweetEval offensive *val* split and on the TweetEval hate *val* split
  (each set weighted equally, so the larger offensive set does not dominate);
- constraint: at the threshold chosen by the default rule (fpr:0.1 on the pooled TweetEval val splits), at most
  2.5% (--max-benign) of the sides of the benign long-form instruction sets GSM8K + code (instruct_gsm8k,
  instruct_code) flagged (the previously shipped recipe flags 1.9% of them, mostly code).
  These are not trained on here; they stand in for the clean-instruction flag-rate target, whose measurement
  corpus (T0) is never looked at during selection.
Never read here: the TweetEval test splits, the Wikipedia Talk test set, HateCheck, T0.

Training rows are exactly those of bench/train_default_toxicity.py (Davidson all rows; TweetEval offensive and
hate train splits), normalised once with the shipped normalisation and written in the same seeded order.
Each configuration is trained in a fresh process (fastText 0.9.2 is unreliable when it trains twice in one
process), scored here in the parent process, which never trains.

Search (stage-wise, each stage keeps the best configuration of the previous ones):
 1. epoch x lr;  2. wordNgrams x subwords (minn/maxn);  3. dim x bucket;  4. minCount;
 5. the best few whose prediction costs no more than the shipped recipe's (dim <= 16, wordNgrams <= 2, no
    subwords: the throughput target is borderline), plus the shipped recipe, quantised with dsub 1/2 and
    qnorm on/off (cutoff 0), re-scored; the final choice is the best quantised one of at most 8 MB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_DATA = pathlib.Path(os.environ.get("LAZARET_SHARED_DATA", ROOT.parent / "shared" / "data"))

BASE = {"lr": 0.1, "epoch": 5, "dim": 16, "wordNgrams": 2, "minn": 0, "maxn": 0, "minCount": 1,
        "bucket": 100000, "loss": "softmax", "seed": 0, "thread": 1}


def load(data: pathlib.Path):
    from lazaret.training.toxicity import read_jsonl, _clean_texts

    train, val_off, val_hate = [], [], []
    for row in read_jsonl(str(data / "toxicity_davidson" / "labeled_data.jsonl.gz")):
        train.append((row["text"], int(row["label"])))
    for name, val in (("offensive", val_off), ("hate", val_hate)):
        for row in read_jsonl(str(data / f"toxicity_tweeteval_{name}" / f"{name}.jsonl.gz")):
            if row["split"] == "train":
                train.append((row["text"], int(row["label"])))
            elif row["split"] == "val":
                val.append((row["text"], int(row["label"])))
    benign = []
    for path in (data / "instruct_gsm8k" / "gsm8k.jsonl.gz", data / "instruct_code" / "gpteacher_codegen.jsonl.gz",
                 data / "instruct_code" / "code_alpaca_2k.jsonl.gz"):
        for row in read_jsonl(str(path)):
            benign.extend(_clean_texts(row))
    return train, val_off, val_hate, benign


def fit(spec: dict) -> None:
    code = "import sys; from lazaret.training.toxicity import _fit_child; sys.exit(_fit_child(sys.argv[1]))"
    for _ in range(5):
        done = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True)
        if done.returncode == 0:
            return
    raise RuntimeError(done.stderr[-500:])


def score_model(path: str, sets: dict) -> dict:
    from lazaret.checks.toxicity.model import ToxicityModel
    from lazaret.training.metrics import choose_threshold, evaluate_scores
    from lazaret.training.toxicity import score_rows

    model = ToxicityModel.load(path, normalizer="lazaret")
    s_off = score_rows(model, sets["val_off"])
    s_hate = score_rows(model, sets["val_hate"])
    y_off = [y for _, y in sets["val_off"]]
    y_hate = [y for _, y in sets["val_hate"]]
    th = choose_threshold(y_off + y_hate, s_off + s_hate, "fpr:0.1")
    auc_off = evaluate_scores(y_off, s_off, th)["roc_auc"]
    auc_hate = evaluate_scores(y_hate, s_hate, th)["roc_auc"]
    pooled = evaluate_scores(y_off + y_hate, s_off + s_hate, th)["roc_auc"]
    b = score_rows(model, [(t, 0) for t in sets["benign"]])
    t0 = time.process_time()
    score_rows(model, [(t, 0) for t in sets["speed"]], batch=1024)
    speed = len(sets["speed"]) / max(time.process_time() - t0, 1e-9)
    return {"val_auc_off": auc_off, "val_auc_hate": auc_hate, "val_auc_mean": round((auc_off + auc_hate) / 2, 4),
            "val_auc_pooled": pooled, "threshold": th,
            "benign_flag_rate": round(sum(s >= th for s in b) / len(b), 4),
            "size_bytes": os.path.getsize(path), "tweets_per_cpu_s": round(speed)}


def key(cfg: dict) -> str:
    return json.dumps(cfg, sort_keys=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "toxicity_select.json"))
    ap.add_argument("--quantize-top", type=int, default=3)
    ap.add_argument("--max-benign", type=float, default=0.025,
                    help="most of the GSM8K + code sides a configuration may flag (%(default)s; the shipped "
                         "recipe flags ~0.019 of them, mostly code, while flagging ~0.5%% of T0)")
    args = ap.parse_args(argv)
    from lazaret.training.toxicity import write_fasttext_file

    train, val_off, val_hate, benign = load(pathlib.Path(args.data))
    speed = [t for t, _ in val_off + val_hate]
    speed = (speed * (20000 // len(speed) + 1))[:20000]
    sets = {"val_off": val_off, "val_hate": val_hate, "benign": benign, "speed": speed}
    results = {}
    if os.path.exists(args.json):
        with open(args.json) as fh:
            for r in json.load(fh):
                results[key(r["params"]) + json.dumps(r.get("quantize"), sort_keys=True)] = r
    work = tempfile.mkdtemp(prefix="tox-select-")
    train_txt = os.path.join(work, "train.txt")
    write_fasttext_file(train, train_txt, "__label__toxic", 0, 4000)
    print(f"train {len(train)} rows, val offensive {len(val_off)}, val hate {len(val_hate)}, benign sides "
          f"{len(benign)}; workdir {work}", flush=True)

    def run(cfg: dict, quant=None) -> dict:
        k = key(cfg) + json.dumps(quant, sort_keys=True)
        if k in results:
            return results[k]
        name = hashlib.sha1(k.encode()).hexdigest()[:10]
        out = os.path.join(work, name + (".ftz" if quant else ".bin"))
        t = time.time()
        fit({"train": train_txt, "out": out, "params": cfg, "quantize": quant})
        r = {"params": cfg, "quantize": quant, **score_model(out, sets), "train_s": round(time.time() - t, 1)}
        os.remove(out)
        results[k] = r
        print(json.dumps({k2: v for k2, v in r.items() if k2 != "params"}),
              {k2: v for k2, v in cfg.items() if BASE.get(k2) != v}, flush=True)
        with open(args.json, "w") as fh:
            json.dump(list(results.values()), fh, indent=1)
        return r

    def stage(cfgs):
        with ThreadPoolExecutor(args.jobs) as pool:
            rs = list(pool.map(run, cfgs))
        ok = [r for r in rs if r["benign_flag_rate"] <= args.max_benign] or rs
        return max(ok, key=lambda r: r["val_auc_mean"])

    best = stage([BASE])
    best = stage([{**best["params"], "epoch": e, "lr": lr} for e in (5, 10, 20) for lr in (0.05, 0.1, 0.3, 0.5)])
    print("stage 1 best", best["params"], best["val_auc_mean"], flush=True)
    best = stage([{**best["params"], "wordNgrams": w, "minn": mn, "maxn": mx}
                  for w in (1, 2, 3) for mn, mx in ((0, 0), (2, 4), (3, 5), (3, 6))])
    print("stage 2 best", best["params"], best["val_auc_mean"], flush=True)
    best = stage([{**best["params"], "dim": d, "bucket": b} for d in (8, 16, 32, 50) for b in (100000, 200000)])
    print("stage 3 best", best["params"], best["val_auc_mean"], flush=True)
    best = stage([{**best["params"], "minCount": m} for m in (1, 2, 3)])
    print("stage 4 best", best["params"], best["val_auc_mean"], flush=True)
    # Stage 5: quantise as shipped. Throughput constraint: only configurations whose prediction costs no more
    # than the shipped recipe's (dim <= 16, word n-grams <= 2, no subwords; the short-record target is
    # already borderline), the best few by unquantised val_auc_mean, each with a few quantisation settings.
    cheap = [r for r in results.values() if not r["quantize"] and r["benign_flag_rate"] <= args.max_benign
             and r["params"]["dim"] <= 16 and r["params"]["wordNgrams"] <= 2 and r["params"]["maxn"] == 0]
    unq = sorted(cheap, key=lambda r: -r["val_auc_mean"])[: args.quantize_top]
    if BASE not in [r["params"] for r in unq]:
        unq.append(results[key(BASE) + "null"])
    quants = [{"cutoff": 0, "dsub": d, "qnorm": qn, "retrain": True} for d in (1, 2) for qn in (True, False)]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda a: run(*a), [(r["params"], q) for r in unq for q in quants]))
    final = sorted((r for r in results.values() if r["quantize"] and r["benign_flag_rate"] <= args.max_benign
                    and r["size_bytes"] <= 8_000_000 and r["params"]["dim"] <= 16
                    and r["params"]["maxn"] == 0 and r["params"]["wordNgrams"] <= 2),
                   key=lambda r: (-(r["val_auc_off"] + r["val_auc_hate"]), r["size_bytes"]))
    print("quantised, best first (ties: the smaller file); the first one is the selected recipe:")
    for r in final:
        print(json.dumps(r))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
