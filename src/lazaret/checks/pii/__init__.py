"""The PII check (Presidio; lazaret.checks.pii.transform): findings only."""

from __future__ import annotations

from typing import Any, Dict, List

from lazaret.checks import Check, CheckContext, CheckResult, register


def expand(records: Any, ctx: CheckContext) -> CheckResult:
    from lazaret.checks.pii.transform import PiiCheck

    return CheckResult(records | "Detect" >> PiiCheck(ctx.policy, ctx.plan.custom_recognizers))


def models(section: Dict[str, Any]) -> List[Dict[str, Any]]:
    from lazaret.graph.provenance import spacy_model_info

    return [spacy_model_info()] if section.get("nlp") == "spacy" else []


register(Check(name="pii", policy_section="pii", policy_schema=__name__ + ".policy", expand=expand,
               models=models))
