"""User regexes that run in bounded time by construction, whatever the text.

A regex from a rule file runs on hostile text. A backtracking engine (``re``, ``regex``) can take time
exponential in the text's length on patterns such as ``(q|qz?)+y`` — no finite list of test strings finds
them all (issue 19 item 6: six pump strings accepted that one, and every hostile record then cost Presidio's
60 s timeout and came out clean). So:

* by default a pattern is compiled with RE2 (``google-re2``): matching time is linear in the text, always.
  RE2 has no back-references and no look-around; a pattern that needs them is refused when the rule file
  is validated (exit 2, file:line:field), unless the rule opts in with ``engine: backtracking``;
* an opted-in pattern runs on the ``regex`` module under ``BACKTRACKING_BUDGET_S`` per text scanned, and
  a scan that runs out of budget raises ``RegexBudgetExceeded``: the caller must turn it into a finding,
  never into "no match".

Flags follow Presidio's defaults for YAML recognizers: case-insensitive, ``.`` matches newlines, ``^``/``$``
at line ends. RE2 differences worth knowing: ``\\d``, ``\\w``, ``\\s`` and ``\\b`` are ASCII-only (use
``\\p{L}``, ``\\p{Nd}`` for other scripts); ``(?-i:...)`` and ``\\p{..}`` classes work as in ``regex``.

Reusable for any user regex (PII recognizers, trigger signatures): ``compile_user_regex`` to validate,
``SafeRegex.finditer`` to match.
"""

from __future__ import annotations

import functools
from typing import Iterator, Optional, Tuple

ENGINES = ("re2", "backtracking")
BACKTRACKING_BUDGET_S = 0.1  # per text scanned by one opted-in pattern (a PII window is <= max_chars chars)
RE2_MAX_MEM = 64 << 20  # bytes of compiled program and DFA cache per pattern; a larger pattern is refused
_INLINE_FLAGS = "(?ims)"


class RegexBudgetExceeded(Exception):
    """An opted-in backtracking pattern ran out of its time budget on one text."""

    def __init__(self, name: str, budget: float) -> None:
        super().__init__(f"regex {name!r} exceeded its {budget:g}s budget")
        self.name = name
        self.budget = budget


class UnsafeRegex(ValueError):
    """The pattern cannot run in bounded time (or at all) with the engine asked for."""


@functools.lru_cache(maxsize=1)
def _re2_options():
    import re2

    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern to stderr
    options.max_mem = RE2_MAX_MEM
    return options


class SafeRegex:
    """One compiled user pattern; ``finditer`` yields (start, end) character offsets."""

    def __init__(self, pattern: str, engine: str = "re2", name: str = "pattern",
                 budget: float = BACKTRACKING_BUDGET_S, case_insensitive: bool = True) -> None:
        if engine not in ENGINES:
            raise UnsafeRegex(f"unknown regex engine {engine!r} (known: {', '.join(ENGINES)})")
        self.pattern = pattern
        self.engine = engine
        self.name = name
        self.budget = budget
        flags = _INLINE_FLAGS if case_insensitive else "(?ms)"
        if engine == "re2":
            import re2

            try:
                self._compiled = re2.compile(flags + pattern, options=_re2_options())
            except Exception as exc:  # re2.error, or a pattern over RE2_MAX_MEM
                raise UnsafeRegex(_re2_message(exc)) from None
        else:
            import regex

            try:
                self._compiled = regex.compile(flags + pattern)
            except regex.error as exc:
                raise UnsafeRegex(f"invalid regex: {exc}") from None

    def finditer(self, text: str) -> Iterator[Tuple[int, int]]:
        """Non-overlapping matches, left to right; ``RegexBudgetExceeded`` if a backtracking pattern runs out
        of time (the matches yielded before it stand)."""
        if self.engine == "re2":
            for m in self._compiled.finditer(text):
                yield m.span()
            return
        try:
            for m in self._compiled.finditer(text, timeout=self.budget):
                yield m.span()
        except TimeoutError:
            raise RegexBudgetExceeded(self.name, self.budget) from None

    def search(self, text: str) -> Optional[Tuple[int, int]]:
        for span in self.finditer(text):
            return span
        return None


def _re2_message(exc: Exception) -> str:
    detail = exc.args[0] if exc.args else str(exc)
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    return (f"RE2 (linear-time matching) cannot compile it: {detail}. RE2 has no back-references or "
            "look-around; rewrite the pattern, or add 'engine: backtracking' to this pattern to run it with the "
            f"backtracking engine under a {BACKTRACKING_BUDGET_S:g}s budget per text (a text that exhausts it "
            "is quarantined as a finding)")


def compile_user_regex(pattern: str, engine: str = "re2", name: str = "pattern") -> SafeRegex:
    """Validate and compile; raises ``UnsafeRegex`` with a message fit for a configuration error."""
    return SafeRegex(pattern, engine=engine, name=name)
