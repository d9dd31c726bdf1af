"""One RE2 pass over a window tells which pattern recognizers cannot match it, so Presidio skips them.

Presidio runs every pattern recognizer over every text it is asked about, one ``regex``-module pass per
pattern (about 25 patterns with the shipped rules), although on a corpus most patterns match almost nothing.
Here every pattern of every recognizer that finds its results only through its patterns is rewritten into
an RE2 pattern that matches *at least* wherever the original matches (a superset), and all of them are
compiled into one ``re2.Set``: one linear-time pass over the window says which patterns can match. A
recognizer none of whose patterns can match the window is not run on it; the ones that can match run
exactly as before (Presidio's own regex, validation, scores and context), so results are the same.

Why a superset and not a translation: RE2 has no look-around or back-references, and its ``\\b``, ``\\d``,
``\\w``, ``\\s`` are ASCII-only while the ``regex`` module's are Unicode. The rewrite therefore

* drops zero-width assertions (look-around, ``^``, ``$``, ``\\A``, ``\\Z``) and makes back-references match
  anything: a pattern without an assertion matches wherever it matched with it (a look-behind that opens
  the pattern is matched as text instead: nothing comes before it, so that is a superset too);
* compiles two sets: one for all-ASCII windows, where RE2's ``\\b``/``\\d``/``\\w`` mean exactly what the
  ``regex`` module's mean, and one for other windows, where ``\\b`` is dropped and every class (``\\d``,
  ``\\w``, ``\\p{..}``, a class or a literal with a non-ASCII character) also accepts any non-ASCII
  character, so the engines' different Unicode tables and case folding cannot matter;
* turns anything it does not understand into "always run this recognizer" (the pattern is left out of the
  sets and its recognizer is never skipped).

``tests/test_pii_prefilter.py`` checks the superset property pattern by pattern on real text, and that the
engine's results with and without the prefilter are identical.
"""

from __future__ import annotations

import re
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

_NON_ASCII = r"\x{80}-\x{10FFFF}"
# What a class shorthand becomes: (ascii mode, unicode mode), outside and inside a character class.
# Python's Unicode \s also holds \v and \x1c-\x1f, which RE2's \s lacks: both modes list them.
_SPACE = r"\t-\r\x1c-\x20"
_CLASS_IN = {
    "d": ("0-9", "0-9" + _NON_ASCII),
    "w": ("0-9A-Za-z_", "0-9A-Za-z_" + _NON_ASCII),
    "s": (_SPACE, _SPACE + _NON_ASCII),
}
# Inside a negated class a shorthand must exclude no more than the original does: its ASCII part only.
_CLASS_IN_NEGATED = {"d": "0-9", "w": "0-9A-Za-z_", "s": r"\t-\r "}
_NEGATED_OUT = {"D": "[^0-9]", "W": "[^0-9A-Za-z_]", "S": r"[^\t-\r ]"}
_ANY = "(?s:.*)"


class Unsupported(ValueError):
    """The rewrite does not know this construct: the recognizer is always run."""


