"""Typed view of the policy's ``dedup`` section, shared by every step (pickles into DoFns).

Defaults mirror ``lazaret.checks.near_duplicate.policy.SPEC`` (the policy schema, which documents why), except
``band_key_bytes``, which is not a policy setting: ``NearDuplicateClusters`` sets it from the input's size
(``signatures.band_key_bytes_for``), as it sets ``band_shards`` (``shards.shards_for``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Mapping


@dataclass(frozen=True)
class DedupParams:
    ngram: int = 5
    num_perm: int = 128
    bands: int = 21
    rows: int = 6
    threshold: float = 0.8
    seed: int = 1
    max_bucket_size: int = 3
    bucket_anchors: int = 1
    max_cc_rounds: int = 6
    local_forest_edges: int = 100_000
    batch_size: int = 2048
    band_shards: int = 4096
    max_exact_shingles: int = 2000
    summary_members: int = 50
    evidence_members: int = 3
    evidence_chars: int = 200
    band_key_bytes: int = 8

    @classmethod
    def from_section(cls, section: Mapping[str, Any] | None) -> "DedupParams":
        """Build from a validated policy section; unknown keys (e.g. ``enabled``) are ignored here."""
        section = dict(section or {})
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in section.items() if k in names})

    def __post_init__(self) -> None:
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows ({self.bands}x{self.rows}) exceeds num_perm ({self.num_perm})")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        if self.ngram < 1 or self.bands < 1 or self.rows < 1:
            raise ValueError("ngram, bands and rows must be >= 1")
        if self.bucket_anchors < 1 or self.max_bucket_size < 2:
            raise ValueError("bucket_anchors must be >= 1 and max_bucket_size >= 2")
        if not 1 <= self.band_key_bytes <= 8:
            raise ValueError("band_key_bytes must be in 1..8")

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)
