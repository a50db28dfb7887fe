"""Following the global log: catch up, then wait for new events, forever.

::

    async for event in follow(store, after=checkpoint):
        await handle(event)

:func:`follow` reads ``read_all(after=P)`` page by page; once caught up it waits —
woken by the store when it can tell (PostgreSQL's LISTEN/NOTIFY, the in-memory
store's own appends), else by polling every ``poll_interval`` seconds — and reads
again. Because every store's log is commit-ordered, this never misses an event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from typing import Protocol, runtime_checkable

from eventcore.backends._common import check_page_size
from eventcore.errors import ValidationError
from eventcore.store import EventReader
from eventcore.types import RecordedEvent, check_version


@runtime_checkable
class AppendWaiter(Protocol):
    """A store that can wake a reader when its log grows."""

    async def wait_for_append(self, after: int, max_wait: float) -> None:
        """Return soon after the log grows past ``after``, or after ``max_wait`` s."""
        ...


async def follow(
    store: EventReader,
    *,
    after: int = 0,
    page_size: int = 500,
    poll_interval: float = 0.5,
    stream_prefix: str | None = None,
    stream_pattern: str | None = None,
    event_types: Collection[str] | None = None,
) -> AsyncIterator[RecordedEvent]:
    """Yield every event after position ``after`` that passes the filters, in log
    order, then each new one as it is committed. Never returns on its own."""
    position = check_version(after, "after (a global position)")
    check_page_size(page_size)
    if (
        isinstance(poll_interval, bool)
        or not isinstance(poll_interval, int | float)
        or (not poll_interval > 0)
    ):
        raise ValidationError(f"poll_interval must be a positive number, got {poll_interval!r}")
    waiter = store if isinstance(store, AppendWaiter) else None
    while True:
        page = await store.read_all(
            after=position,
            limit=page_size,
            stream_prefix=stream_prefix,
            stream_pattern=stream_pattern,
            event_types=event_types,
        )
        for event in page:
            yield event
        if page:
            position = page[-1].global_position
        if len(page) == page_size:
            continue  # more to catch up on
        if waiter is not None:
            await waiter.wait_for_append(position, poll_interval)
        else:
            await asyncio.sleep(poll_interval)
