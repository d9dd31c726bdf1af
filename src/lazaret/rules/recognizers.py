"""Custom PII recognizers from Presidio's own YAML recognizer format, validated with file:line errors.

Why our own loader instead of ``RecognizerRegistry.add_recognizers_from_yaml``: users' rule files are
untrusted input. We need unknown fields and wrong types refused with a position, regexes that run in bounded
time by construction (``lazaret.rules.safe_regex``: RE2 by default; a pattern RE2 cannot compile is refused
unless it says ``engine: backtracking``, and then runs under a time budget whose exhaustion is a finding),
and the parsed specs shipped to workers as plain dicts (workers on Dataflow cannot see the launcher's rule
files).
"""

from __future__ import annotations

import glob
import os
from typing import Any, Dict, List, Optional

import regex

from lazaret.rules.errors import ConfigError
from lazaret.rules.safe_regex import ENGINES, UnsafeRegex, compile_user_regex
from lazaret.rules.schema import F, fraction, validate_section
from lazaret.rules.yamlpos import Located, load_yaml

PATTERN_SPEC = {
    "name": F("str", "pattern"),
    "regex": F("str", required=True),
    "score": fraction(0.5),
    "engine": F("str", "re2", "re2: linear-time matching (default); backtracking: the regex module, for look-around "
                "or back-references, under a per-text time budget", choices=ENGINES),
}
RECOGNIZER_SPEC = {
    "name": F("str", required=True),
    "supported_entity": F("str", required=True),
    "supported_language": F("str", "en"),
    "supported_languages": F("list", None, item=F("str"), nullable=True),
    "patterns": F("list", [], item=PATTERN_SPEC),
    "context": F("list", [], item=F("str")),
    "deny_list": F("list", [], item=F("str")),
    "deny_list_score": fraction(1.0),
    "enabled": F("bool", True),
    "type": F("str", "custom", choices=("custom", "predefined")),
    "description": F("str", ""),
}
FILE_SPEC = {"recognizers": F("list", [], item=RECOGNIZER_SPEC), "version": F("any", 1)}

# Inputs that make backtracking regexes blow up; a safe regex finishes each in microseconds.
_PUMPS = ("a" * 4000 + "!", "1" * 4000 + "x", " " * 4000 + "!", "a1" * 2000 + "!", "@." * 2000, "-" * 4000 + "a")
PUMP_TIMEOUT_SECONDS = 0.25


def backtracking_problem(pattern: str) -> Optional[str]:
    """Return a description if ``pattern`` takes too long on adversarial input, else None."""
    try:
        compiled = regex.compile(pattern, flags=regex.DOTALL | regex.MULTILINE | regex.IGNORECASE)
    except regex.error as exc:
        return f"invalid regex: {exc}"
    for pump in _PUMPS:
        try:
            for _ in compiled.finditer(pump, timeout=PUMP_TIMEOUT_SECONDS):
                pass
        except TimeoutError:
            return (f"catastrophic backtracking: matching a {len(pump)}-character input took over "
                    f"{PUMP_TIMEOUT_SECONDS}s; rewrite it without nested or overlapping quantifiers")
    return None


def _validate_file(loc: Located) -> List[Dict[str, Any]]:
    data = loc.data if loc.data is not None else {}
    if not isinstance(data, dict) or "recognizers" not in data:
        raise loc.error("", "a recognizer file is a mapping with a 'recognizers' list (Presidio YAML format)")
    values = validate_section(FILE_SPEC, data, loc, "")
    out = []
    for i, rec in enumerate(values["recognizers"]):
        where = f"recognizers[{i}]"
        if not rec["patterns"] and not rec["deny_list"]:
            raise loc.error(where, "a recognizer needs patterns or a deny_list")
        for j, pat in enumerate(rec["patterns"]):
            try:
                compile_user_regex(pat["regex"], pat["engine"], name=f"{rec['name']}.{pat['name']}")
            except UnsafeRegex as exc:
                raise loc.error(f"{where}.patterns[{j}].regex", str(exc)) from None
            # an opted-in backtracking pattern still has to survive the pump strings
            problem = backtracking_problem(pat["regex"]) if pat["engine"] == "backtracking" else None
            if problem:
                raise loc.error(f"{where}.patterns[{j}].regex", problem)
        rec = dict(rec)
        rec["source"] = f"{loc.path}:{loc.line(where) or 1}"
        out.append(rec)
    return out


def load_recognizer_files(rules_dir: Optional[str], patterns: List[str]) -> tuple[List[Dict[str, Any]], List[str]]:
    """All enabled custom recognizers (plain dicts) and the files they came from, sorted for determinism."""
    if not rules_dir:
        return [], []
    files: List[str] = []
    for pat in patterns:
        files.extend(glob.glob(os.path.join(rules_dir, pat)))
    recognizers: List[Dict[str, Any]] = []
    used: List[str] = []
    for path in sorted(set(files)):
        loc = load_yaml(path)
        if not isinstance(loc.data, dict) or "recognizers" not in loc.data:
            continue  # not a recognizer file (policy, triggers): other loaders own it
        used.append(path)
        recognizers.extend(r for r in _validate_file(loc) if r["enabled"])
    names: Dict[str, str] = {}
    for rec in recognizers:
        if rec["name"] in names:
            raise ConfigError(f"recognizer name {rec['name']!r} is defined twice (also at {names[rec['name']]})",
                              path=rec["source"].rsplit(":", 1)[0], line=int(rec["source"].rsplit(":", 1)[1]),
                              field="name")
        names[rec["name"]] = rec["source"]
    return recognizers, used


def validate_recognizer_file(path: str) -> List[Dict[str, Any]]:
    return _validate_file(load_yaml(path))
