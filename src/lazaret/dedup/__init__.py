"""Near-duplicate clustering (exact hash + MinHash LSH + connected components) as Beam transforms."""

from lazaret.dedup.params import DedupParams
from lazaret.dedup.signatures import provenance_info
from lazaret.dedup.transform import NearDuplicateClusters, NearDuplicates

__all__ = ["DedupParams", "NearDuplicateClusters", "NearDuplicates", "provenance_info"]
