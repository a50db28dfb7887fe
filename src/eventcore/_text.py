"""The one check for text that goes into a database's text column.

PostgreSQL refuses NUL (``\\x00``) in ``text``; no driver can encode a lone
surrogate (``"\\ud800"``, which ``json.loads`` makes out of a client's JSON
escape ``\\ud800``) into UTF-8. Memory and SQLite would take what PostgreSQL cannot, and
data could then not move between stores; so every store refuses both, up front.
"""

from __future__ import annotations

from eventcore.errors import ValidationError


def unstorable_text_reason(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or ``None`` if it can."""
    if "\x00" in value:
        return "must not contain NUL (no database stores it in text)"
    # isascii() is O(1) in CPython; only non-ASCII text pays for an encode.
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must not contain a lone surrogate (it is not valid Unicode text)"
    return None


def check_storable_text(value: str, what: str) -> str:
    """Return ``value`` if a database can store it as text, else raise
    :class:`~eventcore.errors.ValidationError` naming ``what`` and the value."""
    reason = unstorable_text_reason(value)
    if reason is not None:
        raise ValidationError(f"{what} {value!r} {reason}")
    return value
