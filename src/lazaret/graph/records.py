"""The record model: formats, prompt/response sides, stable ids, and what counts as malformed.

Why sides matter: toxic prompts in a red-teaming set may be intended, toxic or poisoned *responses* are what
a model learns to say, and backdoor triggers live in prompts. Every text is kept with the path of the field
it came from, so redaction writes back into the input's own schema.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

FORMATS = ("text", "alpaca", "prompt_completion", "messages", "sharegpt")
PROMPT_ROLES = {"system", "user", "human", "tool", "function", "developer", "prompter"}
RESPONSE_ROLES = {"assistant", "gpt", "bot", "model", "chatgpt", "ai", "bing"}
MAX_DEPTH = 64
SEP = "\n\n"
META_SEP = "\n"
META_SIDE = "meta"
META_MIN_INT = 10 ** 6  # integers with 7+ digits can be phone, SSN or card numbers: scanned as text
_OPAQUE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
_DIGIT_RUN = re.compile(r"\d(?:[-. /]?\d){6,}")


class MalformedRecord(Exception):
    """A record that cannot be scanned; ``rule`` is the reject reason written to the manifest."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"{rule}: {detail}")
        self.rule = rule
        self.detail = detail


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_doc_id(source_path: str, source_index: int, content_sha256: str) -> str:
    """Stable id: the same file path, position and bytes give the same id on every run and runner."""
    return sha256_hex(f"{source_path}\x00{source_index}\x00{content_sha256}".encode("utf-8"))[:32]


