"""One registry of checks: what a check is called, what it reads, what it returns.

A check is declared once, as a :class:`Check`, and registered with :func:`register`. The built-in checks
(one module each in this package, listed in ``BUILTIN``) register through the same call an in-house one
uses, so ``--checks``, the policy's ``enabled`` switches, the ``check`` column of the manifests, the
incident policy and the scan graph all read their names from here and nowhere else.

A check's ``expand(records, ctx)`` is the body of a Beam composite (the scan labels it ``Check_<name>``):
it receives the records PCollection and a :class:`CheckContext`, and returns a :class:`CheckResult`:
findings (dicts made by :func:`lazaret.checks.findings.make_finding`, ``check`` = the check's ``finding_name``)
and, optionally, clusters as rows of ``clusters/`` made by :func:`lazaret.checks.clusters.cluster_row`.
The registry lives in the launcher's process only: the scan checks the names of a check's findings where they
leave the check (``lazaret.graph.pipeline.OwnFindings``, the names pickled with it), so a check registered by user
code runs on workers that never imported the module registering it.

This module imports no Beam: the CLI validates ``--checks`` without paying for it.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

#: the built-in checks, in the order they run and are listed (one module each; each calls :func:`register`)
BUILTIN = ("lazaret.checks.pii", "lazaret.checks.toxicity", "lazaret.checks.near_duplicate",
           "lazaret.checks.poisoning")
#: finding ``check`` values that belong to no check: read-time rejects and dead letters, rule-based findings
RESERVED_FINDING_NAMES = ("rule", "malformed")


class CheckResult(NamedTuple):
    """What every check returns: findings, plus cluster rows (schema ``io.schemas.CLUSTERS``) or None."""

    findings: Any
    clusters: Any = None


@dataclasses.dataclass(frozen=True)
class CheckContext:
    """What a check's ``expand`` may read besides the records: plain data (it pickles) and the results of
    the checks it ``needs`` that run in the same scan (absent when the user did not select them)."""

    policy: Dict[str, Any]
    plan: Any
    needed: Dict[str, CheckResult]
    finding_name: str
    rules: Any = None


@dataclasses.dataclass(frozen=True)
class Check:
    """One check's declaration.

    ``name``: the one name of ``--checks``, of ``summary.json`` ``checks`` and of provenance.
    ``finding_name``: the ``check`` column its findings and clusters carry in the manifests (default
    ``name``; the near-duplicate check is ``dedup`` on the command line and ``near_duplicate`` in manifests,
    as users already rely on both). ``policy_section``: the policy section handed to it as ``ctx.policy``
    (its ``enabled`` field, when present, selects it by default). ``policy_schema``: the module (dotted path,
    imported when a policy is loaded) that declares that section's fields (``SPEC`` and optionally ``check``,
    as in ``lazaret.rules.schema``); the built-ins keep it beside the check (``checks/pii/policy.py``).
    ``needs``: checks, registered before it, whose results it reads when they run in the same scan.
    ``load_rules(section, rules_dir)``: reads the check's own rule files on the launcher (errors before any
    data is read) and returns ``(data, [(path, kind)])``: ``data`` reaches ``expand`` as ``ctx.rules``, the
    files are recorded in provenance.json.
    ``models`` and ``provenance``: what it adds to provenance.json (``models(section) -> [entry]``,
    ``provenance(section, inputs) -> dict``; ``inputs``: the scan's input paths, for what a check sets from them).
    """

    name: str
    expand: Callable[[Any, CheckContext], CheckResult]
    finding_name: Optional[str] = None
    policy_section: Optional[str] = None
    policy_schema: Optional[str] = None
    needs: Tuple[str, ...] = ()
    aliases: Tuple[str, ...] = ()
    load_rules: Optional[Callable[[Dict[str, Any], Optional[str]], Tuple[Any, List[Tuple[str, str]]]]] = None
    models: Optional[Callable[[Dict[str, Any]], List[Dict[str, Any]]]] = None
    provenance: Optional[Callable[[Dict[str, Any], Optional[Sequence[str]]], Dict[str, Any]]] = None

    @property
    def manifest_name(self) -> str:
        return self.finding_name or self.name

    def section(self, sections: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
        return dict(sections.get(self.policy_section) or {}) if self.policy_section else {}


_REGISTRY: Dict[str, Check] = {}
_BUILTIN_NAMES: set = set()
_loaded: set = set()
_loading = False


def _load_builtin() -> None:
    """Import the built-in check modules once, when this package is imported, so they come first and in
    ``BUILTIN`` order whoever registers first.

    Why at package import and not on first use: a worker process first meets a built-in check module when
    it unpickles one of its functions (``near_duplicate.row``), and importing that module imports this
    package first. Loaded then, every built-in module is imported whole, in order; loaded from inside the
    module's own ``register`` call, the module would still be half-imported and ``poisoning`` (which needs
    ``dedup``) would be registered before ``dedup``."""
    global _loading
    if _loading or all(m in _loaded for m in BUILTIN):
        return
    _loading = True
    try:
        for module in BUILTIN:
            importlib.import_module(module)
            _loaded.add(module)
    finally:
        _loading = False


def register(check: Check) -> Check:
    """Add ``check`` to the registry (after the built-in ones); returns it. Registering an equal declaration
    again is a no-op (a module imported twice); a different check under a taken name is an error."""
    _load_builtin()
    taken = {alias: c.name for c in _REGISTRY.values() for alias in (c.name, c.manifest_name, *c.aliases)}
    if check.name in _REGISTRY and _REGISTRY[check.name] == check:
        return check
    for alias in (check.name, check.manifest_name, *check.aliases):
        if alias in taken or alias in RESERVED_FINDING_NAMES:
            raise ValueError(f"check name {alias!r} is already taken (by {taken.get(alias, 'lazaret')})")
    for need in check.needs:
        if need not in _REGISTRY:
            raise ValueError(f"check {check.name!r} needs {need!r}, which is not registered before it")
    _REGISTRY[check.name] = check
    if _loading:
        _BUILTIN_NAMES.add(check.name)
    return check


def unregister(name: str) -> None:
    """Remove a check registered by :func:`register` (tests, plug-in reloads); built-in checks stay (deselect
    them with ``--checks`` or the policy instead)."""
    if name in _BUILTIN_NAMES:
        raise ValueError(f"check {name!r} is built in and cannot be unregistered")
    if any(name in c.needs for c in _REGISTRY.values() if c.name != name):
        raise ValueError(f"check {name!r} is needed by another registered check")
    _REGISTRY.pop(name, None)


def checks() -> List[Check]:
    """Every registered check, built-in first, in registration order (the order the scan runs them)."""
    _load_builtin()
    return list(_REGISTRY.values())


def names() -> List[str]:
    return [c.name for c in checks()]


def get(name: str) -> Check:
    """The check called ``name``, or one of its aliases or its manifest name (``near_duplicate`` -> dedup)."""
    for check in checks():
        if name in (check.name, check.manifest_name, *check.aliases):
            return check
    raise KeyError(name)


def manifest_names() -> Tuple[str, ...]:
    """Every value the ``check`` column of a finding may take, in registry order."""
    return tuple(c.manifest_name for c in checks()) + RESERVED_FINDING_NAMES


def default_selection(sections: Dict[str, Dict[str, Any]]) -> List[str]:
    """The checks a scan runs without ``--checks``: every registered one its policy section does not disable."""
    return [c.name for c in checks() if c.section(sections).get("enabled", True)]


# last, when every name above exists: the built-in modules import them from this package
_load_builtin()
