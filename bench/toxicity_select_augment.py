"""Validation-only comparison of length augmentation, benign long-form negatives and fastText parameters.

    .venv/bin/python bench/toxicity_select_augment.py [--data ../shared/data] [--only NAME...]
                                                      [--json bench/results/toxicity_select_augment.json]

Each variant is a `lazaret train-toxicity` training set, built by the trainer's own `load_data` (so the rows are
exactly the ones the command trains on), trained single-threaded in a fresh process and quantised as shipped
(dsub 2, qnorm, cutoff 0). Variants (issue 5):
- `--augment-concat N --augment-mode any|balanced`: pseudo-long-form documents of 2-6 training tweets;
- `--clean` GSM8K + code instruction sides (the 80% of them not held out: `--clean-val-percent 20
  --clean-val-use report`, so the threshold is still chosen on the TweetEval val splits alone);
- both, and a few fastText parameters under the throughput limit.

Selection data, and nothing else (never read here: TweetEval test splits, Wikipedia Talk, HateCheck, T0):
- tweet val: ROC-AUC on the TweetEval offensive and hate *val* splits, threshold fpr:0.1 on them pooled;
- long-form val proxies, built from val data only: `concat` = 2,000 documents of 2-6 pooled val tweets (toxic if
  any part is); `embed` = each val tweet inserted at a random sentence boundary of a random held-out GSM8K/code
  side (label = the tweet's);
- constraint: share of the held-out 20% of GSM8K + code sides (by hash, never trained on by any variant) flagged
  at the tweet-val threshold, at most 2.5%; and prediction speed on val tweets (CPU time, median of 3) no
  lower than the shipped recipe's in the same process minus 5%, for variants whose parameters change the
  prediction cost (data-only variants have the shipped cost; their timings differed by up to 30% from run to run
  on the shared machine, which is noise).
Score, fixed before any run: mean(offensive val, hate val, (concat + embed) / 2).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from toxicity_select import DEFAULT_DATA, fit  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHIPPED = ["--lr", "0.1", "--epoch", "5", "--dim", "8", "--word-ngrams", "2", "--minn", "0", "--maxn", "0",
           "--bucket", "200000", "--min-count", "1", "--seed", "0", "--thread", "1", "--cutoff", "0",
           "--dsub", "2"]
CLEAN = ["--clean-val-percent", "20", "--clean-val-use", "report"]

VARIANTS = {
    "shipped": [],
    "concat-any-10k": ["--augment-concat", "10000", "--augment-mode", "any"],
    "concat-any-30k": ["--augment-concat", "30000", "--augment-mode", "any"],
    "concat-bal-10k": ["--augment-concat", "10000", "--augment-mode", "balanced"],
    "concat-bal-30k": ["--augment-concat", "30000", "--augment-mode", "balanced"],
    "clean": ["@clean"],
    "clean+concat-any-10k": ["@clean", "--augment-concat", "10000", "--augment-mode", "any"],
    "clean+concat-any-30k": ["@clean", "--augment-concat", "30000", "--augment-mode", "any"],
    "clean+concat-bal-10k": ["@clean", "--augment-concat", "10000", "--augment-mode", "balanced"],
    "clean+concat-bal-30k": ["@clean", "--augment-concat", "30000", "--augment-mode", "balanced"],
}
# fastText parameters re-checked on the best data variant (stage 2, --stage2 BASE_VARIANT)
PARAM_VARIANTS = {
    "dim16": ["--dim", "16"],
    "dim4": ["--dim", "4"],
    "ngrams1": ["--word-ngrams", "1"],
    "ngrams3": ["--word-ngrams", "3"],
    "sub3-5": ["--minn", "3", "--maxn", "5"],
    "epoch10-lr0.05": ["--epoch", "10", "--lr", "0.05"],
    "epoch3": ["--epoch", "3"],
    "seed1": ["--seed", "1"],  # seed-to-seed spread: how large a difference is noise
    "seed2": ["--seed", "2"],
}

_SENT = re.compile(r"(?<=[.!?\n])\s+")


def trainer_rows(data: pathlib.Path, extra: list):
    from lazaret.training.toxicity import build_parser, load_data

    clean = []
    if "@clean" in extra:
        extra = [e for e in extra if e != "@clean"]
        clean = ["--clean", str(data / "instruct_gsm8k" / "gsm8k.jsonl.gz"),
                 str(data / "instruct_code" / "gpteacher_codegen.jsonl.gz"),
                 str(data / "instruct_code" / "code_alpaca_2k.jsonl.gz")]
    argv = ["--train", str(data / "toxicity_davidson" / "labeled_data.jsonl.gz"),
            str(data / "toxicity_tweeteval_offensive" / "offensive.jsonl.gz"),
            str(data / "toxicity_tweeteval_hate" / "hate.jsonl.gz"), *clean, "--out", "x.ftz",
            *SHIPPED, *CLEAN, *extra]
    args = build_parser().parse_args(argv)
    train, val, _ = load_data(args)
    return args, train, val


def benign_held_out(data: pathlib.Path) -> list:
    from lazaret.training.toxicity import _clean_texts, _in_val, read_jsonl

    out = []
    for path in (data / "instruct_gsm8k" / "gsm8k.jsonl.gz", data / "instruct_code" / "gpteacher_codegen.jsonl.gz",
                 data / "instruct_code" / "code_alpaca_2k.jsonl.gz"):
        for row in read_jsonl(str(path)):
            out.extend(t for t in _clean_texts(row) if _in_val(t, 20))
    return out


def proxies(val_off, val_hate, benign, seed=1):
    from lazaret.training.toxicity import concat_augment

    pooled = val_off + val_hate
    concat = concat_augment(pooled, 2000, (2, 6), seed, "any")
    rng = random.Random(seed)
    embed = []
    for text, y in pooled:
        host = _SENT.split(benign[rng.randrange(len(benign))])
        host.insert(rng.randrange(len(host) + 1), text)
        embed.append((" ".join(host), y))
    return concat, embed


def main(argv=None) -> int:
    from lazaret.checks.toxicity.model import ToxicityModel
    from lazaret.training.metrics import choose_threshold, evaluate_scores
    from lazaret.training.toxicity import score_rows, write_fasttext_file

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--stage2", help="data variant to re-check the fastText parameters on")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "toxicity_select_augment.json"))
    args = ap.parse_args(argv)
    data = pathlib.Path(args.data)
    from toxicity_select import load

    _, val_off, val_hate, _ = load(data)
    benign = benign_held_out(data)
    concat, embed = proxies(val_off, val_hate, benign)
    speed = [t for t, _ in val_off + val_hate]
    speed = (speed * (20000 // len(speed) + 1))[:20000]
    print(f"val offensive {len(val_off)}, hate {len(val_hate)}, held-out benign sides {len(benign)}, "
          f"concat {len(concat)} ({sum(y for _, y in concat)} toxic), embed {len(embed)}", flush=True)
    results = {}
    if os.path.exists(args.json):
        results = {r["name"]: r for r in json.load(open(args.json))}
    variants = dict(VARIANTS)
    if args.stage2:
        variants = {f"{args.stage2} {k}": VARIANTS[args.stage2] + v for k, v in PARAM_VARIANTS.items()}
        variants[args.stage2] = VARIANTS[args.stage2]
    if args.only:
        variants = {k: v for k, v in variants.items() if k in args.only or k.split(" ")[-1] in args.only}
    variants = {"shipped": VARIANTS["shipped"], **variants}  # speed reference, always re-measured
    work = tempfile.mkdtemp(prefix="tox-augment-")
    ref_speed = None
    for name, extra in variants.items():
        targs, train, _ = trainer_rows(data, extra)
        params = {"lr": targs.lr, "epoch": targs.epoch, "dim": targs.dim, "wordNgrams": targs.word_ngrams,
                  "minn": targs.minn, "maxn": targs.maxn, "minCount": targs.min_count, "bucket": targs.bucket,
                  "loss": "softmax", "seed": targs.seed, "thread": 1}
        txt = os.path.join(work, "train.txt")
        write_fasttext_file(train, txt, "__label__toxic", targs.seed, targs.max_chars)
        out = os.path.join(work, "m.ftz")
        t = time.time()
        fit({"train": txt, "out": out, "params": params,
             "quantize": {"cutoff": 0, "dsub": targs.dsub, "qnorm": True, "retrain": True}})
        train_s = time.time() - t
        model = ToxicityModel.load(out, normalizer="lazaret")
        s_off, s_hate = score_rows(model, val_off), score_rows(model, val_hate)
        y_off, y_hate = [y for _, y in val_off], [y for _, y in val_hate]
        th = choose_threshold(y_off + y_hate, s_off + s_hate, "fpr:0.1")
        a_off = evaluate_scores(y_off, s_off, th)["roc_auc"]
        a_hate = evaluate_scores(y_hate, s_hate, th)["roc_auc"]
        a_concat = evaluate_scores([y for _, y in concat], score_rows(model, concat), th)["roc_auc"]
        a_embed = evaluate_scores([y for _, y in embed], score_rows(model, embed), th)["roc_auc"]
        b = score_rows(model, [(t, 0) for t in benign])
        rates = []
        score_rows(model, [(t, 0) for t in speed[:2000]], batch=1024)
        for _ in range(3):
            c = time.process_time()
            score_rows(model, [(t, 0) for t in speed], batch=1024)
            rates.append(len(speed) / max(time.process_time() - c, 1e-9))
        rate = sorted(rates)[1]
        if name == "shipped":
            ref_speed = rate
        r = {"name": name, "args": extra, "val_auc_off": a_off, "val_auc_hate": a_hate,
             "val_auc_tweets": round((a_off + a_hate) / 2, 4), "val_auc_concat": a_concat,
             "val_auc_embed": a_embed,
             "score": round((a_off + a_hate + (a_concat + a_embed) / 2) / 3, 4), "threshold": th,
             "benign_heldout_flag_rate": round(sum(s >= th for s in b) / len(b), 4),
             "tweets_per_cpu_s": round(rate), "speed_vs_shipped": round(rate / ref_speed, 3),
             "size_bytes": os.path.getsize(out), "train_rows": len(train), "train_s": round(train_s, 1)}
        # Prediction cost depends on the fastText parameters, not on the training data: a data-only variant has
        # the shipped cost (timing on the shared machine varied by up to 30% between identical-cost models), so
        # the speed bound is applied only to variants whose dim, wordNgrams, subwords or bucket differ.
        same_cost = all(params[k] == v for k, v in (("dim", 8), ("wordNgrams", 2), ("minn", 0), ("maxn", 0),
                                                    ("bucket", 200000)))
        r["eligible"] = r["benign_heldout_flag_rate"] <= 0.025 and (same_cost or r["speed_vs_shipped"] >= 0.95)
        results[name] = r
        print(json.dumps(r), flush=True)
        os.makedirs(os.path.dirname(args.json), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(list(results.values()), fh, indent=1)
    ok = sorted((r for r in results.values() if r["eligible"]), key=lambda r: -r["score"])
    print("eligible, best first:")
    for r in ok:
        print(f"  {r['score']:.4f}  {r['name']}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
