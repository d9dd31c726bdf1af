"""``lazaret train-toxicity``: train, quantise and evaluate a fastText toxicity classifier.

Why a command and not a notebook: the shipped default model must be reproducible from the data and the
parameters recorded next to it, and users must be able to retrain it (or train their own) with exactly the
normalisation that the scan applies at prediction time (:func:`lazaret.checks.toxicity.normalize.normalize`).

Data handling, and why:
- ``--train FILE...``: labelled JSONL(.gz) with ``text`` and ``label`` (0/1). Rows that carry a ``split`` field
  are routed by it: ``--train-splits`` (default ``train``) are trained on, ``--val-splits`` (default ``val``)
  are the validation data, every other split (``test``) is ignored, so a test split can never leak in.
  Files without ``split`` are training data only.
- ``--clean FILE...``: optional instruction-style or text JSONL (``instruction``/``input``/``output`` or
  ``text``) known to hold (almost) no toxic text; each side becomes a label-0 example. Tweets are another domain
  than fine-tuning data, and these examples teach the model that ordinary long-form prose is not toxic. A
  deterministic 10% (by hash of the text; ``--clean-val-percent``) goes to validation instead of training.
  With ``--clean-val-use report`` that held-out part does not join the threshold data (the threshold is then
  chosen on the labelled val splits alone) and is only reported, as the share of it flagged
  (``clean_validation`` in the metadata).
- ``--augment-concat N``: N extra pseudo-long-form training documents, each the concatenation of 2-6
  (``--augment-parts``) random labelled training rows, toxic when any part is (``--augment-mode any``), or
  half of them made of clean rows only and half of clean rows plus exactly one toxic row
  (``--augment-mode balanced``). Tweets are short; without these the model can tie toxicity to length.
- The threshold is chosen on the validation data only (``--threshold-rule``), never on ``--eval`` files.
- ``--eval FILE...``: held-out files, reported one by one (ROC-AUC, P/R at the threshold, Brier, ECE,
  reliability bins). Rows with a ``split`` field are evaluated only when the split is in ``--eval-splits``
  (default ``test``).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
from typing import Iterable, Iterator, Optional, Sequence

from lazaret.checks.toxicity.calibration import calibration_path, fit_calibration
from lazaret.checks.toxicity.model import DEFAULT_LABEL, ToxicityModel, metadata_path, sha256_file
from lazaret.checks.toxicity.normalize import DEFAULT_MAX_CHARS, NORMALIZE_VERSION, normalize_many
from lazaret.rules.errors import ConfigError
from lazaret.training.metrics import choose_threshold, evaluate_scores

NEGATIVE_LABEL = "__label__clean"


def read_jsonl(path: str) -> Iterator[dict]:
    """Rows of a JSONL or JSONL.gz file (objects only)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ConfigError(f"not valid JSON: {exc}", path=path, line=line_no) from exc
            if isinstance(row, dict):
                yield row


def _label(row: dict, path: str, field: str) -> int:
    value = row.get(field)
    if value in (0, 1, True, False, "0", "1"):
        return int(value)
    raise ConfigError(f"row {row.get('id', '?')!r} has {field}={value!r}; labels must be 0 or 1", path=path)


def _clean_texts(row: dict) -> "list[str]":
    if "instruction" in row or "output" in row:
        prompt = "\n\n".join(str(row[k]) for k in ("instruction", "input") if row.get(k))
        return [t for t in (prompt, str(row.get("output") or "")) if t.strip()]
    text = row.get("text")
    return [text] if isinstance(text, str) and text.strip() else []


def _in_val(text: str, percent: int = 10) -> bool:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % 100 < percent


