"""Making hostile corpus text safe to show: in HTML (escaped) and in a terminal (no escape sequences).

Why a module: every place that shows corpus text goes through these few functions, so the guarantee
"corpus text is rendered as text" is checked in one spot. Lone surrogates become U+FFFD, control
characters become visible ``\\xNN`` and invisible formatting characters (bidi overrides, zero-width
spaces: the usual way to hide a trigger) become visible ``<U+202E>`` marks.
"""

from __future__ import annotations

import html
import re
from typing import Any, Optional

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_INVISIBLE = re.compile(r"[\u061c\u115f\u1160\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f"
                        r"\u3164\ufeff\ufff9-\ufffb\ufffe\uffff]")


def clean_text(value: Any) -> str:
    """Any value -> a str that encodes to UTF-8 and shows every character it contains."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        s = value.decode("utf-8", "replace")
    else:
        s = value if isinstance(value, str) else str(value)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        # Joins valid surrogate pairs, replaces lone surrogates with U+FFFD.
        s = s.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    s = _CONTROL.sub(lambda m: "\\x%02x" % ord(m.group()), s)
    return _INVISIBLE.sub(lambda m: "<U+%04X>" % ord(m.group()), s)


def truncate(s: str, limit: Optional[int]) -> str:
    if limit is None or len(s) <= limit:
        return s
    return s[: max(0, limit - 1)] + "\u2026"


def h(value: Any, limit: Optional[int] = None) -> str:
    """Cleaned, truncated and HTML-escaped (quotes too, so it is safe inside attributes)."""
    return html.escape(truncate(clean_text(value), limit), quote=True)


def highlight(value: Any, needle: Optional[str], limit: Optional[int] = None) -> str:
    """Escaped text with case-insensitive occurrences of ``needle`` wrapped in <mark>.

    The text is split on the needle first and each piece escaped separately, so no corpus byte is ever
    interpreted as markup.
    """
    text = truncate(clean_text(value), limit)
    pattern = clean_text(needle).strip() if needle else ""
    if not pattern:
        return html.escape(text, quote=True)
    out = []
    pos = 0
    for m in re.finditer(re.escape(pattern), text, flags=re.IGNORECASE):
        out.append(html.escape(text[pos:m.start()], quote=True))
        out.append("<mark>" + html.escape(m.group(), quote=True) + "</mark>")
        pos = m.end()
    out.append(html.escape(text[pos:], quote=True))
    return "".join(out)


def term(value: Any, limit: Optional[int] = None, one_line: bool = False) -> str:
    """Safe for a terminal: no ANSI/OSC escape sequences survive (ESC is a control character)."""
    s = truncate(clean_text(value), limit)
    if one_line:
        s = s.replace("\n", "\\n").replace("\t", "\\t").replace("\u2028", "<U+2028>").replace("\u2029", "<U+2029>")
    return s
