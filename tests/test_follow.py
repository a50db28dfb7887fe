"""follow(): catch up, then see new events as they are committed."""

from __future__ import annotations

import asyncio

import pytest

from eventcore import AppendRequest, NewEvent, SQLiteEventStore, StreamId, ValidationError
from eventcore.store import EventStore
from eventcore.subscription import AppendWaiter, follow


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
    # Stores that can wake a reader get a poll interval far longer than the test:
    # passing in time proves the wake-up works. SQLite (several processes, no
    # notifications) polls.
    wakes = isinstance(any_store, AppendWaiter) and not isinstance(any_store, SQLiteEventStore)
    poll = 60.0 if wakes else 0.02
    follower = asyncio.create_task(_take(follow(any_store, page_size=2, poll_interval=poll), 12))
    await asyncio.sleep(0.2)  # let it catch up and start waiting
    for n in range(5, 12):
        await _append(any_store, f"s-{n % 3}", n)
        await asyncio.sleep(0.01)
    positions = await asyncio.wait_for(follower, timeout=20)
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
    [({"after": -1}, "after"), ({"page_size": 0}, "page_size"), ({"poll_interval": 0}, "poll")],
)
async def test_follow_rejects_bad_arguments(
    any_store: EventStore, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        await anext(follow(any_store, **kwargs))  # type: ignore[arg-type]