def concat_augment(rows: Sequence, n: int, parts: "tuple[int, int]" = (2, 6), seed: int = 0,
                   mode: str = "any") -> list:
    """``n`` pseudo-long-form documents made of 2-6 (``parts``) labelled rows joined by spaces.

    ``any``: parts drawn uniformly from ``rows``, label 1 when any part is toxic (with mostly-toxic tweet data
    this makes nearly every long document toxic). ``balanced``: even-numbered documents are clean rows only
    (label 0), odd-numbered ones clean rows plus one toxic row at a random position (label 1).
    Deterministic for a given seed.
    """
    if n <= 0 or not rows:
        return []
    rng = random.Random(f"concat-{seed}")
    lo, hi = parts
    clean = [r for r in rows if not r[1]]
    toxic = [r for r in rows if r[1]]
    if mode == "balanced" and not (clean and toxic):
        raise ConfigError("--augment-mode balanced needs both clean and toxic training rows")
    out = []
    for i in range(n):
        k = rng.randint(lo, hi)
        if mode == "any":
            picked = [rows[rng.randrange(len(rows))] for _ in range(k)]
        elif mode == "balanced":
            picked = [clean[rng.randrange(len(clean))] for _ in range(k - (i % 2))]
            if i % 2:
                picked.insert(rng.randrange(k), toxic[rng.randrange(len(toxic))])
        else:
            raise ConfigError(f"unknown --augment-mode {mode!r} (any | balanced)")
        out.append((" ".join(t for t, _ in picked), int(any(y for _, y in picked))))
    return out


def hash_split(row: dict, text: str, val_percent: int, test_percent: int) -> str:
    """Deterministic split for a row of a file without splits: by sha256 of its ``id`` (else its text).

    ``test`` for the first ``test_percent`` of the hash range, ``val`` for the next ``val_percent``, else
    ``train``. The same row always lands in the same split, in training and in ``--eval``.
    """
    key = str(row.get("id")) if row.get("id") is not None else text
    bucket = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 100
    if bucket < test_percent:
        return "test"
    if bucket < test_percent + val_percent:
        return "val"
    return "train"


def row_split(row: dict, text: str, args: argparse.Namespace) -> Optional[str]:
    """The row's split: its own ``split`` field, else the ``--hash-split`` one (None: no split, no hashing)."""
    split = row.get(args.split_field)
    if split is None and args.hash_split:
        return hash_split(row, text, args.hash_split[0], args.hash_split[1])
    return split


def balance_rows(rows: list, prior: float, max_repeat: float, seed: int, tag: str) -> "tuple[list, float]":
    """Replicate the minority class of one source's training rows towards a toxic share of ``prior``.

    Why: the sources differ in toxic share (Reddit threads sampled to be offensive-rich, Wikipedia talk ~1%,
    Davidson ~80%), so without re-weighting "which source is this" predicts the label and the model learns
    style instead of toxicity. fastText has no sample weights, so the weight is applied by repeating rows
    (``max_repeat`` caps the repetition, so a few hundred toxic comments are not memorised). Returns the
    rows and the replication factor applied to the minority class.
    """
    pos = [r for r in rows if r[1]]
    neg = [r for r in rows if not r[1]]
    if not pos or not neg or prior <= 0:
        return rows, 1.0
    share = len(pos) / len(rows)
    if share < prior:
        minority, majority, factor = pos, neg, prior * len(neg) / ((1 - prior) * len(pos))
    else:
        minority, majority, factor = neg, pos, (1 - prior) * len(pos) / (prior * len(neg))
    factor = min(max(factor, 1.0), max_repeat)
    rng = random.Random(f"balance-{seed}-{tag}")
    whole, frac = int(factor), factor - int(factor)
    extra = []
    for r in minority:
        extra.extend([r] * (whole - 1 + (1 if rng.random() < frac else 0)))
    return rows + extra, round(factor, 3)


