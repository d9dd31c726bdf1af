"""Toxicity benchmark: held-out quality, T0 flag rates and throughput, against alt-profanity-check.

    .venv/bin/python bench/toxicity_bench.py [--model default|PATH] [--label __label__toxic] [--threshold X]
                                             [--data ../shared/data] [--json out.json] [--reliability]
                                             [--repeats 3] [--no-baseline]

Held-out sets (never trained or tuned on): the Wikipedia Talk identity test set, the TweetEval offensive
and hate *test* splits, HateCheck. ROC-AUC, precision/recall at the model's threshold (from its metadata
sidecar unless --threshold), Brier score and expected calibration error. Then the share of the T0
instruction corpus flagged per side at that threshold (prompt = instruction + input, response = output), and
single-core prediction throughput on short records (TweetEval tweets) and on T0 prompts. The baseline is
alt-profanity-check (`profanity_check.predict_prob`, its own 0.5 threshold), on the same data.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pathlib
import sys
import time
from typing import Optional

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_DATA = pathlib.Path(os.environ.get("LAZARET_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _rows(path: pathlib.Path):
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


HASH_SPLIT = (15, 15)  # bench/train_default_toxicity.py: --hash-split 15 15 for files without splits


def held_out_sets(data: pathlib.Path) -> dict:
    from lazaret.training.toxicity import hash_split

    off = _rows(data / "toxicity_tweeteval_offensive" / "offensive.jsonl.gz")
    hate = _rows(data / "toxicity_tweeteval_hate" / "hate.jsonl.gz")
    toxichat = _rows(data / "toxicity_longform" / "toxichat_reddit.jsonl.gz")
    cat = _rows(data / "toxicity_longform" / "cat_large_wikipedia_talk.jsonl.gz")
    return {
        "toxichat_test": [(r["text"], int(r["label"])) for r in toxichat if r["split"] == "test"],
        "cat_large_test_rows": [(r["text"], int(r["label"])) for r in cat
                                if hash_split(r, r["text"], *HASH_SPLIT) == "test"],
        "wikipedia_talk": [(r["text"], int(r["label"])) for r in
                           _rows(data / "toxicity_wikipedia_talk_testset" / "wiki_toxicity_testset.jsonl.gz")],
        "tweeteval_offensive_test": [(r["text"], int(r["label"])) for r in off if r["split"] == "test"],
        "tweeteval_hate_test": [(r["text"], int(r["label"])) for r in hate if r["split"] == "test"],
        "hatecheck": [(r["text"], int(r["label"])) for r in
                      _rows(data / "toxicity_hatecheck" / "test_suite_cases.jsonl.gz")],
    }


def hatecheck_functionalities(data: pathlib.Path) -> "list[tuple[str, int]]":
    """(functionality, label) for each HateCheck case, in the order of held_out_sets()['hatecheck']."""
    return [(r["functionality"], int(r["label"])) for r in
            _rows(data / "toxicity_hatecheck" / "test_suite_cases.jsonl.gz")]


def clean_corpora(data: pathlib.Path) -> dict:
    """{name: (prompts, responses)} of the clean instruction corpora (never trained on)."""
    files = {"t0": [data / "instruct_t0_train_50k" / "t0_train_50k.jsonl.gz"],
             "gsm8k": [data / "instruct_gsm8k" / "gsm8k.jsonl.gz"],
             "code": sorted((data / "instruct_code").glob("*.jsonl.gz"))}
    out = {}
    for name, paths in files.items():
        prompts, responses = [], []
        for path in paths:
            for r in _rows(path):
                prompts.append("\n\n".join(str(r[k]) for k in ("instruction", "input") if r.get(k)))
                responses.append(str(r.get("output") or ""))
        out[name] = (prompts, responses)
    return out


def tfidf_lr_scorer(data: pathlib.Path):
    """The ten-line baseline, trained on the same training rows as the shipped model (same files, splits,
    weighting; bench/train_default_toxicity.py's options): TF-IDF word 1-2-grams + logistic regression."""
    sys.path.insert(0, str(ROOT / "bench"))
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from train_default_toxicity import PARAMS, train_files

    from lazaret.training.toxicity import build_parser, load_data

    args = build_parser().parse_args(["--train", *map(str, train_files(data)), "--out", "unused.ftz",
                                      "--val-splits", "val", "dev", *PARAMS])
    train, _, _ = load_data(args)
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200000)
    lr = LogisticRegression(C=4, max_iter=2000)
    lr.fit(vec.fit_transform([t for t, _ in train]), [y for _, y in train])

    def score(texts):
        return lr.predict_proba(vec.transform(texts))[:, 1].tolist() if texts else []

    return score


