"""Load and validate the policy file: one validated dict per section, plus the file's hash.

The hash is recorded in provenance so ``lazaret gate`` can refuse a policy edited after the scan.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Dict, Optional

from lazaret.graph.hashing import sha256_file  # noqa: F401 - re-exported
from lazaret.rules import sections as _sections_pkg
from lazaret.rules.errors import ConfigError
from lazaret.rules.schema import Ctx, defaults, validate_section
from lazaret.rules.yamlpos import Located, load_yaml, located_from_dict

TOP_LEVEL_META = {"version", "description"}


def section_modules() -> Dict[str, ModuleType]:
    """Every section schema module, by section name, sorted by name: the sections that belong to no check
    (``rules/sections/<name>.py``) and each registered check's own (its ``policy_schema``, e.g.
    ``checks/pii/policy.py``), so a check's schema lives beside the check and the loader still sees them all."""
    from lazaret.checks import checks

    mods: Dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(_sections_pkg.__path__):
        if not info.name.startswith("_"):
            mods[info.name] = importlib.import_module(f"{_sections_pkg.__name__}.{info.name}")
    for check in checks():
        if check.policy_section and check.policy_schema:
            if check.policy_section in mods:
                raise ValueError(f"policy section {check.policy_section!r} of check {check.name!r} is already "
                                 f"declared by {mods[check.policy_section].__name__}")
            mods[check.policy_section] = importlib.import_module(check.policy_schema)
    return dict(sorted(mods.items()))


def _validate_with(mod: ModuleType, value: Dict[str, Any], loc: Located, name: str) -> Dict[str, Any]:
    if hasattr(mod, "SPEC"):
        out = validate_section(mod.SPEC, value, loc, name)
        if hasattr(mod, "check"):
            mod.check(out, Ctx(loc, name))
        return out
    # Alternative protocol: DEFAULTS + validate(section, where)
    merged = dict(getattr(mod, "DEFAULTS", {}))
    for key in value:
        if key not in merged:
            raise loc.error(f"{name}.{key}", f"unknown field (known fields: {', '.join(sorted(merged))})")
    merged.update(value)
    if hasattr(mod, "validate"):
        try:
            result = mod.validate(merged, Ctx(loc, name))
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise loc.error(name, str(exc)) from None
        if result is not None:
            merged = result
    return merged


def _section_defaults(mod: ModuleType) -> Dict[str, Any]:
    if hasattr(mod, "SPEC"):
        return defaults(mod.SPEC)
    return dict(getattr(mod, "DEFAULTS", {}))


@dataclass
class Policy:
    """A validated policy. ``sections[name]`` is a plain dict safe to pickle into DoFns."""

    path: Optional[str]
    sha256: Optional[str]
    sections: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    version: int = 1

    def section(self, name: str) -> Dict[str, Any]:
        return self.sections[name]




def load_policy(path: Optional[str]) -> Policy:
    """Load ``path`` (or only the built-in defaults when None). Raises ConfigError with file:line."""
    mods = section_modules()
    if path is None:
        loc = located_from_dict({})
    else:
        loc = load_yaml(path)
    data = loc.data if loc.data is not None else {}
    if not isinstance(data, dict):
        raise loc.error("", "a policy file must be a mapping of sections")
    sections: Dict[str, Dict[str, Any]] = {}
    for key in data:
        if key in TOP_LEVEL_META:
            continue
        if key not in mods:
            known = ", ".join(sorted(set(mods) | TOP_LEVEL_META))
            raise loc.error(key, f"unknown policy section (known sections: {known})")
    if path is not None and not any(key not in TOP_LEVEL_META for key in data):
        # Refused, not defaulted: the built-in defaults differ from the shipped rules/policy.yaml (no custom
        # recognizers, for one), so an empty or truncated file would silently change what a scan checks.
        raise loc.error("", "the policy file sets no section (it is empty or holds only version/description); "
                            "write the sections you mean, or pass no --policy to use RULES/policy.yaml")
    version = data.get("version", 1)
    if version != 1:
        raise loc.error("version", f"unsupported policy version {version!r}; this lazaret reads version 1")
    for name, mod in mods.items():
        value = data.get(name)
        if value is None:
            sections[name] = _section_defaults(mod)
            if hasattr(mod, "SPEC") and hasattr(mod, "check"):
                mod.check(sections[name], Ctx(loc, name))
            continue
        if not isinstance(value, dict):
            raise loc.error(name, "a policy section must be a mapping")
        sections[name] = _validate_with(mod, value, loc, name)
    return Policy(path=path, sha256=sha256_file(path) if path else None, sections=sections, version=version)