def load_data(args: argparse.Namespace) -> "tuple[list, list, list]":
    """(train, val, file_records): lists of (text, label) and a provenance entry per input file.

    With ``--clean-val-use report`` the held-out clean sides are not in ``val`` but in
    ``args.clean_val_rows`` (reported, never used for the threshold). ``args.val_sources`` gets, per val row,
    the index of its file (for per-file validation metrics and per-file calibration weights).
    """
    train: list = []
    val: list = []
    files: list = []
    clean_val: list = []
    val_sources: list = []
    args.clean_val_rows = clean_val
    args.val_sources = val_sources
    for file_index, path in enumerate(args.train):
        counts = {"train": 0, "val": 0, "ignored": 0, "positives_train": 0}
        file_train: list = []
        for row in read_jsonl(path):
            text = row.get(args.text_field)
            if not isinstance(text, str) or not text.strip():
                counts["ignored"] += 1
                continue
            label = _label(row, path, args.label_field)
            split = row_split(row, text, args)
            if split is None or split in args.train_splits:
                file_train.append((text, label))
                counts["train"] += 1
                counts["positives_train"] += label
            elif split in args.val_splits:
                val.append((text, label))
                val_sources.append(file_index)
                counts["val"] += 1
            else:
                counts["ignored"] += 1
        if args.balance_sources:
            before = len(file_train)
            file_train, factor = balance_rows(file_train, args.balance_sources, args.balance_max_repeat,
                                              args.seed, str(file_index))
            counts["balance_repeat_minority"] = factor
            counts["train_after_balance"] = len(file_train)
            counts["positives_after_balance"] = sum(y for _, y in file_train)
            assert len(file_train) >= before
        repeat = args.train_repeat[file_index] if args.train_repeat else 1
        if repeat != 1:
            rng = random.Random(f"repeat-{args.seed}-{file_index}")
            file_train = [r for r in file_train for _ in range(int(repeat) + (rng.random() < repeat - int(repeat)))]
            counts["repeat"] = repeat
            counts["train_after_repeat"] = len(file_train)
        train.extend(file_train)
        files.append({"path": _display(path, args.paths_relative_to), "sha256": sha256_file(path), "role": "labelled", **counts})
    for path in args.clean or []:
        counts = {"train": 0, "val": 0, "ignored": 0, "positives_train": 0}
        for row in read_jsonl(path):
            for text in _clean_texts(row):
                if _in_val(text, args.clean_val_percent):
                    (clean_val if args.clean_val_use == "report" else val).append((text, 0))
                    counts["val"] += 1
                else:
                    train.append((text, 0))
                    counts["train"] += 1
        files.append({"path": _display(path, args.paths_relative_to), "sha256": sha256_file(path), "role": "clean-negatives", **counts})
    n_aug = args.augment_concat
    if n_aug:
        labelled = train[: sum(f.get("train_after_repeat", f.get("train_after_balance", f["train"]))
                               for f in files if f["role"] == "labelled")]
        extra = concat_augment(labelled, n_aug, tuple(args.augment_parts), args.seed, args.augment_mode)
        train.extend(extra)
        files.append({"path": "concatenations of labelled training rows", "role": "augment-concat",
                      "mode": args.augment_mode, "parts": list(args.augment_parts), "train": len(extra),
                      "positives_train": sum(y for _, y in extra), "val": 0, "ignored": 0})
    return train, val, files


def _display(path: str, root: Optional[str] = None) -> str:
    """Paths recorded in metadata: relative to --paths-relative-to (or the working directory) when below it,
    so that metadata written on one machine holds no home directories and reads the same on another."""
    absolute = os.path.abspath(path)
    root = os.path.abspath(root) if root else os.getcwd()
    try:
        rel = os.path.relpath(absolute, root)
    except ValueError:
        return absolute
    return rel if not rel.startswith("..") else absolute


