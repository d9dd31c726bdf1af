"""Schema of the policy's ``toxicity`` section: which fastText models score which side, and what to do.

Why per side: toxic *prompts* in a red-teaming or safety set may be intended (flag them for the report),
toxic *responses* are what a fine-tuned model learns to say (quarantine them). Why several models: users run
e.g. a hate model and an NSFW model side by side, each with its own label name and thresholds.
See docs/toxicity.md.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Dict

from lazaret.rules.schema import Ctx, F, fraction

ACTIONS = ("flag", "quarantine")
NORMALIZERS = ("auto", "lazaret", "minimal")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

def _side_spec(action: str) -> Dict[str, F]:
    return {
        "enabled": F("bool", True, "score this side"),
        "threshold": fraction(None, "score at or above which the action applies; null: the threshold recorded in the "
                              "model's metadata sidecar (chosen on validation data), else 0.5", nullable=True),
        "action": F("str", action, "flag: keep and report; quarantine: hold for review", choices=ACTIONS),
    }


# Defaults differ per side: a toxic prompt may be intended (red-teaming data), a toxic response is learned.
PROMPT_SPEC: Dict[str, F] = _side_spec("flag")
RESPONSE_SPEC: Dict[str, F] = _side_spec("quarantine")

MODEL_SPEC: Dict[str, F] = {
    "name": F("str", "toxicity_default", "rule name in findings and the manifest; unique"),
    "path": F("str", "default", "'default' (the model shipped in the package) or a model file path readable "
              "by every worker: a local path present on each worker, or any Beam filesystem URL (gs://, s3://) "
              "which workers copy to a temporary file once in setup()"),
    "label": F("str", "__label__toxic", "the fastText label whose probability is the score; must be one of "
               "the model's labels (checked when the pipeline is built and again on each worker)"),
    "sha256": F("str", None, "pin the model file's sha256; a different file is refused", nullable=True),
    "normalizer": F("str", "auto", "text preparation: lazaret (the train-time normalisation of lazaret "
                    "models), minimal (whitespace only, for third-party models such as dolma's), auto (lazaret "
                    "when the model has a lazaret metadata sidecar, else minimal)", choices=NORMALIZERS),
    "max_chars": F("int", 4000, "characters of each side given to the model", min=100),
    "calibration": F("str", "auto", "score calibration (raw model score -> probability): auto (the calibration "
                     "file named by the model's sidecar, or <model>.calibration.json beside it; none if there is "
                     "none), none (raw scores), or the path/URL of a calibration file written by `lazaret "
                     "train-toxicity --calibration`"),
    "calibration_sha256": F("str", None, "pin the calibration file's sha256; a different file is refused",
                            nullable=True),
    "prompt": F("section", None, "prompt side settings", item=PROMPT_SPEC),
    "response": F("section", None, "response side settings (also used for plain {\"text\"} records)",
                  item=RESPONSE_SPEC),
}

DEFAULT_MODEL: Dict[str, Any] = {
    "name": "toxicity_default",
    "path": "default",
    "label": "__label__toxic",
    "sha256": None,
    "normalizer": "auto",
    "max_chars": 4000,
    "calibration": "auto",
    "calibration_sha256": None,
    "prompt": {"enabled": True, "threshold": None, "action": "flag"},
    "response": {"enabled": True, "threshold": None, "action": "quarantine"},
}

SPEC: Dict[str, F] = {
    "enabled": F("bool", True, "run the toxicity check when --checks includes toxicity"),
    "batch_size": F("int", 1024, "most records per fastText call", min=1, max=100000),
    "verify_on_launcher": F("bool", True, "load every model when the pipeline is built, so a bad file or label "
                            "stops the scan before any data is read; set false only when model paths exist on "
                            "the workers alone (workers still verify in setup())"),
    "models": F("list", [copy.deepcopy(DEFAULT_MODEL)], "the models to run (each scores both sides)",
                item=MODEL_SPEC),
}


def check(values: Dict[str, Any], ctx: Ctx) -> None:
    """Cross-field rules: unique, safe model names; a label; something to run."""
    seen = set()
    if values["enabled"] and not values["models"]:
        raise ctx.error("models", "list at least one model, or set enabled: false")
    for i, model in enumerate(values["models"]):
        where = f"models[{i}]"
        name = model["name"]
        if not _NAME.match(name):
            raise ctx.error(f"{where}.name", "use 1-64 letters, digits, '_', '.', '-' (it names counters and rules)")
        if name in seen:
            raise ctx.error(f"{where}.name", f"duplicate model name {name!r}")
        seen.add(name)
        if not model["path"].strip():
            raise ctx.error(f"{where}.path", "must be 'default' or a model file path")
        if not model["label"].strip():
            raise ctx.error(f"{where}.label", "must name one of the model's labels, e.g. __label__toxic")
        sha = model.get("sha256")
        if sha is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha.strip()):
            raise ctx.error(f"{where}.sha256", "must be 64 hex digits")
        csha = model.get("calibration_sha256")
        if csha is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", csha.strip()):
            raise ctx.error(f"{where}.calibration_sha256", "must be 64 hex digits")
        if not str(model.get("calibration") or "").strip():
            raise ctx.error(f"{where}.calibration", "must be auto, none or a calibration file path")
        if not (model["prompt"]["enabled"] or model["response"]["enabled"]):
            raise ctx.error(where, "both sides are disabled; remove the model instead")


def _defaults() -> Dict[str, Any]:
    from lazaret.rules.schema import defaults

    return defaults(SPEC)


DEFAULTS: Dict[str, Any] = _defaults()
