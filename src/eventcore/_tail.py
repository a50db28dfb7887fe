"""Tailing the global log: how far a reader has scanned, and riding out outages.

:func:`eventcore.follow` is built from these two pieces so that anything else that
tails the log (a projection runner) can reuse them.

:class:`LogScanner` remembers how far it has *scanned*, not only the last event it
returned. With a filter the difference matters: when the newest events do not
match, the last match lies behind the log's head, so waiting for appends past it
would return at once, and the reader would read the same empty page forever.

:class:`OutageRetry` re-runs a read or a wait that failed with
:class:`~eventcore.errors.StoreUnavailable` (a database restarting, a network
blip), backing off, until the store answers or a time budget is spent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Protocol, TypeVar, runtime_checkable

from eventcore.errors import StoreUnavailable, ValidationError
from eventcore.retry import RetryPolicy
from eventcore.store import EventReader, LogFilter, check_page_size
from eventcore.types import RecordedEvent, check_version

T = TypeVar("T")


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


class OutageRetry:
    """Re-runs a step that raised StoreUnavailable until it succeeds or
    ``max_time`` seconds have passed since its first failure; then re-raises the
    last failure. Any other error is not the store being away, and passes at once.

    The waits double from 50 ms up to 5 s, with jitter, so that many readers
    coming back after a restart do not all knock at once. Each retry is logged at
    WARNING on ``logger``, with the position and the error.
    """

    _BACKOFF = RetryPolicy(base_delay=0.05, max_delay=5.0, jitter=0.2)

    def __init__(self, max_time: float, logger: logging.Logger) -> None:
        self._max_time = _check_seconds(max_time, "max_retry_time", zero=True)
        self._logger = logger

    async def run(self, step: Callable[[], Awaitable[T]], position: int) -> T:
        retries = 0
        first_failure = 0.0
        while True:
            try:
                result = await step()
            except StoreUnavailable as exc:
                now = time.monotonic()
                if not retries:
                    first_failure = now
                left = self._max_time - (now - first_failure)
                if left <= 0:
                    if retries:
                        exc.add_note(
                            f"gave up after {retries} retries over {now - first_failure:.1f} s "
                            "(max_retry_time)"
                        )
                    raise
                delay = min(self._BACKOFF.delay(retries), left)
                retries += 1
                self._logger.warning(
                    "store unavailable reading the log after position %d; retry %d in %.2f s: %s",
                    position,
                    retries,
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
            else:
                if retries:
                    self._logger.info(
                        "store available again after position %d, after %d retries",
                        position,
                        retries,
                    )
                return result