def write_fasttext_file(rows: Sequence, path: str, label: str, seed: int, max_chars: int) -> int:
    """Write normalised, shuffled fastText training lines; return how many were written."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    written = 0
    with open(path, "w", encoding="utf-8") as handle:
        for start in range(0, len(order), 4096):
            chunk = [rows[i] for i in order[start : start + 4096]]
            for (_, y), norm in zip(chunk, normalize_many([t for t, _ in chunk], max_chars)):
                if norm:
                    handle.write(f"{label if y else NEGATIVE_LABEL} {norm}\n")
                    written += 1
    return written


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lazaret train-toxicity",
        description="Train a fastText toxicity classifier from labelled JSONL and report held-out metrics.",
    )
    p.add_argument("--train", nargs="+", default=[], metavar="FILE", help="labelled JSONL(.gz): text, label 0/1")
    p.add_argument("--clean", nargs="*", default=[], metavar="FILE", help="JSONL of clean text (label-0 examples)")
    p.add_argument("--clean-val-percent", type=int, default=10,
                   help="share of the --clean sides (by hash of the text) held out from training (%(default)s)")
    p.add_argument("--clean-val-use", choices=("threshold", "report"), default="threshold",
                   help="threshold: the held-out clean sides join the validation data that the threshold is "
                        "chosen on (default); report: they are only reported, as the share flagged")
    p.add_argument("--augment-concat", type=int, default=0, metavar="N",
                   help="add N pseudo-long-form training documents made of concatenated labelled training "
                        "rows (%(default)s)")
    p.add_argument("--augment-parts", type=int, nargs=2, default=[2, 6], metavar=("MIN", "MAX"),
                   help="rows per concatenated document (%(default)s)")
    p.add_argument("--augment-mode", choices=("any", "balanced"), default="any",
                   help="any: random rows, toxic if any part is; balanced: half all-clean, half clean plus one "
                        "toxic row (%(default)s)")
    p.add_argument("--hash-split", type=int, nargs=2, metavar=("VAL", "TEST"),
                   help="rows without a split field get one by sha256 of their id (else text): VAL%% val, TEST%% "
                        "test, the rest train; --eval files that are also --train files are split the same "
                        "way, so only their test rows are evaluated")
    p.add_argument("--balance-sources", type=float, default=0.0, metavar="PRIOR",
                   help="per --train file, repeat the minority class's training rows towards this toxic share, "
                        "so the source does not predict the label (0: off; %(default)s)")
    p.add_argument("--balance-max-repeat", type=float, default=10.0,
                   help="most times a row is repeated by --balance-sources (%(default)s)")
    p.add_argument("--train-repeat", type=float, nargs="*", default=[], metavar="K",
                   help="one factor per --train file: its training rows (after --balance-sources) are used K "
                        "times (fractions by a seeded draw), so a small source is not drowned by a large one")
    p.add_argument("--calibration", choices=("platt", "isotonic", "none"), default="none",
                   help="fit a score calibration on the validation rows and write <model>.calibration.json "
                        "(%(default)s)")
    p.add_argument("--calibration-weighting", choices=("pooled", "per-file"), default="per-file",
                   help="per-file: each --train file's validation rows weigh the same in the fit; pooled: "
                        "every row weighs the same (%(default)s)")
    p.add_argument("--calibration-files", nargs="*", default=[], metavar="FILE",
                   help="fit the calibration on the validation rows of these --train files only (default: all): "
                        "e.g. the long-form sources, when the corpora to scan are long-form")
    p.add_argument("--eval", nargs="*", default=[], metavar="FILE", help="held-out labelled JSONL to report on")
    p.add_argument("--model", help="evaluate this existing model instead of training (with --eval)")
    p.add_argument("--out", help="output model path (.ftz when quantised, .bin otherwise)")
    p.add_argument("--name", default="", help="model name recorded in the metadata")
    p.add_argument("--label", default=DEFAULT_LABEL, help="label name of the positive class (%(default)s)")
    p.add_argument("--text-field", default="text")
    p.add_argument("--label-field", default="label")
    p.add_argument("--split-field", default="split")
    p.add_argument("--train-splits", nargs="+", default=["train"])
    p.add_argument("--val-splits", nargs="+", default=["val"])
    p.add_argument("--eval-splits", nargs="+", default=["test"])
    g = p.add_argument_group("fastText parameters")
    g.add_argument("--lr", type=float, default=0.1)
    g.add_argument("--epoch", type=int, default=5)
    g.add_argument("--dim", type=int, default=16)
    g.add_argument("--word-ngrams", type=int, default=2)
    g.add_argument("--minn", type=int, default=0)
    g.add_argument("--maxn", type=int, default=0)
    g.add_argument("--min-count", type=int, default=1)
    g.add_argument("--bucket", type=int, default=100000, help="hash buckets for word n-grams (%(default)s)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--thread", type=int, default=1, help="1 keeps training deterministic")
    g.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS)
    g.add_argument("--repeats", type=int, default=1,
                   help="train this many times (each in a fresh process) and keep the model with the best "
                        "validation ROC-AUC, a guard against fastText 0.9.2's occasional divergent runs "
                        "(%(default)s)")
    q = p.add_argument_group("quantisation")
    q.add_argument("--no-quantize", action="store_true", help="keep the full model (large)")
    q.add_argument("--cutoff", type=int, default=0,
                   help="keep only this many words/n-gram rows when quantising; 0 keeps all (%(default)s)")
    q.add_argument("--dsub", type=int, default=2)
    t = p.add_argument_group("threshold")
    t.add_argument("--threshold", type=float, help="use this threshold instead of choosing one on validation")
    t.add_argument("--threshold-rule", default="fpr:0.1",
                   help="f1 | precision:P | fpr:F, on the validation data (%(default)s: the lowest threshold "
                        "that flags at most 10%% of the validation negatives)")
    p.add_argument("--report", help="also write the evaluation report as JSON here")
    p.add_argument("--selection", default="",
                   help="how the parameters were chosen, recorded as `selection` in the metadata")
    p.add_argument("--paths-relative-to", metavar="DIR", help="record data file paths relative to DIR")
    return p


def train_model(args: argparse.Namespace, train_rows: list, workdir: str, out: Optional[str] = None
                ) -> "tuple[str, dict]":
    """Train (and quantise) with fastText into ``out`` (default --out); return (model path, parameters)."""
    train_txt = os.path.join(workdir, "train.txt")
    n = write_fasttext_file(train_rows, train_txt, args.label, args.seed, args.max_chars)
    if n == 0:
        raise ConfigError("no training examples (check --train files and --train-splits)")
    params = {
        "lr": args.lr,
        "epoch": args.epoch,
        "dim": args.dim,
        "wordNgrams": args.word_ngrams,
        "minn": args.minn,
        "maxn": args.maxn,
        "minCount": args.min_count,
        "bucket": args.bucket,
        "loss": "softmax",
        "seed": args.seed,
        "thread": args.thread,
    }
    out = out or args.out
    qparams = None if args.no_quantize else {"cutoff": args.cutoff, "dsub": args.dsub, "qnorm": True,
                                             "retrain": True}
    fit_fasttext(train_txt, out, params, qparams)
    if qparams:
        params["quantize"] = qparams
    return out, params


ATTEMPTS = 10


def fit_fasttext(train_txt: str, out: str, params: dict, qparams: Optional[dict] = None) -> str:
    """Train (and quantise) a fastText classifier on ``train_txt`` and save it to ``out``.

    Each attempt runs in a fresh Python process (``sys.executable -c``). fastText 0.9.2 (the numpy-2 wheel) is not reliable
    when it trains again inside a process that already trained or predicted: on the same file and seed it
    then raises "Encountered NaN" or returns different, worse weights, more and more often (measured here;
    consistent with native memory that is read before it is written). A fresh process gave the same file
    every time on the default training set. An attempt that still fails with "Encountered NaN" is retried.
    """
    import subprocess

    last = ""
    spec = json.dumps({"train": train_txt, "out": out, "params": params, "quantize": qparams})
    code = "import sys; from lazaret.training.toxicity import _fit_child; sys.exit(_fit_child(sys.argv[1]))"
    for _ in range(ATTEMPTS):
        done = subprocess.run([sys.executable, "-c", code, spec], capture_output=True, text=True)
        if done.returncode == 0:
            return out
        error = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        if "NaN" not in error:
            raise SystemExit(f"fastText training failed: {error}")
        last = error
    raise SystemExit(f"fastText training failed {ATTEMPTS} times: {last} (try a lower --lr)")


def _fit_child(spec_json: str) -> int:
    """Runs in the child process: train, quantise, save; the error goes to stderr's last line."""
    import fasttext

    spec = json.loads(spec_json)
    try:
        model = fasttext.train_supervised(input=spec["train"], verbose=0, **spec["params"])
        if spec["quantize"]:
            model.quantize(input=spec["train"], thread=spec["params"].get("thread", 1), verbose=0,
                           **spec["quantize"])
        model.save_model(spec["out"])
    except RuntimeError as exc:
        print(f"fastText error: {exc}", file=sys.stderr)
        return 1
    return 0


