"""Text normalisation and exact-duplicate keys for near-duplicate detection (shingles: signatures.py).

Why this normalisation: templated fine-tuning data differs in case, spacing, quotes and punctuation far more
often than in words; folding those away (NFKC, lower case, punctuation and symbols removed, whitespace
collapsed) makes such copies exact duplicates, which cost a hash instead of a MinHash.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Tuple

NORMALISATION_VERSION = "nfkc-lower-nopunct-ws/1"

# Anything that is neither a word character nor whitespace: punctuation and symbols (Unicode-aware).
_NON_WORD = re.compile(r"[^\w\s]|_", re.UNICODE)
# The same deletion for pure-ASCII text (NFKC and casefold are then identity and lower()): a translate table
# is ~2x faster than the regex, and most fine-tuning text is ASCII.
_ASCII_DELETE = str.maketrans("", "", "".join(c for c in map(chr, range(128)) if not (c.isalnum() or c.isspace())))


def normalise(text: str) -> str:
    """NFKC, lower case (casefold), strip punctuation/symbols, collapse whitespace to single spaces."""
    text = text or ""
    if text.isascii():
        return " ".join(text.lower().translate(_ASCII_DELETE).split())
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _NON_WORD.sub("", text)
    return " ".join(text.split())


def exact_key(text: str, norm: str) -> str:
    """Hex key of the exact-duplicate group.

    Records whose normalised text is empty (only punctuation, emoji, whitespace) are keyed by their raw text
    instead, so that they group only with byte-identical copies and are never lumped together.
    """
    if norm:
        data = b"n:" + norm.encode("utf-8")
    else:
        data = b"r:" + (text or "").encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def token_count(norm: str) -> int:
    """Words of a normalised text (single spaces, none leading or trailing): counted, not split."""
    return norm.count(" ") + 1 if norm else 0


def prepare(text: str) -> Tuple[str, str, int]:
    """(normalised text, exact key, token count) for one record text."""
    norm = normalise(text)
    return norm, exact_key(text, norm), token_count(norm)
