"""A small declarative schema for policy sections.

Why not pydantic/jsonschema: errors must name the file, the line and the dotted field, and unknown fields
must be refused (a typo in a threshold silently falling back to a default is how bad releases happen).
Each section module (``lazaret.rules.sections.*``, or a check's ``policy_schema`` such as
``lazaret.checks.pii.policy``) declares ``SPEC: dict[str, F]`` and may define
``check(values: dict, ctx: Ctx) -> None`` for cross-field rules.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from lazaret.rules.errors import ConfigError
from lazaret.rules.yamlpos import Located


@dataclass(frozen=True)
class F:
    """One field. kind: str | int | float | bool | list | map | section | any."""

    kind: str
    default: Any = None
    help: str = ""
    choices: Tuple[Any, ...] = ()
    min: Optional[float] = None
    max: Optional[float] = None
    item: Any = None          # for list: an F or a spec dict (list of sections); for map: the value F/spec
    nullable: bool = False
    required: bool = False


@dataclass
class Ctx:
    """Where a section came from, to build file:line errors from inside a check()."""

    located: Located
    prefix: str

    def error(self, dotted: str, message: str) -> ConfigError:
        full = f"{self.prefix}.{dotted}" if dotted else self.prefix
        return self.located.error(full, message)


def fraction(default: Any = None, help: str = "", **extra: Any) -> F:
    """A number from 0 to 1 (a share, a rate, a probability): most of the policy's thresholds are one."""
    return F("float", default, help, min=0.0, max=1.0, **extra)



FIELD_KINDS = ("int", "float", "bool", "str", "fraction")


def spec_from_yaml(text: str, source: str) -> Dict[str, F]:
    """A section's fields declared in a YAML table (name: kind, default, min, max, choices, help), for a section
    whose fields are many bounds a reviewer reads side by side rather than code (the poisoning scan's).

    ``kind: fraction`` is a float from 0 to 1, as :func:`fraction`. A malformed table is the package's own bug,
    so it fails at import, naming ``source`` and the field."""
    import yaml

    table = yaml.safe_load(text)
    spec: Dict[str, F] = {}
    for name, row in table.items():
        unknown = set(row) - {"kind", "default", "min", "max", "choices", "help"}
        if row.get("kind") not in FIELD_KINDS or unknown or not row.get("help"):
            raise ValueError(f"{source}: field {name!r}: needs kind (one of {', '.join(FIELD_KINDS)}) and help, "
                             f"and nothing but min, max, choices and default besides; unknown: {sorted(unknown)}")
        extra: Dict[str, Any] = {"choices": tuple(row["choices"])} if row.get("choices") else {}
        if row["kind"] == "fraction":
            spec[name] = fraction(row.get("default"), row["help"], **extra)
        else:
            spec[name] = F(row["kind"], row.get("default"), row["help"], min=row.get("min"), max=row.get("max"),
                           **extra)
    return spec

def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping"}.get(
        type(value), type(value).__name__)


def defaults(spec: Dict[str, F]) -> Dict[str, Any]:
    """The section's values when the policy file does not mention it."""
    out: Dict[str, Any] = {}
    for name, f in spec.items():
        if f.kind == "section":
            out[name] = defaults(f.item)
        else:
            out[name] = copy.deepcopy(f.default)
    return out


def validate_value(f: F, value: Any, loc: Located, dotted: str) -> Any:
    if value is None:
        if f.nullable:
            return None
        raise loc.error(dotted, f"must not be null (expected {f.kind})")
    kind = f.kind
    if kind == "any":
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise loc.error(dotted, f"expected a string, got {_type_name(value)}")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise loc.error(dotted, f"expected true or false, got {_type_name(value)}")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise loc.error(dotted, f"expected an integer, got {_type_name(value)}")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise loc.error(dotted, f"expected a number, got {_type_name(value)}")
        value = float(value)
        if not math.isfinite(value):  # NaN passes every min/max comparison below
            raise loc.error(dotted, f"must be a finite number; got {value!r}")
    elif kind == "list":
        if not isinstance(value, list):
            raise loc.error(dotted, f"expected a list, got {_type_name(value)}")
        out = []
        for i, item in enumerate(value):
            sub = f"{dotted}[{i}]"
            if isinstance(f.item, dict):
                if not isinstance(item, dict):
                    raise loc.error(sub, f"expected a mapping, got {_type_name(item)}")
                out.append(validate_section(f.item, item, loc, sub))
            elif isinstance(f.item, F):
                out.append(validate_value(f.item, item, loc, sub))
            else:
                out.append(item)
        return out
    elif kind == "map":
        if not isinstance(value, dict):
            raise loc.error(dotted, f"expected a mapping, got {_type_name(value)}")
        out_map = {}
        for key, item in value.items():
            sub = f"{dotted}.{key}"
            if isinstance(f.item, dict):
                if not isinstance(item, dict):
                    raise loc.error(sub, f"expected a mapping, got {_type_name(item)}")
                out_map[key] = validate_section(f.item, item, loc, sub)
            elif isinstance(f.item, F):
                out_map[key] = validate_value(f.item, item, loc, sub)
            else:
                out_map[key] = item
        return out_map
    elif kind == "section":
        if not isinstance(value, dict):
            raise loc.error(dotted, f"expected a mapping, got {_type_name(value)}")
        return validate_section(f.item, value, loc, dotted)
    else:  # pragma: no cover - a programming error in a spec
        raise ValueError(f"unknown field kind {kind}")
    if f.choices and value not in f.choices:
        raise loc.error(dotted, f"must be one of {', '.join(map(str, f.choices))}; got {value!r}")
    if f.min is not None and value < f.min:
        raise loc.error(dotted, f"must be >= {f.min}; got {value!r}")
    if f.max is not None and value > f.max:
        raise loc.error(dotted, f"must be <= {f.max}; got {value!r}")
    return value


def validate_section(spec: Dict[str, F], value: Dict[str, Any], loc: Located, prefix: str) -> Dict[str, Any]:
    """Validate ``value`` against ``spec``: unknown fields refused, defaults filled in."""
    out = defaults(spec)
    for key, item in value.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in spec:
            known = ", ".join(sorted(spec))
            raise loc.error(dotted, f"unknown field (known fields: {known})")
        out[key] = validate_value(spec[key], item, loc, dotted)
    for key, f in spec.items():
        if f.required and key not in value:
            raise loc.error(f"{prefix}.{key}" if prefix else key, "required field is missing")
    return out


CheckFn = Callable[[Dict[str, Any], Ctx], None]
