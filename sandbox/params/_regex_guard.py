"""Refuse regular expressions that can backtrack catastrophically.

Parameter patterns are matched with Python's backtracking ``re`` engine, so a template
author's pattern must stay in a subset whose worst case is small on inputs of at most 256
characters. The scanner below is deliberately conservative; it refuses:

- backreferences (``\\1``, ``(?P=name)``) and conditionals (``(?(1)…)``): not regular;
- lookarounds (``(?=``, ``(?!``, ``(?<=``, ``(?<!``): rarely needed in a whole-value match;
- a repeated group that itself contains a quantifier or an alternation, e.g. ``(a+)+``,
  ``(a|aa)*``, ``(.*a){20}`` — the classic exponential shapes (an optional group, ``(…)?``,
  is fine);
- more than ``MAX_UNBOUNDED`` unbounded quantifiers (``*``, ``+``, ``{n,}``, ``{n,m}`` with
  m > 16), which bounds polynomial blow-up such as ``\\d*\\d*\\d*\\d*x``.

Write ``[ab]+`` instead of ``(a|b)+``, and ``[a-z]+(?:-[a-z]+)?`` instead of
``[a-z]+(-[a-z]+)*``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_PATTERN_LENGTH = 200
MAX_UNBOUNDED = 3
_BIG_REPEAT = 16
_BRACE_QUANTIFIER = re.compile(r"\{(\d*)(?:(,)(\d*))?\}")


@dataclass(slots=True)
class _Group:
    has_quantifier: bool = False
    has_alternation: bool = False


def pattern_problem(pattern: str) -> str | None:
    """Return why ``pattern`` is refused, or None when it is safe to use."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"is longer than {MAX_PATTERN_LENGTH} characters"
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"is not a valid regular expression ({exc.msg})"
    return _Scanner(pattern).scan()


class _Scanner:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.stack: list[_Group] = [_Group()]
        self.unbounded = 0

    def scan(self) -> str | None:
        while self.i < len(self.p):
            problem = self._step()
            if problem is not None:
                return problem
        if self.unbounded > MAX_UNBOUNDED:
            return f"has more than {MAX_UNBOUNDED} unbounded repetitions"
        return None

    def _step(self) -> str | None:
        c = self.p[self.i]
        if c == "\\":
            nxt = self.p[self.i + 1 : self.i + 2]
            if nxt.isdigit() and nxt != "0":
                return "uses a backreference"
            self.i += 2
            return self._quantifier(None)
        if c == "[":
            self._skip_class()
            return self._quantifier(None)
        if c == "(":
            return self._open_group()
        if c == ")":
            closed = self.stack.pop()
            self.i += 1
            return self._quantifier(closed)
        if c == "|":
            self.stack[-1].has_alternation = True
            self.i += 1
            return None
        self.i += 1
        return self._quantifier(None)

    def _open_group(self) -> str | None:
        rest = self.p[self.i + 1 :]
        if rest.startswith("?"):
            if rest.startswith(("?=", "?!", "?<=", "?<!")):
                return "uses a lookaround"
            if rest.startswith(("?P=", "?(")):
                return "uses a backreference or conditional"
            if rest.startswith("?#"):
                return "uses an inline comment"
        self.stack.append(_Group())
        self.i += 1
        if rest.startswith("?"):  # (?:…), (?P<name>…), (?i) and friends: skip to the body
            self.i += 1
            while self.i < len(self.p) and self.p[self.i] not in ":)>":
                self.i += 1
            if self.i < len(self.p) and self.p[self.i] in ":>":
                self.i += 1
        return None

    def _skip_class(self) -> None:
        self.i += 1
        if self.p[self.i : self.i + 1] == "^":
            self.i += 1
        if self.p[self.i : self.i + 1] == "]":
            self.i += 1
        while self.i < len(self.p) and self.p[self.i] != "]":
            self.i += 2 if self.p[self.i] == "\\" else 1
        self.i += 1

    def _quantifier(self, closed: _Group | None) -> str | None:
        kind = self._read_quantifier()
        if kind is None:
            if closed is not None:  # an unquantified group passes its contents upwards
                self.stack[-1].has_quantifier |= closed.has_quantifier
                self.stack[-1].has_alternation |= closed.has_alternation
            return None
        nested = closed is not None and (closed.has_quantifier or closed.has_alternation)
        if nested and kind != "optional":
            return "repeats a group that contains a repetition or an alternation"
        self.stack[-1].has_quantifier = True
        self.unbounded += kind == "unbounded"
        if self.p[self.i : self.i + 1] in ("?", "+"):
            self.i += 1  # lazy or possessive modifier
        return None

    def _read_quantifier(self) -> str | None:
        """Consume a quantifier and return its kind: optional, bounded or unbounded."""
        c = self.p[self.i : self.i + 1]
        if c in ("*", "+"):
            self.i += 1
            return "unbounded"
        if c == "?":
            self.i += 1
            return "optional"
        m = _BRACE_QUANTIFIER.match(self.p, self.i)
        if c != "{" or m is None or not (m.group(1) or m.group(3)):
            return None
        self.i = m.end()
        upper = m.group(1) if m.group(2) is None else m.group(3)
        if not upper or int(upper) > _BIG_REPEAT:
            return "unbounded"
        return "optional" if upper == "1" and not m.group(1).strip("0") else "bounded"
