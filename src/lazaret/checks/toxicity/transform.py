"""Toxicity check: fastText classifiers scoring the prompt side and the response side of each record.

Why sides separately: a toxic prompt in a red-teaming set may be intended, a toxic response is what a
fine-tuned model learns to say, so the policy gives each side its own threshold and action. Why batched:
fastText's multi-line predict costs a few microseconds per text, the per-element Beam overhead would dominate.

Findings: one per (record, model, side) for every non-empty side scored, action 'none' under the threshold,
so findings/ holds the full score distribution (re-thresholding needs no re-scan). Plain ``{"text"}``
records are scored once, as side 'all', with the response-side settings.

Model files: ``path: default`` is the model shipped inside the package (found with importlib.resources, so
it travels with the installed wheel to every worker). Any other path must be readable by each worker: a local
path that exists on every worker (a shared mount or a file baked into the worker image), or a Beam filesystem
URL (gs://, s3://, hdfs://) that each worker copies once to a local temporary file in ``setup()``, since
fastText only loads from local files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Dict, Iterator, List, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from lazaret.checks.findings import make_finding
from lazaret.checks.guard import isolate_failures

NAMESPACE = "lazaret.toxicity"


def _is_url(path: str) -> bool:
    return "://" in path


def fetch_model(path: str, workdir: str) -> str:
    """A local path for ``path``: URLs are copied (with their metadata sidecar, when present) into ``workdir``."""
    from lazaret.checks.toxicity.model import metadata_path, resolve_model_path

    if not _is_url(path):
        return resolve_model_path(path)
    from apache_beam.io.filesystems import FileSystems

    from lazaret.checks.toxicity.model import ModelError

    local = os.path.join(workdir, os.path.basename(path.rstrip("/")) or "model.bin")
    try:
        with FileSystems.open(path) as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except Exception as exc:  # noqa: BLE001 - any filesystem's error: name the model file
        raise ModelError(f"toxicity model file {path!r} cannot be read by this worker: {exc}") from exc
    from lazaret.checks.toxicity.calibration import calibration_path

    # The sidecar and the calibration file are optional; when present they travel with the model (the
    # calibration is then verified against the sidecar's sha256 and the model's, as for a local model).
    for remote, copy in ((metadata_path(path), metadata_path(local)), (calibration_path(path), calibration_path(local))):
        try:
            if FileSystems.exists(remote):
                with FileSystems.open(remote) as src, open(copy, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        except Exception:  # noqa: BLE001 - optional files: a model that needs one fails its own check
            pass
    return local


def _calibration_setting(cfg: Dict[str, Any], workdir: Optional[str]) -> str:
    """The policy's ``calibration`` value, with a URL copied to a local file like a model."""
    value = cfg.get("calibration") or "auto"
    if value in ("auto", "none") or not _is_url(value):
        return value
    from apache_beam.io.filesystems import FileSystems

    from lazaret.checks.toxicity.calibration import CalibrationError

    local = os.path.join(workdir or tempfile.mkdtemp(prefix="lazaret-tox-"), "policy.calibration.json")
    try:
        with FileSystems.open(value) as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except Exception as exc:  # noqa: BLE001 - any filesystem's error: name the file
        raise CalibrationError(f"toxicity calibration file {value!r} cannot be read by this worker: {exc}") from exc
    return local


def load_models(section: Dict[str, Any], workdir: Optional[str] = None) -> List[Dict[str, Any]]:
    """Load and verify every model of the section; return [{'cfg', 'model', 'thresholds'}] in policy order.

    Raises ModelError (naming the file) for a missing/corrupt file, a sha256 mismatch or a missing label.
    """
    from lazaret.checks.toxicity.model import ToxicityModel

    loaded = []
    for cfg in section.get("models", []):
        path = cfg["path"]
        local = fetch_model(path, workdir or tempfile.mkdtemp(prefix="lazaret-tox-")) if _is_url(path) else path
        model = ToxicityModel.load(
            local,
            label=cfg["label"],
            expected_sha256=cfg.get("sha256"),
            normalizer=cfg.get("normalizer", "auto"),
            max_chars=int(cfg.get("max_chars", 4000)),
            calibration=_calibration_setting(cfg, workdir),
            calibration_sha256=cfg.get("calibration_sha256"),
        )
        trained = model.metadata.get("threshold")
        default_threshold = float(trained) if isinstance(trained, (int, float)) else 0.5
        thresholds = {}
        for side in ("prompt", "response"):
            value = cfg[side].get("threshold")
            thresholds[side] = float(value) if value is not None else default_threshold
        # "p" is a calibrated probability; "raw" a model score that no calibration file maps to one.
        unit = "p" if model.calibration is not None else "raw"
        loaded.append({"cfg": cfg, "model": model, "thresholds": thresholds, "unit": unit})
    return loaded