def score_rows(model: ToxicityModel, rows: Sequence, batch: int = 4096) -> "list[float]":
    scores: list = []
    texts = [t for t, _ in rows]
    for i in range(0, len(texts), batch):
        scores.extend(model.predict_batch(texts[i : i + batch]))
    return scores


def load_eval(path: str, args: argparse.Namespace) -> list:
    rows = []
    hashed = bool(getattr(args, "hash_split", None)) and os.path.abspath(path) in {
        os.path.abspath(p) for p in args.train}
    for row in read_jsonl(path):
        text = row.get(args.text_field)
        if not isinstance(text, str):
            continue
        split = row_split(row, text, args) if hashed else row.get(args.split_field)
        if split is not None and split not in args.eval_splits:
            continue
        rows.append((text, _label(row, path, args.label_field)))
    return rows


def evaluate_files(model: ToxicityModel, paths: Iterable[str], threshold: float, args) -> dict:
    out = {}
    for path in paths:
        rows = load_eval(path, args)
        if not rows:
            out[_display(path, args.paths_relative_to)] = {"n": 0, "note": f"no rows in splits {args.eval_splits}"}
            continue
        scores = score_rows(model, rows)
        metrics = evaluate_scores([y for _, y in rows], scores, threshold)
        metrics["sha256"] = sha256_file(path)
        out[_display(path, args.paths_relative_to)] = metrics
    return out


