"""Group commit and append_many: batching never changes what an append means."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from eventcore import (
    AppendRequest,
    AppendResult,
    InMemoryEventStore,
    NewEvent,
    StoreUnavailable,
    StreamId,
    ValidationError,
    VersionConflict,
)
from eventcore.backends._group_commit import GroupCommitSettings, GroupCommitter
from eventcore.store import AppendOutcome, BatchAppender, EventStore


def _events(stream: str, count: int = 1) -> list[NewEvent]:
    return [NewEvent(StreamId(stream), "T", b'{"n":%d}' % n) for n in range(count)]


def _request(expected: dict[str, int], stream: str, count: int = 1) -> AppendRequest:
    return AppendRequest.create(expected, _events(stream, count))


def _committer(store: EventStore) -> GroupCommitter | None:
    return getattr(store, "_committer", None)  # private: the tests inspect batching


async def test_append_many_applies_requests_as_if_one_after_another(any_store: EventStore) -> None:
    assert isinstance(any_store, BatchAppender)
    outcomes = await any_store.append_many(
        [
            _request({"a": 0}, "a", 2),
            _request({"a": 0, "b": 0}, "b"),  # stale: a is at 2 by now
            _request({"a": 2}, "a"),  # sees the first request's events
            _request({"a": 3, "c": 0}, "c"),  # a read-only participant, current
        ]
    )
    conflict = outcomes[1]
    assert isinstance(conflict, VersionConflict)
    assert (conflict.stream_id, conflict.expected, conflict.actual) == ("a", 0, 2)
    results = [o for i, o in enumerate(outcomes) if i != 1]
    assert all(isinstance(r, AppendResult) for r in results)
    assert [r.positions for r in results] == [(1, 2), (3,), (4,)]  # type: ignore[union-attr]
    assert [e.global_position for e in await any_store.read_all()] == [1, 2, 3, 4]


async def test_concurrent_appends_at_one_version_have_exactly_one_winner(
    any_store: EventStore,
) -> None:
    outcomes = await asyncio.gather(
        *(any_store.append(_request({"race": 0}, "race")) for _ in range(30)),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if isinstance(o, AppendResult)]
    assert len(winners) == 1
    assert all(isinstance(o, VersionConflict) for o in outcomes if o not in winners)
    committer = _committer(any_store)
    if committer is not None:
        assert committer.batches < 30, "concurrent appends should have shared transactions"


async def test_appends_queued_together_see_each_others_effects(any_store: EventStore) -> None:
    # Submitted without a pause, the three land in one batch where the store
    # batches; each expects the version the one before it leaves.
    first = asyncio.ensure_future(any_store.append(_request({"s": 0}, "s", 2)))
    second = asyncio.ensure_future(any_store.append(_request({"s": 2}, "s")))
    third = asyncio.ensure_future(any_store.append(_request({"s": 3, "t": 0}, "t")))
    results = await asyncio.gather(first, second, third)
    assert [r.positions for r in results] == [(1, 2), (3,), (4,)]
    committer = _committer(any_store)
    if committer is not None:
        assert committer.batches == 1
    assert [e.stream_version for e in await any_store.read_stream("s")] == [1, 2, 3]


async def test_a_request_that_spoils_its_batch_fails_alone(any_store: EventStore) -> None:
    reused = uuid.uuid4()
    await any_store.append(
        AppendRequest.create({"x": 0}, [NewEvent(StreamId("x"), "T", b"{}", event_id=reused)])
    )
    good = [any_store.append(_request({f"ok-{i}": 0}, f"ok-{i}")) for i in range(5)]
    bad = any_store.append(
        AppendRequest.create({"y": 0}, [NewEvent(StreamId("y"), "T", b"{}", event_id=reused)])
    )
    outcomes = await asyncio.gather(*good[:3], bad, *good[3:], return_exceptions=True)
    assert isinstance(outcomes[3], ValidationError)
    assert all(isinstance(o, AppendResult) for i, o in enumerate(outcomes) if i != 3)
    assert await any_store.stream_version("y") == 0
    positions = [e.global_position for e in await any_store.read_all()]
    assert positions == list(range(1, 7))


async def test_a_failing_store_fails_every_request_of_the_batch() -> None:
    calls: list[int] = []

    async def broken(requests: object) -> list[AppendOutcome]:
        calls.append(len(requests))  # type: ignore[arg-type]
        raise StoreUnavailable("the server went away")

    committer = GroupCommitter(broken, GroupCommitSettings())
    outcomes = await asyncio.gather(
        *(committer.append(_request({f"s{i}": 0}, f"s{i}")) for i in range(4)),
        return_exceptions=True,
    )
    assert all(isinstance(o, StoreUnavailable) for o in outcomes)
    assert sum(calls) == 4  # never retried one by one: nothing could have succeeded


async def test_max_batch_bounds_each_transaction() -> None:
    store = InMemoryEventStore()
    sizes: list[int] = []

    async def counting(requests: list[AppendRequest]) -> list[AppendOutcome]:
        sizes.append(len(requests))
        return await store.append_many(requests)

    committer = GroupCommitter(counting, GroupCommitSettings(max_batch=4))  # type: ignore[arg-type]
    await asyncio.gather(*(committer.append(_request({f"s{i}": 0}, f"s{i}")) for i in range(10)))
    assert max(sizes) <= 4
    assert sum(sizes) == 10
    assert [e.global_position for e in await store.read_all()] == list(range(1, 11))


@pytest.mark.parametrize(
    "kwargs", [{"max_batch": 0}, {"max_batch": 1.5}, {"max_wait": -1}, {"max_wait": float("inf")}]
)
def test_bad_group_commit_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        GroupCommitSettings(**kwargs)  # type: ignore[arg-type]


async def test_an_append_cancelled_before_it_was_sent_is_not_written() -> None:
    store = InMemoryEventStore()
    release = asyncio.Event()

    async def slow(requests: list[AppendRequest]) -> list[AppendOutcome]:
        await release.wait()  # the first batch is in flight while others queue
        return await store.append_many(requests)

    committer = GroupCommitter(slow, GroupCommitSettings())  # type: ignore[arg-type]
    first = asyncio.ensure_future(committer.append(_request({"a": 0}, "a")))
    await asyncio.sleep(0)  # the first batch is sent and waits
    queued = asyncio.ensure_future(committer.append(_request({"b": 0}, "b")))
    await asyncio.sleep(0)
    queued.cancel()  # its caller gives up while it is still queued
    release.set()
    await first
    with pytest.raises(asyncio.CancelledError):
        await queued
    await asyncio.sleep(0.01)
    assert await store.stream_version("b") == 0
    assert committer.batches == 1


async def test_cancelling_the_flusher_while_it_retries_one_by_one_leaves_nobody_waiting() -> None:
    store = InMemoryEventStore()
    gate = asyncio.Event()
    retrying = asyncio.Event()

    async def spoiled_then_slow(requests: list[AppendRequest]) -> list[AppendOutcome]:
        if len(requests) == 1:
            retrying.set()
        if len(requests) > 1:
            raise ValidationError("one request spoilt the batch")
        await gate.wait()  # each one-by-one retry blocks until the flusher is cancelled
        return await store.append_many(requests)

    committer = GroupCommitter(spoiled_then_slow, GroupCommitSettings())  # type: ignore[arg-type]
    waiters = [
        asyncio.ensure_future(committer.append(_request({f"s{i}": 0}, f"s{i}"))) for i in range(3)
    ]
    await retrying.wait()
    assert committer._flusher is not None
    committer._flusher.cancel()
    done, pending = await asyncio.wait(waiters, timeout=1)
    assert not pending, "every caller must be answered (cancelled), none left hanging"
    assert all(w.cancelled() for w in done)
