"""Argument checks for :meth:`~eventcore.store.StreamLister.list_streams`, shared by
every backend so that they refuse the same input the same way."""

from __future__ import annotations

from typing import Final

from eventcore._text import check_storable_text
from eventcore.errors import ValidationError

MAX_LIST_LIMIT: Final = 10_000  # per call: a page, not a dump


def check_list_streams(prefix: object, after: object, limit: object) -> tuple[str, str, int]:
    """``(prefix, after, limit)`` validated; a missing prefix or cursor becomes ""."""
    if type(limit) is not int or not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValidationError(
            f"list_streams limit must be an int from 1 to {MAX_LIST_LIMIT}, got {limit!r}"
        )
    return _optional_text("prefix", prefix), _optional_text("after", after), limit


def _optional_text(name: str, value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or not value:
        raise ValidationError(f"list_streams {name} must be a non-empty str, got {value!r}")
    return check_storable_text(value, f"list_streams {name}")


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string above every string that starts with ``prefix``, in code
    point order (None when there is none): an index range stops there."""
    if not prefix:
        return None
    last = ord(prefix[-1])
    if last == 0x10FFFF:
        return None
    following = 0xE000 if last == 0xD7FF else last + 1  # skip the surrogates
    return prefix[:-1] + chr(following)
