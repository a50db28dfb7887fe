"""Following the global log: catch up, then wait for new events, forever.

::

    async for event in follow(store, after=checkpoint):
        await handle(event)

:func:`follow` reads ``read_all(after=P)`` page by page; once caught up it waits —
woken by the store when it can tell (PostgreSQL's LISTEN/NOTIFY, SQLite's data
version, the in-memory store's own appends), else by polling every
``poll_interval`` seconds — and reads
again. Because every store's log is commit-ordered, this never misses an event.
The paging, waiting and retrying live in :mod:`eventcore._tail`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Collection

from eventcore._tail import AppendWaiter, LogScanner, OutageRetry
from eventcore.store import EventReader
from eventcore.types import RecordedEvent

__all__ = ["AppendWaiter", "follow"]

_log = logging.getLogger(__name__)


async def follow(
    store: EventReader,
    *,
    after: int = 0,
    page_size: int = 500,
    poll_interval: float = 0.5,
    stream_prefix: str | None = None,
    stream_pattern: str | None = None,
    event_types: Collection[str] | None = None,
    max_retry_time: float = 60.0,
) -> AsyncGenerator[RecordedEvent, None]:
    """Yield every event after position ``after`` that passes the filters, in log
    order, then each new one as it is committed. Never returns on its own.

    The follower remembers how far it has *scanned*: the position up to which it
    has seen every event, yielded or passed over by the filters. With a filter,
    that is usually past the last event yielded (it reads the log's head before
    each page, and a page that is not full has scanned up to that head), so it
    waits for appends past the scanned position rather than rereading events that
    do not match.

    If the store is unavailable (:class:`~eventcore.errors.StoreUnavailable`, as
    while a database restarts), the read or wait is retried with a growing delay
    (50 ms doubling to 5 s), each retry logged at WARNING on the
    ``eventcore.subscription`` logger; after ``max_retry_time`` seconds without an
    answer (``0``: no retry, ``math.inf``: never give up) the last
    StoreUnavailable is raised. Any other error is raised at once.
    """
    scanner = LogScanner(
        store,
        after=after,
        page_size=page_size,
        poll_interval=poll_interval,
        stream_prefix=stream_prefix,
        stream_pattern=stream_pattern,
        event_types=event_types,
    )
    outage = OutageRetry(max_retry_time, _log)
    while True:
        page = await outage.run(scanner.next_page, scanner.scanned)
        for event in page:
            yield event
        if scanner.caught_up:
            await outage.run(scanner.wait, scanner.scanned)
