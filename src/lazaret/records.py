"""The record model: formats, prompt/response sides, stable ids, and what counts as malformed.

Why sides matter: toxic prompts in a red-teaming set may be intended, toxic or poisoned *responses* are what
a model learns to say, and backdoor triggers live in prompts. Every text is kept with the path of the field
it came from, so redaction writes back into the input's own schema.
"""

from __future__ import annotations

import hashlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

FORMATS = ("text", "alpaca", "prompt_completion", "messages", "sharegpt")
PROMPT_ROLES = {"system", "user", "human", "tool", "function", "developer", "prompter"}
RESPONSE_ROLES = {"assistant", "gpt", "bot", "model", "chatgpt", "ai", "bing"}
MAX_DEPTH = 64
SEP = "\n\n"


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


def _content_text(content: Any, where: str) -> str:
    """Chat content: a string, or a list of parts of which the text parts count."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return "\n".join(texts)
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
            text = _content_text(turn.get(text_key), f"{key}[{i}].{text_key}")
            side = "response" if role.lower() in RESPONSE_ROLES else "prompt"
            if role.lower() not in RESPONSE_ROLES | PROMPT_ROLES:
                raise MalformedRecord("unknown_role", f"{key}[{i}].{role_key} has unknown role")
            if text:
                fields.append([[key, i, text_key], side, text])
    else:  # pragma: no cover
        raise ValueError(fmt)
    return fields


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedRecord("lone_surrogate", "text contains a lone UTF-16 surrogate (not valid Unicode)") from None


def record_id_of(obj: Any, id_field: str) -> Optional[str]:
    """The record's own id (a string or integer field), or None when absent or not valid Unicode."""
    rid = obj.get(id_field) if isinstance(obj, dict) else None
    if not isinstance(rid, (str, int)) or isinstance(rid, bool):
        return None
    rid = str(rid)
    try:
        rid.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return rid


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
    for f in fields:
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


def get_path(obj: Any, path: Sequence[Any]) -> Any:
    node = obj
    for key in path:
        node = node[key]
    return node