def t0_sides(data: pathlib.Path) -> "tuple[list, list]":
    prompts, responses = [], []
    for r in _rows(data / "instruct_t0_train_50k" / "t0_train_50k.jsonl.gz"):
        prompts.append("\n\n".join(t for t in (r.get("instruction"), r.get("input")) if t))
        responses.append(r.get("output") or "")
    return prompts, responses


def short_texts(data: pathlib.Path, n: int = 50000) -> list:
    tweets = [r["text"] for r in _rows(data / "toxicity_tweeteval_offensive" / "offensive.jsonl.gz")]
    return (tweets * (n // len(tweets) + 1))[:n]


def run_scorer(name: str, score, threshold: float, sets: dict, t0: tuple, short: list, long: list,
               answers: list, repeats: int = 3, clean: Optional[dict] = None,
               functionalities: Optional[list] = None) -> dict:
    from lazaret.training.metrics import evaluate_scores

    out = {"name": name, "threshold": threshold, "held_out": {}, "repeats": repeats}
    for set_name, rows in sets.items():
        scores = score([t for t, _ in rows])
        out["held_out"][set_name] = evaluate_scores([y for _, y in rows], scores, threshold)
        if set_name == "hatecheck" and functionalities:
            per: dict = {}
            for (func, label), s in zip(functionalities, scores):
                cell = per.setdefault(func, {"n": 0, "correct": 0, "label": label})
                cell["n"] += 1
                cell["correct"] += int((s >= threshold) == bool(label))
            out["hatecheck_functionalities"] = {k: {**v, "accuracy": v["correct"] / v["n"]}
                                                for k, v in sorted(per.items())}
    out["clean"] = {}
    for corpus, (prompts, responses) in (clean or {}).items():
        top = [max(a, b) for a, b in zip(score(prompts), score(responses))]
        out["clean"][corpus] = {"records": len(top), "side_ge_0.5": sum(s >= 0.5 for s in top) / len(top),
                                "acted": sum(s >= threshold for s in top) / len(top)}
    prompts, responses = t0
    sp = score(prompts)
    sr = score(responses)
    nonempty_r = [s for s, t in zip(sr, responses) if t.strip()]
    out["t0"] = {
        "records": len(prompts),
        "prompt_flag_rate": sum(s >= threshold for s in sp) / len(sp),
        "response_flag_rate": sum(s >= threshold for s in nonempty_r) / max(len(nonempty_r), 1),
    }
    score(short[:2000])  # warm-up
    # Per-core throughput: records per second of this process's CPU time (the machine is shared, so wall
    # time would also count other people's work); the wall-clock figure is reported beside it.
    # Each measurement is repeated `repeats` times and the median is reported (the best beside it): one pass
    # on a loaded machine varied by +-8% between runs.
    for key, texts in (("short", short), ("t0_prompts", long), ("t0_responses", answers)):
        cpu_rates, wall_rates = [], []
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            score(texts)
            cpu_rates.append(len(texts) / max(time.process_time() - cpu, 1e-9))
            wall_rates.append(len(texts) / max(time.perf_counter() - wall, 1e-9))
        out[f"{key}_records_per_cpu_s"] = sorted(cpu_rates)[len(cpu_rates) // 2]
        out[f"{key}_records_per_cpu_s_best"] = max(cpu_rates)
        out[f"{key}_records_per_wall_s"] = sorted(wall_rates)[len(wall_rates) // 2]
    return out


def print_result(res: dict, reliability: bool) -> None:
    print(f"\n## {res['name']}  (threshold {res['threshold']:.2f})")
    print("| held-out set | n | ROC-AUC | precision | recall | F1 | Brier | ECE |")
    print("|---|---|---|---|---|---|---|---|")
    for name, m in res["held_out"].items():
        auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
        print(f"| {name} | {m['n']} | {auc} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} "
              f"| {m['brier']:.3f} | {m['ece']:.3f} |")
        if reliability:
            cells = "; ".join(f"{b['lo']:.1f}-{b['hi']:.1f}: n={b['n']} p={b['mean_score']:.2f} "
                              f"obs={b['positive_rate']:.2f}" for b in m["reliability"] if b["n"])
            print(f"|  reliability | {cells} |")
    for corpus, c in res.get("clean", {}).items():
        print(f"clean {corpus} ({c['records']} records): a side scoring >= 0.5: {100 * c['side_ge_0.5']:.2f}%, "
              f"acted on (a side >= the threshold {res['threshold']:.2f}): {100 * c['acted']:.2f}%")
    t0 = res["t0"]
    print(f"T0 ({t0['records']} records) flagged at threshold: prompt {100 * t0['prompt_flag_rate']:.2f}%, "
          f"response {100 * t0['response_flag_rate']:.2f}%")
    print(f"throughput, one core (median of {res.get('repeats', 1)} runs per CPU-second, best run after the slash; "
          f"wall-clock in brackets): "
          f"{res['short_records_per_cpu_s']:,.0f}/{res['short_records_per_cpu_s_best']:,.0f} "
          f"({res['short_records_per_wall_s']:,.0f}) short records/s "
          f"(tweets, ~90 chars); {res['t0_prompts_records_per_cpu_s']:,.0f} "
          f"({res['t0_prompts_records_per_wall_s']:,.0f}) T0 prompts/s (median ~400 chars); "
          f"{res['t0_responses_records_per_cpu_s']:,.0f} ({res['t0_responses_records_per_wall_s']:,.0f}) "
          f"T0 responses/s (median ~10 chars)")


def print_functionalities(results: list) -> None:
    """HateCheck accuracy per functionality at each scorer's threshold (gold label beside the name)."""
    if not all("hatecheck_functionalities" in r for r in results):
        return
    print("\n| HateCheck functionality (gold) | n | " + " | ".join(r["name"] for r in results) + " |")
    print("|---|---|" + "---|" * len(results))
    for func, cell in results[0]["hatecheck_functionalities"].items():
        accs = " | ".join(f"{r['hatecheck_functionalities'][func]['accuracy']:.2f}" for r in results)
        gold = "hateful" if cell["label"] else "non-hateful"
        print(f"| {func} ({gold}) | {cell['n']} | {accs} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="toxicity benchmark")
    ap.add_argument("--model", default="default")
    ap.add_argument("--label", default="__label__toxic")
    ap.add_argument("--threshold", type=float)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--json", help="write all figures here")
    ap.add_argument("--reliability", action="store_true", help="print reliability bins")
    ap.add_argument("--no-baseline", action="store_true", help="skip alt-profanity-check and TF-IDF + LR")
    ap.add_argument("--repeats", type=int, default=3, help="throughput runs per measurement (median reported)")
    args = ap.parse_args(argv)
    data = pathlib.Path(args.data)
    if not data.is_dir():
        print(f"no data at {data}", file=sys.stderr)
        return 2

    from lazaret.checks.toxicity.model import ToxicityModel

    model = ToxicityModel.load(args.model, label=args.label)
    threshold = args.threshold if args.threshold is not None else float(model.metadata.get("threshold", 0.5))

    def fasttext_score(texts):
        out = []
        for i in range(0, len(texts), args.batch):
            out.extend(model.predict_batch(texts[i : i + args.batch]))
        return out

    sets = held_out_sets(data)
    functionalities = hatecheck_functionalities(data)
    clean = clean_corpora(data)
    t0 = t0_sides(data)
    short = short_texts(data)
    long = t0[0][:20000]
    answers = t0[1][:50000]
    results = [run_scorer(f"lazaret fastText ({os.path.basename(model.path)}, sha256 {model.sha256[:12]})",
                          fasttext_score, threshold, sets, t0, short, long, answers, args.repeats, clean,
                          functionalities)]
    if not args.no_baseline:
        try:
            from profanity_check import predict_prob
        except ImportError:
            print("alt-profanity-check not installed: baseline skipped (pip install alt-profanity-check)")
        else:
            def baseline_score(texts):
                return [float(p) for p in predict_prob(texts)] if texts else []

            results.append(run_scorer("alt-profanity-check 1.9 baseline", baseline_score, 0.5, sets, t0, short,
                                      long, answers, args.repeats, clean, functionalities))
        started = time.process_time()
        tfidf = tfidf_lr_scorer(data)
        fit_cpu = time.process_time() - started
        results.append(run_scorer("TF-IDF + LR baseline (same training rows)", tfidf, 0.5, sets, t0, short, long,
                                  answers, args.repeats, clean, functionalities))
        results[-1]["fit_cpu_seconds"] = fit_cpu
    print_functionalities(results)
    for res in results:
        print_result(res, args.reliability)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