def models_provenance(section: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Provenance entries for the section's models: path, sha256, labels, origin, thresholds in force."""
    from lazaret.checks.toxicity.model import ModelError, default_model_path

    out: List[Dict[str, Any]] = []
    if not section.get("enabled", True):
        return out
    workdir = tempfile.mkdtemp(prefix="lazaret-tox-prov-")
    try:
        try:
            loaded = load_models(section, workdir)
        except ModelError as exc:
            if section.get("verify_on_launcher", True):
                raise
            # Paths that exist on the workers only: record what the policy says, and why no hash is here.
            return [{"kind": "toxicity", "name": cfg["name"], "configured_path": cfg["path"], "path": cfg["path"],
                     "sha256": cfg.get("sha256"), "label": cfg["label"],
                     "origin": f"not readable where the pipeline was launched: {exc}"}
                    for cfg in section.get("models", [])]
        for item in loaded:
            cfg, model = item["cfg"], item["model"]
            if cfg["path"] in ("default", ""):
                origin = "shipped with lazaret (package data lazaret/models); " + model.metadata.get("origin", "")
            elif _is_url(cfg["path"]):
                origin = f"user model copied from {cfg['path']}"
            else:
                origin = "user model file"
            entry = model.provenance(name=cfg["name"], origin=origin)
            entry["kind"] = "toxicity"
            entry["configured_path"] = cfg["path"]
            if _is_url(cfg["path"]):
                entry["path"] = cfg["path"]
                entry["metadata_file"] = None
            entry["is_default"] = os.path.abspath(model.path) == os.path.abspath(default_model_path())
            entry["thresholds"] = dict(item["thresholds"])
            entry["actions"] = {side: cfg[side]["action"] for side in ("prompt", "response")}
            entry["sides_enabled"] = {side: bool(cfg[side]["enabled"]) for side in ("prompt", "response")}
            out.append(entry)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def _sides(record: Dict[str, Any]) -> List[tuple]:
    """[(finding side, policy side, text)] for the record's non-empty sides."""
    field_sides = {f[1] for f in record.get("fields") or []}
    if "all" in field_sides or record.get("format") == "text":
        text = record.get("text") or ""
        return [("all", "response", text)] if text.strip() else []
    out = []
    for side in ("prompt", "response"):
        text = record.get(side) or ""
        if text.strip():
            out.append((side, side, text))
    return out


class ToxicityDoFn(beam.DoFn):
    """Batches of records in, toxicity findings out. Models load once per worker in setup()."""

    def __init__(self, section: Dict[str, Any]) -> None:
        self.section = section
        self.models: List[Dict[str, Any]] = []
        self.workdir: Optional[str] = None
        self.counters: Dict[str, Any] = {}
        self.records = Metrics.counter(NAMESPACE, "records")
        self.empty = Metrics.counter(NAMESPACE, "sides_empty_skipped")
        self.failures = Metrics.counter(NAMESPACE, "processing_errors")

    def setup(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix="lazaret-tox-")
        self.models = load_models(self.section, self.workdir)

    def teardown(self) -> None:
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _count(self, name: str) -> None:
        counter = self.counters.get(name)
        if counter is None:
            counter = self.counters[name] = Metrics.counter(NAMESPACE, name)
        counter.inc()

    def process(self, batch: List[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
        yield from isolate_failures(batch, self._score, "toxicity", self.failures)

    def _score(self, batch: List[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
        owners: List[tuple] = []
        texts: List[str] = []
        for ri, record in enumerate(batch):
            sides = _sides(record)
            expected = 1 if record.get("format") == "text" else 2
            for _ in range(expected - len(sides)):
                self.empty.inc()
            for finding_side, policy_side, text in sides:
                owners.append((ri, finding_side, policy_side))
                texts.append(text)
        per_model = []
        for item in self.models:
            per_model.append(item["model"].predict_batch(texts) if texts else [])
        for item, scores in zip(self.models, per_model):
            cfg, thresholds = item["cfg"], item["thresholds"]
            short_hash = item["model"].sha256[:12]
            for (ri, finding_side, policy_side), score in zip(owners, scores):
                side_cfg = cfg[policy_side]
                if not side_cfg["enabled"]:
                    continue
                threshold = thresholds[policy_side]
                action = side_cfg["action"] if score >= threshold else "none"
                self._count(f"{cfg['name']}_{finding_side}_{action}")
                detail = (f"{cfg['name']} {cfg['label']} {item['unit']}={score:.3f} "
                          f"{'>=' if action != 'none' else '<'} {threshold:.2f} on {finding_side}; "
                          f"model sha256 {short_hash}")
                yield make_finding(batch[ri], "toxicity", cfg["name"], finding_side, score, detail, action=action)
        self.records.inc(len(batch))


class ToxicityCheck(beam.PTransform):
    """records -> toxicity findings, one per (record, model, non-empty side).

    The models are loaded once when the pipeline is built, so that a missing or corrupt file, a hash
    mismatch or a label that the model does not have stops the scan before any data is read; workers load
    them again in ``setup()``.
    """

    def __init__(self, section: Dict[str, Any], verify: bool = True) -> None:
        super().__init__()
        self.section = section
        if verify and section.get("enabled", True) and section.get("verify_on_launcher", True):
            workdir = tempfile.mkdtemp(prefix="lazaret-tox-verify-")
            try:
                load_models(section, workdir)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)

    def expand(self, records):
        if not self.section.get("enabled", True) or not self.section.get("models"):
            return records | "NoToxicityModels" >> beam.FlatMap(lambda record: [])
        return (records
                | "BatchForFastText" >> beam.BatchElements(min_batch_size=16,
                                                           max_batch_size=int(self.section["batch_size"]))
                | "FastTextToxicity" >> beam.ParDo(ToxicityDoFn(self.section)))
