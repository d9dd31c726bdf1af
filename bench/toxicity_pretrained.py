"""Experiment: does initialising the toxicity classifier with unsupervised fastText word vectors help?

    .venv/bin/python bench/toxicity_pretrained.py vectors [--name sg50 --model skipgram --dim 50 --epoch 5
                                                           --tweet-repeat 1 --thread 1]
    .venv/bin/python bench/toxicity_pretrained.py select  [--vectors sg50 ...] [--jobs 2]
    .venv/bin/python bench/toxicity_pretrained.py final   --config KEY [--quantize '{"cutoff":0,"dsub":2}']

Data:
- unsupervised corpus (``vectors``): the T0 prompts and responses (instruct_t0_train_50k, unlabelled) plus the
  *texts* of the training rows (Davidson, TweetEval offensive/hate train splits), normalised with the shipped
  ``lazaret.checks.toxicity.normalize.normalize_many`` so the tokens match what the classifier sees. No labels, no
  val/test text. NB: T0 is also the corpus of the <=1% flag-rate target, so with these vectors that target
  is no longer measured on text the model has never seen (unsupervised, but still seen).
- supervised training: exactly the rows of bench/train_default_toxicity.py / bench/toxicity_select.py,
  same normalisation, same seeded order (``write_fasttext_file``); each model trained in a fresh process.
- selection (``select``): ONLY the mean of the TweetEval offensive-val and hate-val ROC-AUCs, subject to the
  GSM8K + code benign flag rate <= 2.5% at the fpr:0.1 pooled-val threshold (the project's stand-in for the
  T0 target; bench/toxicity_select.py.score_model is reused unchanged).
- held-out (``final``, run once for the selected model, and for the shipped default for comparison):
  Wikipedia Talk, TweetEval offensive/hate test, HateCheck, T0 flag rates at the val-chosen threshold, and
  throughput, all through bench/toxicity_bench.py.run_scorer.
Outputs go to /tmp/tox_helper/ (vectors, models, results.json).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
DEFAULT_DATA = pathlib.Path(os.environ.get("LAZARET_SHARED_DATA", ROOT.parent / "shared" / "data"))
WORK = pathlib.Path(os.environ.get("TOX_HELPER_DIR", "/tmp/tox_helper"))
RESULTS = WORK / "results.json"


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def load_results() -> dict:
    if RESULTS.exists():
        return json.loads(RESULTS.read_text())
    return {}


def save_results(res: dict) -> None:
    RESULTS.write_text(json.dumps(res, indent=1, sort_keys=True))


def train_txt(data: pathlib.Path) -> str:
    """The supervised training file, written as bench/toxicity_select.py writes it."""
    from toxicity_select import load
    from lazaret.training.toxicity import write_fasttext_file

    path = WORK / "train.txt"
    if not path.exists():
        train, _, _, _ = load(data)
        write_fasttext_file(train, str(path), "__label__toxic", 0, 4000)
    return str(path)


# ---------------------------------------------------------------- unsupervised vectors
def cmd_vectors(args) -> int:
    from toxicity_bench import t0_sides
    from toxicity_select import load
    from lazaret.checks.toxicity.normalize import normalize_many

    data = pathlib.Path(args.data)
    corpus = WORK / f"unsup_tweets{args.tweet_repeat}.txt"
    if not corpus.exists():
        prompts, responses = t0_sides(data)
        train, _, _, _ = load(data)
        tweets = [t for t, _ in train]
        texts = prompts + responses + tweets * args.tweet_repeat
        n_tok = 0
        with open(corpus, "w", encoding="utf-8") as fh:
            for i in range(0, len(texts), 4096):
                for line in normalize_many(texts[i : i + 4096], 4000):
                    if line:
                        fh.write(line + "\n")
                        n_tok += line.count(" ") + 1
        print(f"corpus {corpus}: {len(texts)} texts, {n_tok} tokens", flush=True)
    params = {"model": args.model, "dim": args.dim, "epoch": args.epoch, "minCount": args.min_count,
              "minn": 0, "maxn": 0, "ws": 5, "neg": 5, "lr": args.lr, "thread": args.thread}
    out = WORK / f"{args.name}.vec"
    code = (
        "import sys, json, fasttext\n"
        "s = json.loads(sys.argv[1])\n"
        "m = fasttext.train_unsupervised(input=s['input'], verbose=0, **s['params'])\n"
        "with open(s['out'], 'w', encoding='utf-8') as fh:\n"
        "    words = m.get_words()\n"
        "    fh.write(f'{len(words)} {m.get_dimension()}\\n')\n"
        "    for w in words:\n"
        "        fh.write(w + ' ' + ' '.join(f'{x:.5f}' for x in m.get_word_vector(w)) + '\\n')\n"
    )
    wall, cpu = time.time(), child_cpu()
    subprocess.run([sys.executable, "-c", code, json.dumps({"input": str(corpus), "out": str(out),
                                                            "params": params})], check=True)
    res = load_results()
    res.setdefault("vectors", {})[args.name] = {"params": params, "corpus": corpus.name, "path": str(out),
                                                "wall_s": round(time.time() - wall, 1),
                                                "cpu_s": round(child_cpu() - cpu, 1)}
    save_results(res)
    print(json.dumps(res["vectors"][args.name]), flush=True)
    # a quick sanity look at the neighbours (printed only; not used for anything)
    return 0


# ---------------------------------------------------------------- supervised selection (val only)
BASE = {"lr": 0.1, "epoch": 5, "wordNgrams": 2, "minn": 0, "maxn": 0, "minCount": 1, "bucket": 200000,
        "loss": "softmax", "seed": 0, "thread": 1}


def config_key(cfg: dict, quant) -> str:
    return json.dumps(cfg, sort_keys=True) + "|" + json.dumps(quant, sort_keys=True)


def validation_sets(data: pathlib.Path) -> dict:
    """The validation splits, the benign stand-in set and a 20k-tweet speed sample (selection only)."""
    from toxicity_select import load

    _, val_off, val_hate, benign = load(data)
    speed = [t for t, _ in val_off + val_hate]
    speed = (speed * (20000 // len(speed) + 1))[:20000]
    return {"val_off": val_off, "val_hate": val_hate, "benign": benign, "speed": speed}


def cmd_select(args) -> int:
    from concurrent.futures import ThreadPoolExecutor
    from toxicity_select import fit, score_model

    data = pathlib.Path(args.data)
    sets = validation_sets(data)
    txt = train_txt(data)
    res = load_results()
    runs = res.setdefault("runs", {})
    vecs = res.get("vectors", {})

    configs = []
    for vname in args.vectors:
        v = vecs[vname] if vname != "none" else None
        for dim in ([v["params"]["dim"]] if v else args.control_dims):
            for epoch in args.epochs:
                for lr in args.lrs:
                    for wng in args.word_ngrams:
                        cfg = {**BASE, "dim": dim, "epoch": epoch, "lr": lr, "wordNgrams": wng}
                        if v:
                            cfg["pretrainedVectors"] = v["path"]
                        configs.append(cfg)

    def run(cfg):
        k = config_key(cfg, None)
        if k in runs:
            return runs[k]
        out = WORK / ("sel_" + str(abs(hash(k)) % 10**10) + ".bin")
        wall = time.time()
        fit({"train": txt, "out": str(out), "params": cfg, "quantize": None})
        r = {"params": cfg, "quantize": None, **score_model(str(out), sets), "train_wall_s": round(time.time() - wall, 1)}
        os.remove(out)
        runs[k] = r
        save_results(res)
        print(json.dumps({kk: r[kk] for kk in ("val_auc_off", "val_auc_hate", "val_auc_mean", "threshold",
                                                "benign_flag_rate", "size_bytes", "tweets_per_cpu_s")}),
              {kk: v for kk, v in cfg.items() if BASE.get(kk) != v}, flush=True)
        return r

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(run, configs))
    print_table(res)
    return 0


def short(cfg: dict) -> str:
    v = os.path.basename(cfg.get("pretrainedVectors", "none"))
    return f"vec={v} dim={cfg['dim']} epoch={cfg['epoch']} lr={cfg['lr']} wordNgrams={cfg['wordNgrams']}"


def print_table(res: dict) -> None:
    rows = sorted(res.get("runs", {}).values(), key=lambda r: -r["val_auc_mean"])
    print("\n| configuration | quantisation | off val AUC | hate val AUC | score | benign flagged | size MB | tweets/cpu-s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        q = "none" if not r["quantize"] else f"dsub {r['quantize']['dsub']} cutoff {r['quantize']['cutoff']}"
        print(f"| {short(r['params'])} | {q} | {r['val_auc_off']:.3f} | {r['val_auc_hate']:.3f} | "
              f"{r['val_auc_mean']:.4f} | {100 * r['benign_flag_rate']:.1f}% | {r['size_bytes'] / 1e6:.1f} | "
              f"{r['tweets_per_cpu_s']:,} |")


# ---------------------------------------------------------------- quantise candidates (val only)
def cmd_quantize(args) -> int:
    from toxicity_select import fit, score_model

    data = pathlib.Path(args.data)
    sets = validation_sets(data)
    txt = train_txt(data)
    res = load_results()
    cfg = json.loads(args.config)
    for qs in args.quant:
        q = {"qnorm": True, "retrain": True, **json.loads(qs)}
        k = config_key(cfg, q)
        out = WORK / ("q_" + str(abs(hash(k)) % 10**10) + ".ftz")
        if k not in res.get("runs", {}):
            fit({"train": txt, "out": str(out), "params": cfg, "quantize": q})
            r = {"params": cfg, "quantize": q, **score_model(str(out), sets), "path": str(out)}
            res.setdefault("runs", {})[k] = r
            save_results(res)
        r = res["runs"][k]
        print(json.dumps({kk: r[kk] for kk in ("val_auc_off", "val_auc_hate", "val_auc_mean", "threshold",
                                                "benign_flag_rate", "size_bytes", "tweets_per_cpu_s")}), q,
              flush=True)
    print_table(res)
    return 0


# ---------------------------------------------------------------- held-out, once
def cmd_final(args) -> int:
    from toxicity_bench import held_out_sets, print_result, run_scorer, short_texts, t0_sides
    from toxicity_select import load
    from lazaret.checks.toxicity.model import ToxicityModel
    from lazaret.training.metrics import choose_threshold
    from lazaret.training.toxicity import score_rows

    data = pathlib.Path(args.data)
    _, val_off, val_hate, _ = load(data)
    sets = held_out_sets(data)
    t0 = t0_sides(data)
    shorts = short_texts(data)
    out = []
    for path in args.models:
        model = ToxicityModel.load(path, normalizer="lazaret")
        vy = [y for _, y in val_off + val_hate]
        th = choose_threshold(vy, score_rows(model, val_off + val_hate), "fpr:0.1")

        def score(texts, model=model):
            s = []
            for i in range(0, len(texts), 1024):
                s.extend(model.predict_batch(texts[i : i + 1024]))
            return s

        r = run_scorer(f"{path} (size {os.path.getsize(path):,} bytes, val threshold fpr:0.1)", score, th, sets,
                       t0, shorts, t0[0][:20000], t0[1][:50000], args.repeats)
        print_result(r, False)
        out.append(r)
    res = load_results()
    res.setdefault("final", []).extend(out)
    save_results(res)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("vectors")
    v.add_argument("--name", default="sg50")
    v.add_argument("--model", default="skipgram")
    v.add_argument("--dim", type=int, default=50)
    v.add_argument("--epoch", type=int, default=5)
    v.add_argument("--lr", type=float, default=0.05)
    v.add_argument("--min-count", type=int, default=2)
    v.add_argument("--tweet-repeat", type=int, default=1)
    v.add_argument("--thread", type=int, default=1)
    s = sub.add_parser("select")
    s.add_argument("--vectors", nargs="+", default=["sg50"], help="vector names, or 'none' for a control")
    s.add_argument("--control-dims", nargs="+", type=int, default=[50])
    s.add_argument("--epochs", nargs="+", type=int, default=[5, 10])
    s.add_argument("--lrs", nargs="+", type=float, default=[0.05, 0.1, 0.2])
    s.add_argument("--word-ngrams", nargs="+", type=int, default=[2])
    s.add_argument("--jobs", type=int, default=2)
    q = sub.add_parser("quantize")
    q.add_argument("--config", required=True, help="the params JSON of the selected configuration")
    q.add_argument("--quant", nargs="+", default=['{"cutoff": 0, "dsub": 2}'])
    f = sub.add_parser("final")
    f.add_argument("models", nargs="+")
    f.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    wall, cpu = time.time(), time.process_time()
    rc = {"vectors": cmd_vectors, "select": cmd_select, "quantize": cmd_quantize, "final": cmd_final}[args.cmd](args)
    print(f"[{args.cmd}] wall {time.time() - wall:.0f} s, CPU {time.process_time() - cpu:.0f} s here + "
          f"{child_cpu():.0f} s in child processes", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
