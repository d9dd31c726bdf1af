"""Evaluation metrics for toxicity scores: ROC-AUC, precision/recall at a threshold, calibration.

Kept apart from training so the benchmark and ``lazaret train-toxicity --eval`` report the same figures.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def reliability_bins(y: Sequence[int], scores: Sequence[float], bins: int = 10) -> "list[dict]":
    """Equal-width score bins with their count, mean score and observed positive rate (reliability diagram)."""
    y_arr = np.asarray(y, dtype=float)
    s_arr = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.minimum((s_arr * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        out.append(
            {
                "lo": round(float(edges[b]), 3),
                "hi": round(float(edges[b + 1]), 3),
                "n": n,
                "mean_score": round(float(s_arr[mask].mean()), 4) if n else None,
                "positive_rate": round(float(y_arr[mask].mean()), 4) if n else None,
            }
        )
    return out


def evaluate_scores(y: Sequence[int], scores: Sequence[float], threshold: float) -> dict:
    """ROC-AUC, P/R/F1 at ``threshold``, Brier score, expected calibration error and reliability bins."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    y_arr = np.asarray(y, dtype=int)
    s_arr = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
    pred = s_arr >= threshold
    tp = int((pred & (y_arr == 1)).sum())
    fp = int((pred & (y_arr == 0)).sum())
    fn = int((~pred & (y_arr == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    both = len(set(y_arr.tolist())) == 2
    bins = reliability_bins(y_arr, s_arr)
    ece = sum(b["n"] * abs(b["mean_score"] - b["positive_rate"]) for b in bins if b["n"]) / max(len(y_arr), 1)
    return {
        "n": int(len(y_arr)),
        "positives": int(y_arr.sum()),
        "roc_auc": round(float(roc_auc_score(y_arr, s_arr)), 4) if both else None,
        "threshold": round(float(threshold), 4),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "flag_rate": round(float(pred.mean()), 4) if len(y_arr) else 0.0,
        "brier": round(float(brier_score_loss(y_arr, s_arr)), 4) if len(y_arr) else None,
        "ece": round(float(ece), 4),
        "reliability": bins,
    }


def choose_threshold(y: Sequence[int], scores: Sequence[float], rule: str) -> float:
    """Pick a decision threshold on validation data.

    Rules: ``f1`` (maximise F1), ``precision:P`` (lowest threshold whose precision is >= P, so that what is
    quarantined is mostly toxic), ``fpr:F`` (lowest threshold whose false-positive rate on the negatives is
    <= F, which bounds how much clean data is held back). Candidates are 0.01 steps, so the chosen value is
    stable and readable in the policy.
    """
    y_arr = np.asarray(y, dtype=int)
    s_arr = np.asarray(scores, dtype=float)
    candidates = np.round(np.arange(0.01, 1.0, 0.01), 2)
    kind, _, value = rule.partition(":")
    if kind == "f1":
        best, best_f1 = 0.5, -1.0
        for th in candidates:
            pred = s_arr >= th
            tp = (pred & (y_arr == 1)).sum()
            denom = pred.sum() + (y_arr == 1).sum()
            f1 = 2 * tp / denom if denom else 0.0
            if f1 > best_f1 + 1e-12:
                best, best_f1 = float(th), float(f1)
        return best
    if kind in ("precision", "fpr"):
        target = float(value)
        negatives = max(int((y_arr == 0).sum()), 1)
        for th in candidates:
            pred = s_arr >= th
            if kind == "precision":
                ok = pred.sum() > 0 and (pred & (y_arr == 1)).sum() / pred.sum() >= target
            else:
                ok = (pred & (y_arr == 0)).sum() / negatives <= target
            if ok:
                return float(th)
        return float(candidates[-1])
    raise ValueError(f"unknown threshold rule {rule!r}: use f1, precision:P or fpr:F")
