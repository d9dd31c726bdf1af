"""Schema of the policy's ``owner`` section: the person or team accountable for releasing the data.

Why a section of its own: the release gate refuses a policy without a named owner, so "who signed off"
is decided before the scan, not discovered afterwards.
"""

from __future__ import annotations

from typing import Any, Dict

from lazaret.rules.schema import Ctx, F

SPEC: Dict[str, F] = {
    "name": F("str", None, "accountable person or team; `lazaret gate` fails while it is empty", nullable=True),
    "contact": F("str", None, "how to reach the owner (e-mail, chat handle, ticket queue)", nullable=True),
}


def check(values: Dict[str, Any], ctx: Ctx) -> None:
    for key in ("name", "contact"):
        if values[key] is not None and not values[key].strip():
            raise ctx.error(key, "must not be blank (use null to leave it unset)")
