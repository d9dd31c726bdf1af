"""Masking for everything that leaves the pipeline as evidence: manifests, logs, reports.

Why a generic masker on top of the detected spans: detectors miss things. Evidence snippets are for a
reviewer to judge a finding, not to read personal data, so every digit and every e-mail-like token is
masked whatever the detectors said, and control characters are made visible.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence, Tuple

_EMAILISH = re.compile(r"[^\s@<>]{1,64}@[^\s@<>]{1,255}")
_DIGIT = re.compile(r"\d")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")

EVIDENCE_CHARS = 240


def mask_generic(text: str) -> str:
    """Mask e-mail-like tokens and digits; make control characters and lone surrogates visible."""
    text = _EMAILISH.sub("<EMAIL>", text)
    text = _DIGIT.sub("#", text)
    return _CONTROL.sub(lambda m: "\\u%04x" % ord(m.group()), text)


def replace_spans(text: str, spans: Iterable[Tuple[int, int, str]]) -> str:
    """Replace (start, end, label) spans by ``<label>``; overlapping spans merge into the first label."""
    out = []
    pos = 0
    for start, end, label in sorted(spans, key=lambda s: (s[0], -s[1])):
        if end <= pos:
            continue
        start = max(start, pos)
        out.append(text[pos:start])
        out.append(f"<{label}>")
        pos = end
    out.append(text[pos:])
    return "".join(out)


def snippet(text: str, spans: Sequence[Tuple[int, int, str]] = (), limit: int = EVIDENCE_CHARS) -> str:
    """A masked, bounded snippet of ``text``, centred on the first span when there is one."""
    if spans:
        first = min(s[0] for s in spans)
        start = max(0, first - limit // 3)
        window_spans = [(s - start, e - start, lab) for s, e, lab in spans if s >= start]
        window = text[start:start + limit * 2]
        masked = replace_spans(window, [(s, min(e, len(window)), lab) for s, e, lab in window_spans
                                        if s < len(window)])
        prefix = "…" if start > 0 else ""
    else:
        masked = text[: limit * 2]
        prefix = ""
    masked = mask_generic(masked)
    masked = " ".join(masked.split())
    if len(masked) > limit:
        masked = masked[:limit] + "…"
    return prefix + masked


def mask_value(entity: str, value: str) -> str:
    """How one detected value appears in a finding's detail: its type and length, never its content."""
    return f"<{entity} len={len(value)}>"


_LOWER = re.compile(r"[^\W\d_]", re.UNICODE)


def shape(text: str, limit: int = EVIDENCE_CHARS) -> str:
    """The outline of unparseable input: letters become x/X and digits #, structure stays visible.

    Used for reject rows, where no detector has run and anything could be personal data.
    """
    text = text[: limit * 2]
    out = _LOWER.sub(lambda m: "X" if m.group().isupper() else "x", text)
    out = _DIGIT.sub("#", out)
    out = _CONTROL.sub(lambda m: "\\u%04x" % ord(m.group()), out)
    out = " ".join(out.split())
    return out[:limit] + ("…" if len(out) > limit else "")
