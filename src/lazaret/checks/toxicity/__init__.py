"""The toxicity check (fastText; lazaret.checks.toxicity.transform): findings only."""

from __future__ import annotations

from typing import Any, Dict, List

from lazaret.checks import Check, CheckContext, CheckResult, register


def expand(records: Any, ctx: CheckContext) -> CheckResult:
    from lazaret.checks.toxicity.transform import ToxicityCheck

    # built here, on the launcher: a missing or corrupt model stops the scan before any data is read
    return CheckResult(records | "Detect" >> ToxicityCheck(ctx.policy))


def models(section: Dict[str, Any]) -> List[Dict[str, Any]]:
    from lazaret.checks.toxicity.transform import models_provenance

    return models_provenance(section)


register(Check(name="toxicity", policy_section="toxicity", policy_schema=__name__ + ".policy", expand=expand,
               models=models))