def json_depth(obj: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth, iteratively (a hostile record must not exhaust the stack)."""
    deepest = 0
    stack: List[Tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


def detect_format(obj: Dict[str, Any]) -> Optional[str]:
    """The format a JSON object looks like, or None."""
    if "messages" in obj:
        return "messages"
    if "conversations" in obj:
        return "sharegpt"
    if "instruction" in obj and "output" in obj:
        return "alpaca"
    if "prompt" in obj and ("completion" in obj or "response" in obj):
        return "prompt_completion"
    if "text" in obj:
        return "text"
    return None


def _require_str(obj: Dict[str, Any], key: str, optional: bool = False) -> str:
    if key not in obj:
        if optional:
            return ""
        raise MalformedRecord("missing_field", f"field '{key}' is missing")
    value = obj[key]
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise MalformedRecord("wrong_type", f"field '{key}' is {type(value).__name__ if value is not None else 'null'}, "
                                            "expected a string")
    return value


def _content_parts(content: Any, where: str) -> List[Tuple[List[Any], str]]:
    """Chat content: a string, or a list of parts of which the text parts count. Returns (sub-path, text)
    per text, so redaction writes each part back where it came from (a list stays a list)."""
    if isinstance(content, str):
        return [([], content)]
    if content is None:
        return []
    if isinstance(content, list):
        return [([j, "text"], part["text"]) for j, part in enumerate(content)
                if isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str)]
    raise MalformedRecord("wrong_type", f"{where} is {type(content).__name__}, expected a string")


def extract_fields(obj: Dict[str, Any], fmt: str) -> List[List[Any]]:
    """[path, side, text] for every text of the record, in reading order."""
    fields: List[List[Any]] = []
    if fmt == "text":
        fields.append([["text"], "all", _require_str(obj, "text")])
    elif fmt == "alpaca":
        fields.append([["instruction"], "prompt", _require_str(obj, "instruction")])
        inp = _require_str(obj, "input", optional=True)
        if inp:
            fields.append([["input"], "prompt", inp])
        fields.append([["output"], "response", _require_str(obj, "output")])
    elif fmt == "prompt_completion":
        fields.append([["prompt"], "prompt", _require_str(obj, "prompt")])
        key = "completion" if "completion" in obj else "response"
        fields.append([[key], "response", _require_str(obj, key)])
    elif fmt in ("messages", "sharegpt"):
        key, role_key, text_key = (("messages", "role", "content") if fmt == "messages"
                                   else ("conversations", "from", "value"))
        turns = obj.get(key)
        if not isinstance(turns, list):
            raise MalformedRecord("wrong_type" if key in obj else "missing_field",
                                  f"field '{key}' must be a list of turns")
        if not turns:
            raise MalformedRecord("empty_text", f"field '{key}' has no turns")
        for i, turn in enumerate(turns):
            if not isinstance(turn, dict):
                raise MalformedRecord("wrong_type", f"{key}[{i}] is {type(turn).__name__}, expected an object")
            role = turn.get(role_key)
            if not isinstance(role, str):
                raise MalformedRecord("missing_field" if role is None else "wrong_type",
                                      f"{key}[{i}].{role_key} must be a string")
            parts = _content_parts(turn.get(text_key), f"{key}[{i}].{text_key}")
            side = "response" if role.lower() in RESPONSE_ROLES else "prompt"
            if role.lower() not in RESPONSE_ROLES | PROMPT_ROLES:
                raise MalformedRecord("unknown_role", f"{key}[{i}].{role_key} has unknown role")
            for sub, text in parts:
                if text:
                    fields.append([[key, i, text_key, *sub], side, text])
    else:  # pragma: no cover
        raise ValueError(fmt)
    return fields


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedRecord("lone_surrogate", "text contains a lone UTF-16 surrogate (not valid Unicode)") from None


def safe_id(rid: str) -> str:
    """The id as written to manifests (quarantine/, findings/, review output).

    Ids are untrusted text: a user id may be an e-mail address, a phone number or a name. An id is written
    in clear only when it looks opaque: 1-128 characters of ``[A-Za-z0-9._:/-]`` with no run of 7 or more
    digits (digits grouped by ``-``, ``.``, `` `` or ``/`` count as one run). Anything else is written as
    ``sha256:`` + the first 16 hex digits of the sha256 of its UTF-8 bytes, which a user can compute from
    their own copy to find the record (doc_id, source_path and source_index find it too).
    """
    if _OPAQUE_ID.fullmatch(rid) and not _DIGIT_RUN.search(rid):
        return rid
    return "sha256:" + sha256_hex(rid.encode("utf-8"))[:16]


def record_id_of(obj: Any, id_field: str) -> Optional[str]:
    """The record's own id (a string or integer field) as :func:`safe_id` writes it, or None when absent or
    not valid Unicode."""
    rid = obj.get(id_field) if isinstance(obj, dict) else None
    if not isinstance(rid, (str, int)) or isinstance(rid, bool):
        return None
    rid = str(rid)
    try:
        rid.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return safe_id(rid)


def other_strings(obj: Any, fields: Sequence[Sequence[Any]]) -> List[List[Any]]:
    """[path, kind, text] for everything in ``obj`` outside the format's text fields that can carry personal
    data: string values (kind ``value``), object keys (kind ``key``: ``path`` ends with the key itself) and
    integers of 7 or more digits (kind ``value``, as decimal text). In reading order.

    Why: ids, metadata objects, a chat turn's ``name`` or a non-text content part are copied into clean/,
    held/ and released data; the PII check scans them too (as side ``meta``) and redaction writes back
    into them, so no field escapes the policy.
    """
    text_paths = {tuple(f[0]) for f in fields}
    out: List[List[Any]] = []
    stack: List[Tuple[List[Any], Any]] = [([], obj)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            children = []
            for key, value in node.items():
                if isinstance(key, str) and key.strip():
                    out.append([path + [key], "key", key])
                children.append((path + [key], value))
            stack.extend(reversed(children))
        elif isinstance(node, list):
            stack.extend(reversed([(path + [i], v) for i, v in enumerate(node)]))
        elif isinstance(node, str):
            if node.strip() and tuple(path) not in text_paths:
                out.append([path, "value", node])
        elif isinstance(node, int) and not isinstance(node, bool) and abs(node) >= META_MIN_INT:
            out.append([path, "value", str(node)])
    return out


def joined_meta(pieces: Sequence[Sequence[Any]]) -> Tuple[str, List[int]]:
    """The ``meta`` pieces as one text for the PII check (one analyzer call per record, not one per piece),
    and the start offset of each piece in it."""
    starts, pos = [], 0
    for piece in pieces:
        starts.append(pos)
        pos += len(piece[2]) + len(META_SEP)
    return META_SEP.join(p[2] for p in pieces), starts


def meta_spans(pieces: Sequence[Sequence[Any]], starts: Sequence[int], start: int, end: int) -> List[Tuple[int, int,
                                                                                                        int]]:
    """A span of the joined meta text as (piece index, start, end) within each piece it touches."""
    out = []
    for i, (piece, s0) in enumerate(zip(pieces, starts)):
        s1 = s0 + len(piece[2])
        if start < s1 and end > s0:
            out.append((i, max(start, s0) - s0, min(end, s1) - s0))
    return out


def build_record(obj: Any, fmt: Optional[str], source_path: str, source_index: int, content_sha256: str,
                 id_field: str = "id") -> Dict[str, Any]:
    """Turn one parsed object into a record dict, or raise MalformedRecord."""
    if not isinstance(obj, dict):
        raise MalformedRecord("not_an_object", f"line is a JSON {type(obj).__name__}, expected an object")
    if json_depth(obj) > MAX_DEPTH:
        raise MalformedRecord("too_deeply_nested", f"JSON nesting deeper than {MAX_DEPTH} levels")
    fmt = fmt or detect_format(obj)
    if fmt is None:
        raise MalformedRecord("unknown_format", "no text field of any supported format (text, instruction/output, "
                                                "prompt/completion, messages, conversations)")
    fields = extract_fields(obj, fmt)
    meta = other_strings(obj, fields)
    for f in fields + meta:
        _check_text(f[2])
    if not any(f[2].strip() for f in fields):
        raise MalformedRecord("empty_text", "all text fields are empty")
    prompt = SEP.join(f[2] for f in fields if f[1] == "prompt")
    response = SEP.join(f[2] for f in fields if f[1] in ("response", "all"))
    text = SEP.join(t for t in (prompt, response) if t)
    record_id = record_id_of(obj, id_field)
    return {
        "doc_id": make_doc_id(source_path, source_index, content_sha256),
        "record_id": record_id,
        "source_path": source_path,
        "source_index": source_index,
        "content_sha256": content_sha256,
        "format": fmt,
        "raw": obj,
        "fields": fields,
        "meta": meta,
        "prompt": prompt,
        "response": response,
        "text": text,
    }


def set_path(obj: Any, path: Sequence[Any], value: Any) -> None:
    """Write ``value`` at ``path`` inside ``obj`` (used to put redacted text back)."""
    node = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def rename_key(obj: Any, path: Sequence[Any], new_key: str) -> None:
    """Rename the object key at ``path`` (its last element) to ``new_key`` in place, keeping key order; a
    name already taken gets a ``#2``, ``#3``... suffix so no value is lost."""
    node = get_path(obj, path[:-1])
    old = path[-1]
    if new_key == old:
        return
    candidate, n = new_key, 1
    while candidate in node:
        n += 1
        candidate = f"{new_key}#{n}"
    items = [(candidate if k == old else k, v) for k, v in node.items()]
    node.clear()
    node.update(items)


def get_path(obj: Any, path: Sequence[Any]) -> Any:
    node = obj
    for key in path:
        node = node[key]
    return node
