"""Tailing the global log: how far a reader has scanned.

:func:`eventcore.follow` is built from this piece so that anything else that
tails the log (a projection runner) can reuse it.

:class:`LogScanner` remembers how far it has *scanned*, not only the last event it
returned. With a filter the difference matters: when the newest events do not
match, the last match lies behind the log's head, so waiting for appends past it
would return at once, and the reader would read the same empty page forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Protocol, runtime_checkable

from eventcore.errors import ValidationError
from eventcore.store import EventReader, LogFilter, check_page_size
from eventcore.types import RecordedEvent, check_version


@runtime_checkable
class AppendWaiter(Protocol):
    """A store that can wake a reader when its log grows."""

    async def wait_for_append(self, after: int, max_wait: float) -> None:
        """Return soon after the log grows past ``after``, or after ``max_wait`` s."""
        ...


def _check_seconds(value: object, name: str, *, zero: bool) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (value >= 0 if zero else value > 0)  # also refuses NaN
    ):
        kind = "a number >= 0" if zero else "a positive number"
        raise ValidationError(f"{name} must be {kind} of seconds, got {value!r}")
    return float(value)


class LogScanner:
    """Reads the global log after a position, one page at a time, and waits at its end.

    ``scanned`` is the position up to which every event has been either returned
    or passed over by the filter; a reader resumes and waits from there.
    ``caught_up`` tells whether the last page reached the end of the log.
    """

    def __init__(
        self,
        store: EventReader,
        *,
        after: int,
        page_size: int,
        poll_interval: float,
        stream_prefix: str | None = None,
        stream_pattern: str | None = None,
        event_types: Collection[str] | None = None,
    ) -> None:
        self.scanned = check_version(after, "after (a global position)")
        self.caught_up = False
        self._store = store
        self._page_size = check_page_size(page_size)
        self._poll_interval = _check_seconds(poll_interval, "poll_interval", zero=False)
        self._filter = LogFilter.create(stream_prefix, stream_pattern, event_types)

    async def next_page(self) -> list[RecordedEvent]:
        """The next matching events after ``scanned`` (at most a page), advancing it."""
        # Read before the page: the log is commit-ordered, so every event at or
        # below this head is committed and visible to the query that follows.
        head = None if self._filter.is_empty else await self._store.head_position()
        page = await self._store.read_all(
            after=self.scanned,
            limit=self._page_size,
            stream_prefix=self._filter.stream_prefix,
            stream_pattern=self._filter.stream_pattern,
            event_types=self._filter.event_types,
        )
        scanned = page[-1].global_position if page else self.scanned
        self.caught_up = len(page) < self._page_size
        if self.caught_up and head is not None:
            # A short page holds every match up to the head: what lies between the
            # last match and the head did not pass the filter.
            scanned = max(scanned, head)
        self.scanned = scanned
        return page

    async def wait(self) -> None:
        """Wait for appends past ``scanned``: woken by the store when it can tell,
        else for ``poll_interval`` seconds."""
        if isinstance(self._store, AppendWaiter):
            await self._store.wait_for_append(self.scanned, self._poll_interval)
        else:
            await asyncio.sleep(self._poll_interval)
