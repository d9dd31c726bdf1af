"""Score calibration for toxicity models: raw fastText probabilities -> calibrated probabilities.

Why: a user reads a score in [0, 1] as a probability ("p=0.7: 7 in 10 such texts are toxic"), and the policy's
thresholds are written in that unit. A fastText softmax trained on re-weighted, mostly-toxic tweet data is
not one: it over-predicts on ordinary prose. A monotone map fitted on *validation* data (never on a test set)
fixes the unit without changing the ranking (ROC-AUC is unchanged).

Why plain JSON and not a pickled scikit-learn object: the file ships inside the package and is loaded on
every worker; a pickle would execute code on load, JSON cannot. It is small (two numbers for Platt scaling,
a few hundred breakpoints for isotonic regression), sha256-pinned by the model's sidecar, and it names the
sha256 of the model it was fitted for, so it cannot be paired with another model by mistake.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from lazaret.rules.errors import ConfigError

CALIBRATION_FORMAT = "lazaret-toxicity-calibration-1"
METHODS = ("platt", "isotonic")
_EPS = 1e-6


class CalibrationError(ConfigError):
    """A calibration file cannot be used; the message names the file and what is wrong with it."""


def calibration_path(model_path: str) -> str:
    """The calibration file that belongs to a model: ``model.ftz`` -> ``model.calibration.json``."""
    root, _ = os.path.splitext(model_path)
    return root + ".calibration.json"


def _logit(scores: Sequence[float]) -> np.ndarray:
    s = np.clip(np.asarray(scores, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(s / (1.0 - s))


@dataclass(frozen=True)
class Calibration:
    """A monotone map from raw model scores to probabilities.

    ``platt``: ``p = 1 / (1 + exp(-(a * logit(raw) + b)))``. ``isotonic``: piecewise-linear interpolation
    between the breakpoints ``(x[i], y[i])`` (``x`` raw scores, increasing; ``y`` non-decreasing), clipped
    at both ends, exactly as scikit-learn's ``IsotonicRegression(out_of_bounds="clip")`` predicts.
    """

    method: str
    model_sha256: str
    a: float = 1.0
    b: float = 0.0
    x: tuple = ()
    y: tuple = ()
    fitted_on: Optional[dict] = None

    def apply(self, raw: Sequence[float]) -> np.ndarray:
        """Calibrated probabilities for raw scores (numpy, vectorised: a few ns per score)."""
        if self.method == "platt":
            z = self.a * _logit(raw) + self.b
            return 1.0 / (1.0 + np.exp(-z))
        return np.interp(np.asarray(raw, dtype=np.float64), self.x, self.y)

    def to_json(self) -> dict:
        out = {"format": CALIBRATION_FORMAT, "method": self.method, "model_sha256": self.model_sha256,
               "fitted_on": self.fitted_on or {}}
        if self.method == "platt":
            out["platt"] = {"a": self.a, "b": self.b, "formula": "1 / (1 + exp(-(a * logit(raw) + b)))"}
        else:
            out["isotonic"] = {"x": list(self.x), "y": list(self.y),
                               "formula": "numpy.interp(raw, x, y): linear between breakpoints, clipped"}
        return out

    def write(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.to_json(), handle, indent=1, sort_keys=True)
            handle.write("\n")


def fit_calibration(method: str, raw: Sequence[float], y: Sequence[int], model_sha256: str,
                    weights: Optional[Sequence[float]] = None, fitted_on: Optional[dict] = None) -> Calibration:
    """Fit ``method`` (platt | isotonic) on validation scores ``raw`` with labels ``y`` (scikit-learn).

    ``weights``: optional per-row sample weights (e.g. so that each validation source counts equally).
    Numbers are rounded (x to 9 decimals, y to 6) so the written file is the same on every machine; isotonic
    breakpoints that share an x after rounding are merged (upper value), so x is strictly increasing.
    """
    y_arr = np.asarray(y, dtype=int)
    if len(set(y_arr.tolist())) != 2:
        raise ConfigError("calibration needs validation data with both toxic and clean rows")
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        # Essentially unregularised (C large): Platt scaling is a 2-parameter maximum-likelihood fit.
        lr = LogisticRegression(C=1e6, solver="lbfgs", max_iter=1000)
        lr.fit(_logit(raw).reshape(-1, 1), y_arr, sample_weight=w)
        return Calibration("platt", model_sha256, a=round(float(lr.coef_[0][0]), 6),
                           b=round(float(lr.intercept_[0]), 6), fitted_on=fitted_on)
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
        iso.fit(np.asarray(raw, dtype=np.float64), y_arr, sample_weight=w)
        xs: list = []
        ys: list = []
        for xv, yv in zip(iso.X_thresholds_, iso.y_thresholds_):
            xr, yr = round(float(xv), 9), round(float(yv), 6)
            if xs and xr <= xs[-1]:  # scikit-learn keeps both ends of a step at the same x: keep the upper
                ys[-1] = max(ys[-1], yr)
                continue
            xs.append(xr)
            ys.append(yr)
        return Calibration("isotonic", model_sha256, x=tuple(xs), y=tuple(ys), fitted_on=fitted_on)
    raise ConfigError(f"unknown calibration method {method!r}: use one of {METHODS} or none")


def load_calibration(path: str, model_sha256: str, expected_sha256: Optional[str] = None) -> Calibration:
    """Read and verify a calibration file; raise CalibrationError naming ``path`` on any problem.

    Checks: the file exists; its sha256 equals ``expected_sha256`` when one is given (the model's sidecar or
    the policy pins it); it is a JSON object of this format; it was fitted for the model with ``model_sha256``;
    its numbers are finite, and isotonic breakpoints are increasing in ``x`` and non-decreasing in ``y``
    within [0, 1] (so the map is a monotone probability).
    """
    from lazaret.graph.hashing import sha256_file

    def fail(reason: str) -> CalibrationError:
        return CalibrationError(f"toxicity calibration file {path!r} {reason}")

    if not os.path.isfile(path):
        raise fail("does not exist or is not a file")
    digest = sha256_file(path)
    if expected_sha256 and digest.lower() != expected_sha256.strip().lower():
        raise fail(f"has sha256 {digest}, expected {expected_sha256.strip().lower()}: the file was changed")
    try:
        with open(path, "r", encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise fail(f"is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT:
        raise fail(f"is not a {CALIBRATION_FORMAT} file")
    if data.get("model_sha256") != model_sha256:
        raise fail(f"was fitted for the model with sha256 {data.get('model_sha256')}, not for this model "
                   f"({model_sha256}): refit it with `lazaret train-toxicity`")
    method = data.get("method")
    try:
        if method == "platt":
            a, b = float(data["platt"]["a"]), float(data["platt"]["b"])
            if not (math.isfinite(a) and math.isfinite(b)) or a <= 0:
                raise fail("has Platt coefficients that are not finite or a slope <= 0 (not monotone)")
            return Calibration("platt", model_sha256, a=a, b=b, fitted_on=data.get("fitted_on"))
        if method == "isotonic":
            xs = tuple(float(v) for v in data["isotonic"]["x"])
            ys = tuple(float(v) for v in data["isotonic"]["y"])
        else:
            raise fail(f"has unknown method {method!r} (use one of {METHODS})")
    except (KeyError, TypeError, ValueError) as exc:
        raise fail(f"is missing or has malformed coefficients: {exc}") from exc
    if not xs or len(xs) != len(ys):
        raise fail("has isotonic breakpoints of different lengths or none")
    if not all(math.isfinite(v) for v in xs + ys) or any(v < 0 or v > 1 for v in ys):
        raise fail("has isotonic breakpoints that are not finite probabilities")
    if any(b <= a for a, b in zip(xs, xs[1:])) or any(b < a for a, b in zip(ys, ys[1:])):
        raise fail("has isotonic breakpoints that are not monotone")
    return Calibration("isotonic", model_sha256, x=xs, y=ys, fitted_on=data.get("fitted_on"))
