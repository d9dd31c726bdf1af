"""Schema of the policy's ``poisoning`` section: the bounds of the poisoning scan, declared in ``policy.yaml``
next to this module (one row per field: kind, default, bounds and why).

Every bound there is a statement about what natural structure looks like, so a reviewer can read which
groups of records the scan will refuse to call poisoning (see docs/poisoning.md). A data table rather than code
for the same reason as ``signals.yaml``: fifty declarations of one shape read best side by side.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Dict

from lazaret.rules.schema import Ctx, F, spec_from_yaml

SPEC: Dict[str, F] = spec_from_yaml(
    resources.files(__package__).joinpath("policy.yaml").read_text(encoding="utf-8"), "poisoning/policy.yaml")


def check(values: Dict[str, Any], ctx: Ctx) -> None:
    if values["min_support"] < 2:
        raise ctx.error("min_support", "must be at least 2")


def _defaults() -> Dict[str, Any]:
    from lazaret.rules.schema import defaults

    return defaults(SPEC)


DEFAULTS: Dict[str, Any] = _defaults()
