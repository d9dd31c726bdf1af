"""Poisoning scan: small groups of records that share a trigger or a planted payload.

Entry point: :class:`lazaret.detectors.poisoning.transform.PoisoningScan`. See docs/poisoning.md.
"""

from lazaret.detectors.poisoning.transform import PoisoningScan

__all__ = ["PoisoningScan"]
