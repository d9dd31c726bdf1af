"""Loading and batch-scoring fastText toxicity models.

Why a wrapper around ``fasttext.load_model``: a scan runs for hours on many workers, so everything that can
be wrong with a model file (missing, corrupt, swapped for another file, trained with other label names) must
fail at worker start-up with a message naming the file, never as a crash or a silent run of zeros mid-run.
The wrapper also owns the text normalisation so that training and prediction cannot drift apart.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from lazaret.checks.toxicity.calibration import Calibration, calibration_path, load_calibration
from lazaret.checks.toxicity.normalize import DEFAULT_MAX_CHARS, NORMALIZE_VERSION, normalize_many
from lazaret.graph.hashing import sha256_file  # noqa: F401 - re-exported
from lazaret.rules.errors import ConfigError

DEFAULT_MODEL_NAME = "toxicity_default"
DEFAULT_MODEL_FILE = "toxicity_default.ftz"
DEFAULT_LABEL = "__label__toxic"
# How texts are prepared for a model: "lazaret" is the train-time normalisation of lazaret's own models;
# "minimal" only folds whitespace (one line), for third-party models trained on raw text (e.g. dolma's).
NORMALIZERS = ("lazaret", "minimal")


class ModelError(ConfigError):
    """A toxicity model cannot be used; the message names the file and what is wrong with it.

    A ConfigError, so the CLI exits 2 (bad configuration) when a policy names an unusable model.
    """




def default_model_path() -> str:
    """Filesystem path of the model shipped inside the package (``lazaret/models/toxicity_default.ftz``)."""
    from importlib import resources

    ref = resources.files("lazaret") / "models" / DEFAULT_MODEL_FILE
    # The package is installed as plain files (setuptools package-data), so the traversable is a real path.
    return os.fspath(ref)


def resolve_model_path(path: str) -> str:
    """Map the policy value ``"default"`` to the shipped model; anything else is a path used as given."""
    return default_model_path() if path in ("default", "", None) else os.path.expanduser(path)


def metadata_path(model_path: str) -> str:
    """The metadata sidecar: ``model.ftz`` -> ``model.json`` (training data, params, threshold, metrics)."""
    root, _ = os.path.splitext(model_path)
    return root + ".json"


def _minimal(text: str, max_chars: int) -> str:
    text = " ".join(text.split())
    return text[:max_chars] if max_chars else text


@dataclass
class ToxicityModel:
    """A loaded fastText classifier plus the label whose probability is the toxicity score.

    Construct with :meth:`load`; the object holds a native fastText handle and is therefore not picklable:
    Beam DoFns keep only the configuration and call :meth:`load` in ``setup()``.
    """

    path: str
    label: str
    sha256: str
    labels: list
    metadata: dict
    normalizer: str = "lazaret"
    max_chars: int = DEFAULT_MAX_CHARS
    calibration: Optional[Calibration] = None
    calibration_file: Optional[str] = None
    calibration_sha256: Optional[str] = None
    _model: Any = field(default=None, repr=False)

    @classmethod
    def load(
        cls,
        path: str,
        label: str = DEFAULT_LABEL,
        expected_sha256: Optional[str] = None,
        normalizer: Optional[str] = None,
        max_chars: int = DEFAULT_MAX_CHARS,
        calibration: Optional[str] = "auto",
        calibration_sha256: Optional[str] = None,
    ) -> "ToxicityModel":
        """Load and verify a model; raise :class:`ModelError` naming ``path`` on any problem.

        Checks, in order: the file exists; its sha256 equals ``expected_sha256`` when one is given (so a
        policy pins the exact model it was validated with); fastText can parse it; ``label`` is one of the
        model's labels. ``normalizer`` defaults to the sidecar's ``normalize_version`` family: "lazaret" for
        lazaret-trained models, "minimal" for models without a lazaret sidecar.

        ``calibration``: "auto" applies the calibration file the sidecar names (sha256-checked against the
        sidecar, or against ``calibration_sha256`` when the policy pins one), or else ``<model>.calibration.json``
        when it exists; "none" returns raw model scores; any other value is the path of a calibration file.
        Every calibration file must name this model's sha256 (see :mod:`lazaret.checks.toxicity.calibration`).
        """
        path = resolve_model_path(path)
        if not os.path.isfile(path):
            raise ModelError(f"toxicity model file {path!r} does not exist or is not a file")
        try:
            digest = sha256_file(path)
        except OSError as exc:
            raise ModelError(f"toxicity model file {path!r} cannot be read: {exc}") from exc
        if expected_sha256 and digest.lower() != expected_sha256.strip().lower():
            raise ModelError(
                f"toxicity model file {path!r} has sha256 {digest}, expected {expected_sha256.strip().lower()}: "
                "the file was changed or is not the model the policy was written for"
            )
        metadata = _read_metadata(path)
        recorded = metadata.get("model_sha256")
        if not expected_sha256 and recorded and recorded != digest:
            raise ModelError(
                f"toxicity model file {path!r} has sha256 {digest}, but its metadata {metadata_path(path)!r} "
                f"records {recorded}: the model was replaced without its metadata"
            )
        trained_with = str(metadata.get("normalize_version", ""))
        if trained_with.startswith("lazaret") and trained_with != NORMALIZE_VERSION:
            raise ModelError(
                f"toxicity model file {path!r} was trained with text normalisation {trained_with!r}, this lazaret "
                f"applies {NORMALIZE_VERSION!r}: retrain it with `lazaret train-toxicity`"
            )
        if normalizer in (None, "auto"):
            normalizer = "lazaret" if str(metadata.get("normalize_version", "")).startswith("lazaret") else "minimal"
        if normalizer not in NORMALIZERS:
            raise ModelError(f"toxicity model {path!r}: unknown normalizer {normalizer!r} (use one of {NORMALIZERS})")
        cal_file, cal_expected = _calibration_file(path, metadata, calibration, calibration_sha256)
        cal = load_calibration(cal_file, digest, cal_expected) if cal_file else None
        model = _load_fasttext(path)
        labels = list(model.get_labels())
        if label not in labels:
            raise ModelError(
                f"toxicity model file {path!r} has no label {label!r}; its labels are {sorted(labels)}. "
                "Set the model's `label` in the policy to one of them."
            )
        return cls(
            path=path,
            label=label,
            sha256=digest,
            labels=sorted(labels),
            metadata=metadata,
            normalizer=normalizer,
            max_chars=max_chars,
            calibration=cal,
            calibration_file=cal_file,
            calibration_sha256=sha256_file(cal_file) if cal_file else None,
            _model=model,
        )

    def prepare(self, text: str) -> str:
        """The exact string the model sees for ``text``."""
        return self.prepare_many([text])[0]

    def prepare_many(self, texts: Sequence[str]) -> "list[str]":
        """The exact strings the model sees for ``texts`` (batch normalisation: one regex pass per batch)."""
        if self.normalizer == "lazaret":
            return normalize_many([t or "" for t in texts], self.max_chars)
        return [_minimal(t, self.max_chars) if t else "" for t in texts]

    def predict_batch(self, texts: Sequence[str]) -> "list[float]":
        """Calibrated probability of ``self.label`` for each text, in order; empty texts score 0.0.

        Without a calibration file this is the model's raw score (:meth:`raw_batch`).
        """
        raw = self.raw_batch(texts)
        if self.calibration is None or not raw:
            return raw
        import numpy as np

        out = self.calibration.apply(raw)
        out[np.asarray(raw) <= 0.0] = 0.0  # empty sides stay 0.0 whatever the calibration's floor
        return out.tolist()

    def raw_batch(self, texts: Sequence[str]) -> "list[float]":
        """The model's own (uncalibrated) probability of ``self.label`` for each text; empty texts score 0.0.

        One native call per batch (fastText's multi-line predict). A model with more than two labels (e.g.
        toxic / nsfw / clean) is asked for every label (``k=-1``), so the configured label's probability is
        returned rather than only the arg-max's.
        """
        prepared = self.prepare_many(texts)
        index = [i for i, t in enumerate(prepared) if t]
        scores = [0.0] * len(prepared)
        if not index:
            return scores
        batch = [prepared[i] for i in index]
        try:
            values = self._scores(batch)
        except (UnicodeError, TypeError):  # lone surrogates (JSON escapes) are not UTF-8: replace them
            values = self._scores([t.encode("utf-8", "replace").decode("utf-8") for t in batch])
        for i, value in zip(index, values):
            scores[i] = value
        return scores

    def _scores(self, batch: "list[str]") -> "list[float]":
        """Probabilities of ``self.label`` for prepared one-line texts.

        For a two-label model the top label and its probability (k=1) determine the other one, and the whole
        batch is turned into scores with numpy; other models ask for every label (k=-1).
        """
        import numpy as np

        native = getattr(self._model, "f", None)
        if len(self.labels) == 2 and native is not None:
            # fastText's own wrapper only adds the newline after checking there is none; prepare_many already
            # guarantees one line per text.
            all_labels, all_probs = native.multilinePredict([t + "\n" for t in batch], 1, 0.0, "strict")
            top = np.concatenate(all_probs).astype(np.float64) if all_probs else np.zeros(0)
            label = self.label
            positive = np.fromiter((labs[0] == label for labs in all_labels), dtype=bool, count=len(all_labels))
            return np.clip(np.where(positive, top, 1.0 - top), 0.0, 1.0).tolist()
        all_labels, all_probs = self._model.predict(batch, k=-1, threshold=0.0)
        out = []
        for labs, probs in zip(all_labels, all_probs):
            try:
                p = float(probs[labs.index(self.label)])
            except ValueError:  # label pruned from this prediction: probability ~0
                p = 0.0
            out.append(1.0 if p > 1.0 else (0.0 if p < 0.0 else p))
        return out

    def predict(self, text: str) -> float:
        """Score one text (convenience for tests and the CLI; use predict_batch in pipelines)."""
        return self.predict_batch([text])[0]

    def provenance(self, name: str = "", origin: str = "") -> dict:
        """What the provenance manifest records about this model."""
        return {
            "name": name,
            "path": self.path,
            "sha256": self.sha256,
            "size_bytes": os.path.getsize(self.path),
            "label": self.label,
            "labels": list(self.labels),
            "normalizer": self.normalizer,
            "normalize_version": NORMALIZE_VERSION if self.normalizer == "lazaret" else "whitespace",
            "origin": origin or self.metadata.get("origin", ""),
            "trained_threshold": self.metadata.get("threshold"),
            "calibration": None if self.calibration is None else {
                "method": self.calibration.method,
                "file": self.calibration_file,
                "sha256": self.calibration_sha256,
            },
            "training_data": [
                {k: f.get(k) for k in ("path", "sha256", "role")} for f in self.metadata.get("training_files", [])
            ],
            "metadata_file": metadata_path(self.path) if self.metadata else None,
        }


def _calibration_file(path: str, metadata: dict, mode: Optional[str], pinned: Optional[str]
                      ) -> "tuple[Optional[str], Optional[str]]":
    """(calibration file to load or None, sha256 it must have or None) for ``mode`` (see ToxicityModel.load)."""
    mode = mode or "auto"
    if mode == "none":
        return None, None
    if mode != "auto":
        return os.path.expanduser(mode), pinned
    entry = metadata.get("calibration")
    if isinstance(entry, dict) and entry.get("file"):
        # The sidecar names the file relative to the model's folder (it travels with the model).
        name = os.path.basename(str(entry["file"]))
        return os.path.join(os.path.dirname(path), name), pinned or entry.get("sha256")
    if entry is not None and not isinstance(entry, dict):
        raise ModelError(f"toxicity model metadata {metadata_path(path)!r}: `calibration` must be an object")
    candidate = calibration_path(path)
    return (candidate, pinned) if os.path.isfile(candidate) else (None, None)


def _read_metadata(path: str) -> dict:
    """The sidecar JSON if present (third-party models have none); a broken sidecar is an error."""
    meta = metadata_path(path)
    if not os.path.isfile(meta):
        return {}
    try:
        with open(meta, "r", encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ModelError(f"toxicity model metadata {meta!r} (for {path!r}) is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"toxicity model metadata {meta!r} (for {path!r}) must be a JSON object")
    return data


def _load_fasttext(path: str) -> Any:
    """``fasttext.load_model`` with its failures turned into a ModelError naming the file."""
    try:
        import fasttext
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise ModelError(
            "the fastText package is missing: install `fasttext-numpy2-wheel` (the other fastText wheels "
            "fail at predict() with numpy 2)"
        ) from exc
    # fastText's C++ loader trusts the file: a truncated model makes it loop forever in the dictionary (it
    # never meets the NUL that ends a word) or load zeros for a cut matrix. Walk the structure first.
    check_fasttext_structure(path)
    try:
        # load_model prints a deprecation notice on stderr for every load; keep worker logs clean.
        with contextlib.redirect_stderr(io.StringIO()):
            model = fasttext.load_model(path)
    except (ValueError, RuntimeError, MemoryError, OSError) as exc:
        raise ModelError(f"toxicity model file {path!r} is not a readable fastText model: {exc}") from exc
    try:
        labels = model.get_labels()
    except Exception as exc:  # noqa: BLE001 - native errors have no common base
        raise ModelError(f"toxicity model file {path!r} is not a supervised fastText model: {exc}") from exc
    if not labels:
        raise ModelError(f"toxicity model file {path!r} has no labels: it is not a supervised classifier")
    return model


_MAGIC = 793712314  # FASTTEXT_FILEFORMAT_MAGIC_INT32
_VERSION = 12  # FASTTEXT_VERSION of fastText 0.9.x
_KSUB = 256  # centroids per sub-quantizer (ProductQuantizer::ksub_)


def check_fasttext_structure(path: str) -> dict:
    """Walk a fastText ``.bin``/``.ftz`` file's layout without loading it; raise ModelError if it is not whole.

    The layout (fastText 0.9 ``FastText::saveModel``): magic, version, Args (12 int32 + 1 double), Dictionary
    (sizes, then each word NUL-terminated with an int64 count and an int8 type, then prune-index pairs), a
    quantised flag and the input matrix (dense: m, n, floats; quantised: codes plus product quantisers), a
    quantised-output flag and the output matrix. The walk must end exactly at the end of the file.
    Returns a small summary (dims, words, labels, quantised) used in tests and provenance.
    """
    import mmap
    import struct

    size = os.path.getsize(path)

    def fail(reason: str) -> ModelError:
        return ModelError(f"toxicity model file {path!r} is corrupt or truncated (not a whole fastText model: "
                          f"{reason})")

    if size < 64 + 28:
        raise fail(f"only {size} bytes")
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        pos = 0

        def take(fmt: str) -> tuple:
            nonlocal pos
            width = struct.calcsize(fmt)
            if pos + width > size:
                raise fail(f"ends at byte {size} inside a header that needs {pos + width}")
            values = struct.unpack_from(fmt, mm, pos)
            pos += width
            return values

        def skip(count: int, what: str) -> None:
            nonlocal pos
            if count < 0 or pos + count > size:
                raise fail(f"{what} needs bytes up to {pos + count}, file has {size}")
            pos += count

        magic, version = take("<ii")
        if magic != _MAGIC:
            raise fail("wrong magic number")
        if version != _VERSION:
            raise fail(f"file format version {version}, this lazaret reads version {_VERSION} (fastText 0.9)")
        args = take("<12id")
        dim = args[0]
        n_entries, n_words, n_labels, _ntokens, prune_size = take("<iiiqq")
        if n_entries < 0 or n_words < 0 or n_labels < 0 or n_entries != n_words + n_labels:
            raise fail("inconsistent dictionary sizes")
        if n_entries > size:
            raise fail("dictionary larger than the file")
        for _ in range(n_entries):
            end = mm.find(b"\0", pos)
            if end < 0:
                raise fail("dictionary word without its terminating NUL")
            pos = end + 1
            skip(9, "dictionary entry")
        skip(8 * max(prune_size, 0), "prune index")

        def matrix(quantised: bool, what: str) -> "tuple[int, int]":
            if not quantised:
                m, n = take("<qq")
                if m < 0 or n < 0:
                    raise fail(f"negative {what} matrix size")
                skip(m * n * 4, f"{what} matrix")
                return m, n
            (qnorm,) = take("<?")
            m, n = take("<qq")
            (codesize,) = take("<i")
            skip(codesize, f"{what} codes")

            def product_quantizer() -> None:
                pq_dim, _nsubq, _dsub, _lastdsub = take("<iiii")
                skip(pq_dim * _KSUB * 4, f"{what} centroids")

            product_quantizer()
            if qnorm:
                skip(m, f"{what} norm codes")
                product_quantizer()
            return m, n

        (quant_input,) = take("<?")
        rows, cols = matrix(quant_input, "input")
        (quant_output,) = take("<?")
        out_rows, _ = matrix(quant_output, "output")
        if pos != size:
            raise fail(f"{size - pos} unexpected bytes after the output matrix")
        if n_labels == 0 or out_rows != n_labels:
            raise fail("no labels: not a supervised classifier")
    return {"dim": dim, "words": n_words, "labels": n_labels, "input_rows": rows, "quantized": bool(quant_input)}