def _skip_group(p: str, i: int) -> int:
    """Index just after the group whose '(' is at ``i`` (escapes and classes respected)."""
    depth = 0
    n = len(p)
    while i < n:
        c = p[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            i = _class_end(p, i)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise Unsupported("unbalanced parenthesis")


def _class_end(p: str, i: int) -> int:
    """Index just after the character class starting at ``p[i] == '['``."""
    j = i + 1
    if j < len(p) and p[j] == "^":
        j += 1
    if j < len(p) and p[j] == "]":
        j += 1  # a ']' first in the class is literal
    while j < len(p):
        c = p[j]
        if c == "\\":
            j += 2
            continue
        if c == "[":
            raise Unsupported("nested set")  # regex V1 set operations, POSIX classes
        if c == "]":
            return j + 1
        j += 1
    raise Unsupported("unterminated character class")


def _escape_unicode(p: str, j: int) -> Tuple[str, int]:
    """``\\uXXXX`` / ``\\UXXXXXXXX`` / ``\\x..`` at ``p[j-1:]`` (``p[j]`` is the letter) as RE2's ``\\x{..}``."""
    c = p[j]
    width = {"u": 4, "U": 8}.get(c)
    if width is None:  # \x: RE2 reads \xHH and \x{..} as Python does
        return "\\x", j + 1
    digits = p[j + 1:j + 1 + width]
    if len(digits) != width or not re.fullmatch(r"[0-9A-Fa-f]+", digits):
        raise Unsupported("bad \\u escape")
    return "\\x{%s}" % digits, j + 1 + width


def _rewrite_class(p: str, i: int, unicode: bool) -> Tuple[str, int]:
    end = _class_end(p, i)
    body = p[i + 1:end - 1]
    negated = body.startswith("^")
    if negated:
        body = body[1:]
    out = []
    j = 0
    while j < len(body):
        c = body[j]
        if c != "\\":
            out.append(c)
            j += 1
            continue
        if j + 1 >= len(body):
            raise Unsupported("dangling escape")
        e = body[j + 1]
        if e in _CLASS_IN:
            out.append(_CLASS_IN_NEGATED[e] if negated else _CLASS_IN[e][unicode])
            j += 2
        elif e in "DWSpP":
            if e in "pP" and not negated and j + 2 < len(body) and body[j + 2] == "{":
                close = body.index("}", j)
                out.append(body[j:close + 1] + (_NON_ASCII if unicode else ""))
                j = close + 1
                continue
            raise Unsupported(f"\\{e} inside a character class")
        elif e in "uUx":
            text, k = _escape_unicode(body, j + 1)
            out.append(text)
            j = k
        elif e.isdigit() or e == "N":
            raise Unsupported("octal or named escape in a class")
        else:
            out.append(body[j:j + 2])
            j += 2
    if negated and unicode:
        # a negated class must accept every non-ASCII character: Unicode tables of the two engines differ
        return "(?:[^" + "".join(out) + "]|[" + _NON_ASCII + "])", end
    if unicode and not body.isascii():
        out.insert(0, _NON_ASCII)  # a non-ASCII member: its case variants follow each engine's Unicode version
    return ("[^" if negated else "[") + "".join(out) + "]", end


def relax(pattern: str, unicode: bool) -> str:
    """An RE2 pattern (without flags) that matches wherever ``pattern`` (``regex`` module, flags I|M|S or
    fewer) matches, on all-ASCII text (``unicode=False``) or on any text (``unicode=True``)."""
    p = pattern
    out: List[str] = []
    i = 0
    n = len(p)
    while i < n:
        c = p[i]
        if c == "\\":
            if i + 1 >= n:
                raise Unsupported("dangling escape")
            e = p[i + 1]
            if e in "AZzG":
                i += 2  # an anchor: dropped
            elif e in "bB":
                if not unicode:
                    out.append(p[i:i + 2])  # on ASCII text RE2's \b is the regex module's \b
                i += 2
            elif e in _CLASS_IN:
                out.append("[" + _CLASS_IN[e][unicode] + "]")
                i += 2
            elif e in _NEGATED_OUT:
                out.append(_NEGATED_OUT[e])
                i += 2
            elif e in "pP":
                if i + 2 >= n or p[i + 2] != "{":
                    raise Unsupported("\\p without braces")
                close = p.index("}", i)
                prop = p[i:close + 1]
                out.append(f"(?:{prop}|[{_NON_ASCII}])" if unicode else prop)
                i = close + 1
            elif e in "uUx":
                text, i = _escape_unicode(p, i + 1)
                out.append(text)
            elif e.isdigit():
                if e == "0" or (i + 2 < n and p[i + 2].isdigit()):
                    raise Unsupported("octal escape")
                out.append(_ANY)  # a back-reference: matches some text
                i += 2
            elif e.isalpha() and e not in "tnrfv":
                raise Unsupported(f"escape \\{e}")
            else:
                out.append(p[i:i + 2])
                i += 2
        elif c == "[":
            text, i = _rewrite_class(p, i, unicode)
            out.append(text)
        elif c in "^$":
            i += 1  # anchors: dropped
        elif c == "{" and re.match(r"\{,\d+\}", p[i:]):
            out.append("{0,")  # Python's {,n} is RE2's {0,n}
            i += 2
        elif c == "(" and p.startswith("(?", i):
            rest = p[i + 2:]
            if rest.startswith("<=") and i == 0:
                # a look-behind that opens the pattern: consuming its text is still a superset (nothing was
                # consumed before it), and keeps the filter sharp ("my name is " before a name)
                end = _skip_group(p, i)
                out.append("(?:" + relax(p[i + 4:end - 1], unicode) + ")")
                i = end
            elif rest.startswith(("=", "!", "<=", "<!")):
                i = _skip_group(p, i)  # look-around: dropped
            elif rest.startswith("#"):
                i = p.index(")", i) + 1
            elif rest.startswith(("P=", "P>")):
                i = p.index(")", i) + 1
                out.append(_ANY)
            elif rest.startswith(":"):
                out.append("(?:")
                i += 3
            elif rest.startswith(">"):
                out.append("(?:")  # atomic: the plain group matches wherever it matches
                i += 3
            elif rest.startswith("P<") or (rest.startswith("<") and not rest.startswith(("<=", "<!"))):
                i = p.index(">", i) + 1
                out.append("(")
            else:
                m = re.match(r"([a-zA-Z]*)(?:-([a-zA-Z]*))?([:)])", rest)
                if not m or not set(m.group(1) + (m.group(2) or "")) <= set("ims"):
                    raise Unsupported("inline flags")
                i += 2 + m.end()
                # the set runs case-insensitive with dot-all; turning case sensitivity *off* is kept
                # (same meaning on ASCII text; on other text \p classes are widened anyway)
                keep = "-i" if "i" in (m.group(2) or "") else ""
                if m.group(3) == ":":
                    out.append(f"(?{keep}:" if keep else "(?:")
                elif keep:
                    raise Unsupported("scoped-off flag for the rest of the pattern")
        elif unicode and not c.isascii():
            out.append(f"[{_NON_ASCII}]")  # a non-ASCII literal: its case variants depend on Unicode versions
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def pattern_only(recognizer: Any) -> bool:
    """True when the recognizer finds results only through its ``patterns`` (Presidio's PatternRecognizer
    and IbanRecognizer, Lazaret's safe YAML recognizers): skipping it when no pattern can match is exact."""
    from presidio_analyzer import PatternRecognizer

    if not isinstance(recognizer, PatternRecognizer) or not recognizer.patterns:
        return False
    analyze = type(recognizer).analyze
    if analyze is PatternRecognizer.analyze or getattr(analyze, "_lazaret_pattern_only", False):
        return True
    try:
        from presidio_analyzer.predefined_recognizers import IbanRecognizer
    except ImportError:  # pragma: no cover - older Presidio layouts
        return False
    return analyze is IbanRecognizer.analyze


class PatternPrefilter:
    """Which pattern recognizers can match a window, in one RE2 pass (see the module docstring)."""

    def __init__(self, recognizers: Iterable[Any], max_mem: int = 32 << 20) -> None:
        import re2

        self.gated: Dict[str, str] = {}  # recognizer id -> name, for the ones that can be skipped
        self.always: List[str] = []  # names of pattern recognizers the rewrite could not handle
        self._owner: Dict[bool, List[str]] = {False: [], True: []}  # set index -> recognizer id
        self._sets = {}
        candidates = [r for r in recognizers if pattern_only(r)]
        relaxed: Dict[str, Dict[bool, List[str]]] = {}
        options = re2.Options()
        options.log_errors = False
        options.max_mem = max_mem
        for rec in candidates:
            try:
                forms = {mode: ["(?is)" + relax(pat.regex, mode) for pat in rec.patterns] for mode in (False, True)}
                for rx in forms[False] + forms[True]:
                    re2.compile(rx, options=options)
            except Exception:  # Unsupported, or a form RE2 refuses: this recognizer always runs
                self.always.append(rec.name)
                continue
            relaxed[rec.id] = forms
        for mode in (False, True):
            rset = re2.Set.SearchSet(options)
            rset.Add("")  # matches every text: its absence means RE2 gave up (out of memory), never "no match"
            self._owner[mode].append("")
            for rec_id, forms in relaxed.items():
                for rx in forms[mode]:
                    rset.Add(rx)
                    self._owner[mode].append(rec_id)
            rset.Compile()
            self._sets[mode] = rset
        self.gated = {r.id: r.name for r in candidates if r.id in relaxed}

    def possible(self, text: str) -> Optional[FrozenSet[str]]:
        """Ids of the gated recognizers that may match ``text``; None when the set could not decide (then
        every recognizer runs)."""
        unicode = not text.isascii()
        try:
            hits = self._sets[unicode].Match(text)
        except UnicodeEncodeError:  # a lone surrogate (the reader rejects those records): decide nothing
            return None
        if not hits or 0 not in hits:
            return None
        owner = self._owner[unicode]
        return frozenset(owner[h] for h in hits if h)

    def skipped(self, text: str) -> Set[str]:
        """Ids of the gated recognizers that cannot match ``text``."""
        possible = self.possible(text)
        if possible is None:
            return set()
        return set(self.gated) - possible

