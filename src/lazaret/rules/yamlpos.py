"""Safe YAML loading that remembers where each value came from.

Why: every configuration error must name file, line and field. PyYAML's SafeLoader composes a node tree
with marks; we convert it ourselves so no Python object is ever constructed from tags (no !!python/...),
and keep a map from the dotted field path to its 1-based line.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Tuple

import yaml

from lazaret.rules.errors import ConfigError

MAX_RULE_FILE_BYTES = 5 * 1024 * 1024
# A rule file is configuration, not data: these bound what a hostile one can cost. Aliases (``*name``) are
# allowed, but every value they expand to counts, so nine levels of nine aliases (9**9 values from 400
# bytes) is refused after MAX_VALUES instead of growing memory until killed; nesting deeper than MAX_DEPTH
# (through aliases too: ``&a [*a]`` is a cycle) is refused instead of ending in a RecursionError.
MAX_DEPTH = 64
MAX_VALUES = 200_000


@dataclass
class Located:
    """A loaded YAML document plus the line of every field path (``a.b[2].c``)."""

    path: str
    data: Any
    lines: Dict[str, int] = field(default_factory=dict)

    def line(self, dotted: str) -> int | None:
        """Line of ``dotted``, or of its nearest ancestor that has one."""
        key = dotted
        while key:
            if key in self.lines:
                return self.lines[key]
            if key.endswith("]"):
                key = key[: key.rfind("[")]
            elif "." in key:
                key = key[: key.rfind(".")]
            else:
                break
        return self.lines.get(key)

    def error(self, dotted: str, message: str) -> ConfigError:
        return ConfigError(message, path=self.path, line=self.line(dotted), field=dotted or None)


def _short(prefix: str) -> str | None:
    return (prefix[:80] + "...") if len(prefix) > 80 else (prefix or None)


def _convert(node: yaml.Node, prefix: str, lines: Dict[str, int], src: str, budget: list, depth: int = 0) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise ConfigError(f"the file expands to more than {MAX_VALUES} values (YAML aliases that repeat "
                          "large values, an 'alias bomb'?); rule files must be smaller",
                          path=src, line=node.start_mark.line + 1, field=_short(prefix))
    if depth > MAX_DEPTH:
        raise ConfigError(f"values nested more than {MAX_DEPTH} levels deep (or an alias that contains "
                          "itself)", path=src, line=node.start_mark.line + 1, field=_short(prefix))
    lines.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.ScalarNode):
        tag = node.tag
        if tag.startswith("tag:yaml.org,2002:"):
            kind = tag.rsplit(":", 1)[1]
            if kind in ("str", "int", "float", "bool", "null", "timestamp", "binary"):
                value = yaml.SafeLoader.construct_scalar(_SCALAR_LOADER, node)
                if kind == "int":
                    return _SCALAR_LOADER.construct_yaml_int(node)
                if kind == "float":
                    number = _SCALAR_LOADER.construct_yaml_float(node)
                    if not math.isfinite(number):
                        # .nan passes every min/max comparison: a NaN threshold silently turned PII off
                        raise ConfigError(f"{node.value!r} is not a finite number; rule files take finite "
                                          "numbers only", path=src, line=node.start_mark.line + 1,
                                          field=_short(prefix))
                    return number
                if kind == "bool":
                    return _SCALAR_LOADER.construct_yaml_bool(node)
                if kind == "null":
                    return None
                return str(value)
        raise ConfigError(f"unsupported YAML tag {node.tag!r} (only plain data is allowed)",
                          path=src, line=node.start_mark.line + 1, field=prefix or None)
    if isinstance(node, yaml.SequenceNode):
        if node.tag != "tag:yaml.org,2002:seq":
            raise ConfigError(f"unsupported YAML tag {node.tag!r}", path=src,
                              line=node.start_mark.line + 1, field=prefix or None)
        return [_convert(child, f"{prefix}[{i}]", lines, src, budget, depth + 1)
                for i, child in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        if node.tag != "tag:yaml.org,2002:map":
            raise ConfigError(f"unsupported YAML tag {node.tag!r}", path=src,
                              line=node.start_mark.line + 1, field=prefix or None)
        out: Dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError("mapping keys must be plain strings", path=src,
                                  line=key_node.start_mark.line + 1, field=prefix or None)
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise ConfigError("YAML merge keys (<<) are not supported", path=src,
                                  line=key_node.start_mark.line + 1, field=prefix or None)
            key = str(key_node.value)
            child = f"{prefix}.{key}" if prefix else key
            if key in out:
                raise ConfigError("duplicate key", path=src, line=key_node.start_mark.line + 1, field=child)
            lines[child] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, child, lines, src, budget, depth + 1)
        return out
    raise ConfigError("unsupported YAML node", path=src, line=node.start_mark.line + 1)


class _Loader(yaml.SafeLoader):
    pass


_SCALAR_LOADER = _Loader("")


def _check_depth(text: str, src: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH from the parser's event stream (a loop, not a recursion)."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(f"values nested more than {MAX_DEPTH} levels deep", path=src,
                                  line=event.start_mark.line + 1)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def load_yaml(path: str | os.PathLike) -> Located:
    """Load one YAML file safely, with positions. Raises ConfigError naming the file and line."""
    src = os.fspath(path)
    try:
        size = os.path.getsize(src)
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", path=src) from None
    if size > MAX_RULE_FILE_BYTES:
        raise ConfigError(f"file is {size} bytes, over the {MAX_RULE_FILE_BYTES} byte limit for rule files", path=src)
    try:
        with open(src, "rb") as fh:
            raw = fh.read()
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not valid UTF-8 at byte {exc.start}", path=src) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", path=src) from None
    try:
        _check_depth(text, src)  # before composing: PyYAML's composer recurses once per nesting level
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigError(f"invalid YAML: {exc.problem}", path=src, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=src) from None
    lines: Dict[str, int] = {}
    data = None if node is None else _convert(node, "", lines, src, [MAX_VALUES])
    return Located(path=src, data=data, lines=lines)


def located_from_dict(data: Any, path: str = "<defaults>") -> Located:
    return Located(path=path, data=data, lines={})


__all__ = ["Located", "load_yaml", "located_from_dict", "Tuple"]