def format_metrics(name: str, m: dict) -> str:
    if not m.get("n"):
        return f"{name}: {m.get('note', 'no rows')}"
    auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
    return (
        f"{name}: n={m['n']} pos={m['positives']} ROC-AUC={auc} @th={m['threshold']:.2f} "
        f"P={m['precision']:.3f} R={m['recall']:.3f} F1={m['f1']:.3f} flagged={m['flag_rate']:.3f} "
        f"Brier={m['brier']:.3f} ECE={m['ece']:.3f}"
    )


def format_reliability(m: dict) -> str:
    cells = [
        f"[{b['lo']:.1f},{b['hi']:.1f}) n={b['n']} score={b['mean_score']:.2f} obs={b['positive_rate']:.2f}"
        for b in m.get("reliability", [])
        if b["n"]
    ]
    return "    reliability: " + "; ".join(cells)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``lazaret train-toxicity``; returns the exit status (0 ok, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.model:
        if not args.eval:
            parser.error("--model needs --eval FILE...")
        model = ToxicityModel.load(args.model, label=args.label)
        threshold = args.threshold if args.threshold is not None else model.metadata.get("threshold", 0.5)
        report = {"model": model.provenance(), "eval": evaluate_files(model, args.eval, threshold, args)}
        _print_report(report)
        print(format_table(report))
        _write_report(args.report, report)
        return 0
    if not args.train or not args.out:
        parser.error("training needs --train FILE... and --out MODEL (or use --model with --eval)")
    if args.train_repeat and len(args.train_repeat) != len(args.train):
        parser.error("--train-repeat needs one factor per --train file")
    train_rows, val_rows, files = load_data(args)
    val_y = [y for _, y in val_rows]
    out = args.out
    attempts = []
    with tempfile.TemporaryDirectory(prefix="lazaret-tox-") as workdir:
        best = None
        for i in range(max(1, args.repeats)):
            candidate = os.path.join(workdir, f"attempt{i}" + os.path.splitext(out)[1])
            _, params = train_model(args, train_rows, workdir, candidate)
            cand_model = ToxicityModel.load(candidate, label=args.label, normalizer="lazaret",
                                            max_chars=args.max_chars, calibration="none")
            scores = score_rows(cand_model, val_rows) if val_rows else []
            auc = evaluate_scores(val_y, scores, 0.5)["roc_auc"] if val_rows else None
            attempts.append({"sha256": cand_model.sha256, "validation_roc_auc": auc})
            if best is None or (auc is not None and auc > best[0] + 1e-9):
                best = (auc if auc is not None else float("-inf"), candidate, scores)
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        for stale in (metadata_path(out), calibration_path(out)):  # they describe the old model: rewritten below
            if os.path.exists(stale):
                os.remove(stale)
        shutil.copyfile(best[1], out)
        val_scores = best[2]
    model = ToxicityModel.load(out, label=args.label, normalizer="lazaret", max_chars=args.max_chars,
                               calibration="none")
    raw_val_scores = val_scores
    calibration_entry = None
    if args.calibration != "none":
        cal = _fit_calibration(args, model, val_y, raw_val_scores, files)
        cal_out = calibration_path(out)
        cal.write(cal_out)
        model.calibration, model.calibration_file = cal, cal_out
        model.calibration_sha256 = sha256_file(cal_out)
        val_scores = cal.apply(raw_val_scores).tolist()
        calibration_entry = {"file": os.path.basename(cal_out), "sha256": model.calibration_sha256,
                             "method": cal.method, "fitted_on": cal.fitted_on,
                             "validation_raw": evaluate_scores(val_y, raw_val_scores, 0.5)}
    if args.threshold is not None:
        threshold, rule = args.threshold, "fixed"
    elif val_rows and 0 < sum(val_y) < len(val_y):
        threshold, rule = choose_threshold(val_y, val_scores, args.threshold_rule), args.threshold_rule
    else:
        threshold, rule = 0.5, "default (no validation data with both classes)"
    metadata = {
        "name": args.name or os.path.splitext(os.path.basename(out))[0],
        "origin": "trained with `lazaret train-toxicity`",
        "format": "fasttext-supervised" + ("-quantized" if not args.no_quantize else ""),
        "label": args.label,
        "labels": model.labels,
        "normalize_version": NORMALIZE_VERSION,
        "max_chars": args.max_chars,
        "threshold": threshold,
        "threshold_rule": rule,
        "threshold_chosen_on": "validation splits " + ",".join(args.val_splits) + (
            f" + {args.clean_val_percent}% hash-held-out of --clean files"
            if args.clean and args.clean_val_use == "threshold" else ""
        ),
        "params": params,
        "selection": args.selection or None,
        "training_attempts": attempts,
        "training_files": files,
        "counts": {
            "train": len(train_rows),
            "train_positives": sum(y for _, y in train_rows),
            "val": len(val_rows),
            "val_positives": sum(val_y),
        },
        "validation": evaluate_scores(val_y, val_scores, threshold) if val_rows else None,
        "validation_by_file": _validation_by_file(args, files, val_y, val_scores, threshold),
        "calibration": calibration_entry,
        "model_sha256": model.sha256,
        "model_size_bytes": os.path.getsize(out),
        "argv": _display_argv(argv, args.paths_relative_to),
    }
    if args.clean_val_rows:
        flagged = sum(s >= threshold for s in score_rows(model, args.clean_val_rows))
        metadata["clean_validation"] = {"n": len(args.clean_val_rows), "percent": args.clean_val_percent,
                                        "flag_rate": round(flagged / len(args.clean_val_rows), 4)}
    if args.eval:
        metadata["eval"] = evaluate_files(model, args.eval, threshold, args)
    with open(metadata_path(out), "w", encoding="utf-8") as handle:
        json.dump(metadata, handle, indent=2, sort_keys=True)
        handle.write("\n")
    print(f"wrote {out} ({metadata['model_size_bytes']} bytes, sha256 {model.sha256})")
    print(f"wrote {metadata_path(out)}")
    if calibration_entry:
        print(f"wrote {calibration_path(out)} ({calibration_entry['method']}, fitted on the validation rows)")
    print(f"threshold {threshold:.2f} ({rule}, on validation: {metadata['threshold_chosen_on']})")
    if metadata["validation"]:
        print(format_metrics("validation", metadata["validation"]))
    print(format_table(metadata))
    if metadata.get("clean_validation"):
        cv = metadata["clean_validation"]
        print(f"held-out clean sides ({cv['percent']}% of --clean, n={cv['n']}): flagged={cv['flag_rate']:.4f}")
    _print_report({"eval": metadata.get("eval", {})})
    _write_report(args.report, metadata)
    return 0


def _fit_calibration(args: argparse.Namespace, model: ToxicityModel, val_y: list, raw: list, files: list):
    """Fit ``--calibration`` on the validation rows (never on --eval rows), weighted per ``--calibration-weighting``.

    ``per-file``: each --train file's validation rows carry the same total weight, so a large validation
    split of one source (or its base rate) does not set the probability scale for all the others.
    """
    if not val_y or len(set(val_y)) < 2:
        raise ConfigError("--calibration needs validation rows with both labels (see --val-splits, --hash-split)")
    weights = None
    sources = list(getattr(args, "val_sources", []))
    sources += [-1] * (len(val_y) - len(sources))  # held-out --clean rows in the validation data
    if args.calibration_files:
        wanted = {os.path.abspath(p) for p in args.calibration_files}
        unknown = wanted - {os.path.abspath(p) for p in args.train}
        if unknown:
            raise ConfigError(f"--calibration-files must be --train files: {sorted(unknown)}")
        keep = [i for i, s in enumerate(sources) if s >= 0 and os.path.abspath(args.train[s]) in wanted]
        val_y = [val_y[i] for i in keep]
        raw = [raw[i] for i in keep]
        sources = [sources[i] for i in keep]
        if len(set(val_y)) < 2:
            raise ConfigError("--calibration-files: their validation rows do not have both labels")
    if args.calibration_weighting == "per-file":
        sizes: dict = {}
        for s in sources:
            sizes[s] = sizes.get(s, 0) + 1
        weights = [len(val_y) / (len(sizes) * sizes[s]) for s in sources]
    fitted_on = {
        "rows": len(val_y), "positives": int(sum(val_y)), "weighting": args.calibration_weighting,
        "validation_splits": list(args.val_splits),
        "files": {_display(args.train[s], args.paths_relative_to) if s >= 0 else "--clean held-out": n
                  for s, n in sorted(_count(sources).items())},
    }
    return fit_calibration(args.calibration, raw, val_y, model.sha256, weights=weights, fitted_on=fitted_on)


def _count(items: list) -> dict:
    out: dict = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def _validation_by_file(args: argparse.Namespace, files: list, val_y: list, scores: list, threshold: float
                        ) -> dict:
    """Validation metrics per --train file (the figures a source-stratified model must show)."""
    out = {}
    sources = list(getattr(args, "val_sources", []))
    for index, path in enumerate(args.train):
        idx = [i for i, s in enumerate(sources) if s == index]
        if idx:
            m = evaluate_scores([val_y[i] for i in idx], [scores[i] for i in idx], threshold)
            out[_display(path, args.paths_relative_to)] = m
    return out


def format_table(report: dict) -> str:
    """The figures as a Markdown table (the table docs/toxicity.md keeps for every candidate)."""
    lines = ["| set | rows | toxic | ROC-AUC | ECE | Brier | P / R at threshold | flagged |",
             "|---|---|---|---|---|---|---|---|"]
    sections = [("validation, all", {"all": report.get("validation")}),
                ("validation", report.get("validation_by_file") or {}),
                ("held-out", report.get("eval") or {})]
    for kind, entries in sections:
        for name, m in sorted(entries.items()):
            if not m or not m.get("n"):
                continue
            auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
            label = kind if name == "all" else f"{kind}: {name}"
            lines.append(f"| {label} | {m['n']} | {m['positives']} | {auc} | {m['ece']:.3f} | {m['brier']:.3f} | "
                         f"{m['precision']:.3f} / {m['recall']:.3f} at {m['threshold']:.2f} | "
                         f"{m['flag_rate']:.3f} |")
    return "\n".join(lines)


def _display_argv(argv: Optional[Sequence[str]], root: Optional[str]) -> list:
    """The command line as recorded in metadata: file paths relative to root or cwd, else their base name."""
    items = list(argv) if argv is not None else sys.argv[1:]
    out = []
    for item in items:
        if item.startswith("-") or not os.path.exists(item):
            out.append(item)
            continue
        shown = _display(item, root)
        if os.path.isabs(shown):
            shown = _display(item)
        out.append(shown if not os.path.isabs(shown) else os.path.basename(item))
    return out


def _print_report(report: dict) -> None:
    for name, m in sorted(report.get("eval", {}).items()):
        print(format_metrics(name, m))
        if m.get("n"):
            print(format_reliability(m))


def _write_report(path: Optional[str], report: dict) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, sort_keys=True)
            handle.write("\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
