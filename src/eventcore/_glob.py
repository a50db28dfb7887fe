"""The stream-pattern language of ``read_all(stream_pattern=...)``, and its
translation to Python and PostgreSQL regular expressions.

One parser, several back ends, so every store agrees on what a pattern means:

- ``*`` matches any run of characters, including none;
- ``?`` matches exactly one character;
- ``[abc]``, ``[a-z]`` match one character of a set, ``[!abc]`` one not in it;
  a ``]`` right after ``[`` or ``[!`` belongs to the set; a reversed range
  (``[z-a]``) contributes nothing; a ``[`` with no closing ``]`` is literal;
- every other character matches itself; matching is case-sensitive and covers the
  whole stream id.

These are the rules of :func:`fnmatch.fnmatchcase`, which the tests check against.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, TypeAlias


@dataclass(frozen=True, slots=True)
class _AnyRun:
    pass


@dataclass(frozen=True, slots=True)
class _AnyOne:
    pass


@dataclass(frozen=True, slots=True)
class _Literal:
    char: str


@dataclass(frozen=True, slots=True)
class _Set:
    negated: bool
    ranges: tuple[tuple[str, str], ...]  # inclusive (low, high) pairs, low <= high


_Token: TypeAlias = _AnyRun | _AnyOne | _Literal | _Set


def _parse_set(pattern: str, start: int) -> tuple[_Set, int] | None:
    """Parse the set opening at ``pattern[start] == '['``; None if it never closes."""
    i = start + 1
    negated = i < len(pattern) and pattern[i] == "!"
    if negated:
        i += 1
    body_start = i
    if i < len(pattern) and pattern[i] == "]":
        i += 1  # a leading ']' is a member, not the end
    while i < len(pattern) and pattern[i] != "]":
        i += 1
    if i >= len(pattern):
        return None
    body = pattern[body_start:i]
    ranges: list[tuple[str, str]] = []
    k = 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            low, high = body[k], body[k + 2]
            if low <= high:
                ranges.append((low, high))
            k += 3
        else:
            ranges.append((body[k], body[k]))
            k += 1
    return _Set(negated, tuple(ranges)), i + 1


def parse(pattern: str) -> tuple[_Token, ...]:
    tokens: list[_Token] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            if not (tokens and isinstance(tokens[-1], _AnyRun)):
                tokens.append(_AnyRun())
            i += 1
        elif char == "?":
            tokens.append(_AnyOne())
            i += 1
        elif char == "[" and (parsed := _parse_set(pattern, i)) is not None:
            tokens.append(parsed[0])
            i = parsed[1]
        else:
            tokens.append(_Literal(char))
            i += 1
    return tuple(tokens)


# -- Python ------------------------------------------------------------------------


def _python_set(token: _Set) -> str:
    if not token.ranges:
        return "[\\s\\S]" if token.negated else "(?!)"
    body = "".join(
        re.escape(low) if low == high else f"{re.escape(low)}-{re.escape(high)}"
        for low, high in token.ranges
    )
    return f"[{'^' if token.negated else ''}{body}]"


@lru_cache(maxsize=256)
def python_regex(pattern: str) -> re.Pattern[str]:
    """A compiled regex that ``fullmatch``-es exactly the ids ``pattern`` matches."""
    parts: list[str] = []
    for token in parse(pattern):
        if isinstance(token, _AnyRun):
            parts.append(".*")
        elif isinstance(token, _AnyOne):
            parts.append(".")
        elif isinstance(token, _Literal):
            parts.append(re.escape(token.char))
        else:
            parts.append(_python_set(token))
    return re.compile("".join(parts), re.DOTALL)


def matches(stream_id: str, pattern: str) -> bool:
    return python_regex(pattern).fullmatch(stream_id) is not None


# -- PostgreSQL (advanced regular expressions, the `~` operator) ----------------------

# Outside brackets these are special in an ARE; a backslash before a
# non-alphanumeric character always stands for the character itself.
_ARE_SPECIAL: Final = frozenset("\\^$.|?*+()[]{}")
_ARE_SET_SPECIAL: Final = frozenset("\\]^-[")


def _are_char(char: str, special: frozenset[str]) -> str:
    return "\\" + char if char in special else char


def _are_set(token: _Set) -> str | None:
    if not token.ranges:
        return "." if token.negated else None
    body = "".join(
        _are_char(low, _ARE_SET_SPECIAL)
        if low == high
        else f"{_are_char(low, _ARE_SET_SPECIAL)}-{_are_char(high, _ARE_SET_SPECIAL)}"
        for low, high in token.ranges
    )
    return f"[{'^' if token.negated else ''}{body}]"


def postgres_regex(pattern: str) -> str | None:
    """An anchored PostgreSQL ARE equivalent to ``pattern``; None if nothing can match."""
    parts = ["^"]
    for token in parse(pattern):
        if isinstance(token, _AnyRun):
            parts.append(".*")
        elif isinstance(token, _AnyOne):
            parts.append(".")
        elif isinstance(token, _Literal):
            parts.append(_are_char(token.char, _ARE_SPECIAL))
        else:
            translated = _are_set(token)
            if translated is None:
                return None
            parts.append(translated)
    parts.append("$")
    return "".join(parts)


def literal_prefix(pattern: str) -> str:
    """The literal text every match starts with (lets SQL narrow before matching)."""
    prefix: list[str] = []
    for token in parse(pattern):
        if not isinstance(token, _Literal):
            break
        prefix.append(token.char)
    return "".join(prefix)
