"""The one cluster schema every check returns (a row of ``clusters/``, schema ``io.schemas.CLUSTERS``)."""

from __future__ import annotations

import hashlib
from typing import Any, Dict, Iterable, Optional


def cluster_row(check: str, cluster_id: Any, members: Iterable[Any], size: Optional[int] = None,
                representative: Optional[str] = None, trigger: Optional[str] = None,
                statistic: str = "") -> Dict[str, Any]:
    """A cluster as a row of ``clusters/``. ``check`` is the check's manifest name; ``members`` the doc_ids
    listed (possibly a sample: ``size`` is the full count). ``evidence`` is left empty: the scan fills it
    with PII-masked snippets of members taken where the records are decided, so a check's own snippets
    never reach a manifest."""
    cluster_id = str(cluster_id)
    members = [str(m) for m in members]
    return {
        "cluster_id": cluster_id,
        "cluster_key": hashlib.sha256(f"{check}:{cluster_id}".encode()).hexdigest(),
        "check": check,
        "size": int(size or len(members)),
        "representative": representative,
        "trigger": trigger,
        "statistic": statistic,
        "members": members,
        "evidence": [],
    }
