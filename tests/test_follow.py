"""follow(): catch up, then see new events as they are committed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Collection

import pytest

from eventcore import (
    DeserializationError,
    RecordedEvent,
    StoreClosed,
    StoreUnavailable,
    StreamId,
    ValidationError,
    VersionConflict,
)
from eventcore.store import EventStore
from eventcore.subscription import AppendWaiter, follow
from eventcore.testing.faults import FaultInjectingStore
from eventcore.types import AppendRequest, NewEvent


def _event(stream: str, n: int) -> NewEvent:
    return NewEvent(StreamId(stream), "Tick" if n % 2 else "Tock", b'{"n":%d}' % n)


async def _append(store: EventStore, stream: str, n: int) -> None:
    version = await store.stream_version(stream)
    await store.append(AppendRequest.create({stream: version}, [_event(stream, n)]))


async def _take(source: object, count: int) -> list[int]:
    positions = []
    async for event in source:  # type: ignore[attr-defined]
        positions.append(event.global_position)
        if len(positions) == count:
            return positions
    raise AssertionError("follow() ended")


async def test_follow_catches_up_then_sees_new_events_in_order(any_store: EventStore) -> None:
    for n in range(5):
        await _append(any_store, "s", n)
    # Every store wakes a reader (PostgreSQL by NOTIFY, SQLite by watching the
    # file's data version), so the poll interval is far longer than the test:
    # passing in time proves the wake-up works.
    assert isinstance(any_store, AppendWaiter)
    poll = 60.0
    positions: list[int] = []
    caught_up = asyncio.Event()

    async def collect() -> None:
        async for event in follow(any_store, page_size=2, poll_interval=poll):
            positions.append(event.global_position)
            if len(positions) == 5:
                caught_up.set()
            if len(positions) == 12:
                return

    follower = asyncio.create_task(collect())
    await asyncio.wait_for(caught_up.wait(), timeout=20)  # caught up; now it waits
    for n in range(5, 12):
        await _append(any_store, f"s-{n % 3}", n)
        await asyncio.sleep(0)
    await asyncio.wait_for(follower, timeout=20)
    assert positions == list(range(1, 13))


async def test_follow_resumes_after_a_position_and_applies_filters(any_store: EventStore) -> None:
    for n in range(10):
        await _append(any_store, "even" if n % 2 == 0 else "odd", n)
    events = []
    async for event in follow(any_store, after=3, stream_prefix="ev", poll_interval=0.01):
        events.append(event)
        if len(events) == 3:
            break
    assert [e.global_position for e in events] == [5, 7, 9]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"after": -1}, "after"),
        ({"page_size": 0}, "page_size"),
        ({"poll_interval": 0}, "poll"),
        ({"max_retry_time": -1}, "max_retry_time"),
        ({"max_retry_time": float("nan")}, "max_retry_time"),
    ],
)
async def test_follow_rejects_bad_arguments(
    any_store: EventStore, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        await anext(follow(any_store, **kwargs))  # type: ignore[arg-type]


# -- waiting -------------------------------------------------------------------------

SPIN_LIMIT = 50


class _StopsASpin(FaultInjectingStore):
    """Counts log reads, and fails past SPIN_LIMIT of them: a follower spinning on
    the in-memory store never yields to the loop, so without this the test would
    hang instead of failing. ``waiting`` is set once the follower waits."""

    def __init__(self, inner: EventStore) -> None:
        super().__init__(inner)
        self.waiting = asyncio.Event()

    async def wait_for_append(self, after: int, max_wait: float) -> None:
        self.waiting.set()
        await super().wait_for_append(after, max_wait)

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        stream_prefix: str | None = None,
        stream_pattern: str | None = None,
        event_types: Collection[str] | None = None,
    ) -> list[RecordedEvent]:
        if self.log_read_calls >= SPIN_LIMIT:
            raise AssertionError(f"follow() read the log {SPIN_LIMIT} times with nothing new")
        return await super().read_all(
            after=after,
            limit=limit,
            stream_prefix=stream_prefix,
            stream_pattern=stream_pattern,
            event_types=event_types,
        )


async def _reads_while_idle(
    store: FaultInjectingStore, source: AsyncIterator[RecordedEvent]
) -> int:
    """Take one event from ``source``, then let another task tick for a while with
    nothing new to see; return how many log reads the follower made meanwhile."""
    first = await anext(source)
    assert first.global_position == 1
    follower = asyncio.ensure_future(anext(source))
    await asyncio.sleep(0)  # let it reach its wait
    reads_before = store.log_read_calls
    ticks = 0
    for _ in range(20):  # another task keeps running while the follower waits
        await asyncio.sleep(0.01)
        ticks += 1
    try:
        assert ticks == 20
        if follower.done():
            follower.result()  # raises what stopped the follower
            raise AssertionError(f"follow() yielded {follower.result()} with nothing new")
        return store.log_read_calls - reads_before
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower


async def test_follow_waits_without_reading_when_nothing_is_new(any_store: EventStore) -> None:
    store = _StopsASpin(any_store)
    await _append(store, "s", 1)
    reads = await _reads_while_idle(store, follow(store, poll_interval=60))
    assert reads <= 1


async def test_follow_with_a_filter_waits_when_the_newest_events_do_not_match(
    any_store: EventStore,
) -> None:
    store = _StopsASpin(any_store)
    for n in (1, 2, 4):  # Tick, Tock, Tock: the newest do not match
        await _append(store, "s", n)
    reads = await _reads_while_idle(store, follow(store, event_types=["Tick"], poll_interval=60))
    assert reads <= 2


async def test_follow_with_a_filter_sees_matches_appended_after_unmatched_ones(
    any_store: EventStore,
) -> None:
    store = _StopsASpin(any_store)
    for n in (1, 2):
        await _append(store, "s", n)
    source = follow(store, event_types=["Tick"], poll_interval=60.0)
    assert (await anext(source)).global_position == 1
    follower = asyncio.create_task(_take(source, 2))
    await asyncio.wait(  # until it has scanned past position 2 and waits
        [follower, asyncio.ensure_future(store.waiting.wait())],
        return_when=asyncio.FIRST_COMPLETED,
    )
    for n in (4, 6, 7, 8, 9):  # positions 3..7; the odd n are Ticks
        await _append(store, "s", n)
    assert await asyncio.wait_for(follower, timeout=20) == [5, 7]


class _AppendsWhileTheHeadIsRead(_StopsASpin):
    """Commits one matching event just before answering for the head, as a
    concurrent writer could: a follower that read its page before the head would
    count the event as scanned without having seen it."""

    armed = False

    async def head_position(self) -> int:
        if self.armed:
            self.armed = False
            await _append(self.inner, "late", 1)  # a Tick
        return await super().head_position()


async def test_follow_never_skips_an_event_committed_while_it_reads_the_head(
    any_store: EventStore,
) -> None:
    store = _AppendsWhileTheHeadIsRead(any_store)
    for n in (1, 2):
        await _append(store, "s", n)
    store.armed = True
    positions = await asyncio.wait_for(
        _take(follow(store, event_types=["Tick"], poll_interval=0.02), 2), timeout=20
    )
    assert positions == [1, 3]


# -- riding out an unavailable store -----------------------------------------------


async def test_follow_rides_out_an_unavailable_store_yielding_each_event_once(
    any_store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventcore.subscription")
    store = FaultInjectingStore(any_store)
    for n in range(5):
        await _append(store, "s", n)
    store.fail_next_log_reads(2)
    source = follow(store, page_size=2, poll_interval=0.02)
    positions = [(await anext(source)).global_position for _ in range(3)]
    store.fail_next_log_reads(2)  # again, with a page half yielded
    positions += [(await anext(source)).global_position for _ in range(2)]
    await _append(store, "s", 5)
    positions.append((await asyncio.wait_for(anext(source), timeout=20)).global_position)
    await source.aclose()

    assert positions == [1, 2, 3, 4, 5, 6]
    retries = [r for r in caplog.records if r.name == "eventcore.subscription"]
    assert len(retries) == 4
    assert all(r.levelno == logging.WARNING for r in retries)
    assert "after position 0" in retries[0].getMessage()
    assert "after position 4" in retries[2].getMessage()
    assert "injected log read failure" in retries[0].getMessage()


async def test_follow_rides_out_a_failed_wait(
    any_store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventcore.subscription")
    store = FaultInjectingStore(any_store)
    await _append(store, "s", 1)
    store.fail_next_waits(1)
    source = follow(store, poll_interval=0.02)
    assert (await anext(source)).global_position == 1
    follower = asyncio.ensure_future(anext(source))
    await _append(store, "s", 2)
    assert (await asyncio.wait_for(follower, timeout=20)).global_position == 2
    await source.aclose()
    retries = [r.getMessage() for r in caplog.records if r.name == "eventcore.subscription"]
    assert len(retries) == 1
    assert "injected wait failure" in retries[0]


async def test_follow_gives_up_with_store_unavailable_when_its_retry_time_is_spent(
    any_store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventcore.subscription")
    store = FaultInjectingStore(any_store)
    await _append(store, "s", 1)
    store.fail_next_log_reads(10_000)
    with pytest.raises(StoreUnavailable, match="injected log read failure"):
        await anext(follow(store, max_retry_time=0.2))
    assert caplog.records, "each retry is logged"
    assert store.log_read_calls < 10_000


async def test_follow_without_retry_time_raises_the_first_store_unavailable(
    any_store: EventStore,
) -> None:
    store = FaultInjectingStore(any_store)
    store.fail_next_log_reads(2)
    with pytest.raises(StoreUnavailable):
        await anext(follow(store, max_retry_time=0))
    assert store.log_read_calls == 1


@pytest.mark.parametrize(
    "error",
    [DeserializationError("s", 1, "Tick", "bad"), StoreClosed("the store"), RuntimeError("bug")],
)
async def test_follow_does_not_retry_other_errors(
    any_store: EventStore, caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    store = FaultInjectingStore(any_store)
    store.fail_next_log_reads(1, error)
    with pytest.raises(type(error)):
        await anext(follow(store))
    assert store.log_read_calls == 1
    assert not [r for r in caplog.records if r.name == "eventcore.subscription"]


async def test_follow_with_a_filter_sees_every_match_while_writers_race(
    any_store: EventStore,
) -> None:
    async def writer(w: int) -> None:
        for n in range(20):
            while True:
                try:
                    await _append(any_store, f"race-{(w + n) % 3}", w * 100 + n)
                    break
                except VersionConflict:
                    await asyncio.sleep(0)

    reader = FaultInjectingStore(any_store, latency=0)  # each read yields to the writers
    source = follow(reader, page_size=3, event_types=["Tick"], poll_interval=0.02)
    follower = asyncio.create_task(_take(source, 40))  # half of the 80 events are Ticks
    await asyncio.gather(*(writer(w) for w in range(4)))
    seen = await asyncio.wait_for(follower, timeout=30)
    final = await any_store.read_all(event_types=["Tick"])
    assert seen == [e.global_position for e in final]
