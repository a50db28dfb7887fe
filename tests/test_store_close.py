"""close() finishes the appends it accepted, refuses new ones, and only then lets
go of the connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from eventcore import InMemoryEventStore, StoreClosed, StoreUnavailable, StreamId, ValidationError
from eventcore.backends._group_commit import GroupCommitSettings, GroupCommitter
from eventcore.store import AppendOutcome
from eventcore.types import AppendRequest, AppendResult, NewEvent
from tests.sql_storage import SQL_KINDS, SqlStorage, sql_storage


def _request(stream: str) -> AppendRequest:
    return AppendRequest.create({stream: 0}, [NewEvent(StreamId(stream), "T", b"{}")])


@pytest.fixture(params=SQL_KINDS)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStorage]:
    async for storage in sql_storage(request.param, tmp_path):
        yield storage


async def test_close_finishes_the_appends_queued_before_it(storage: SqlStorage) -> None:
    store = await storage.open()
    streams = [f"s{i}" for i in range(20)]
    appends = [asyncio.ensure_future(store.append(_request(s))) for s in streams]
    await asyncio.sleep(0)  # every append is queued; none has been sent yet
    assert not any(a.done() for a in appends)
    await store.close()
    results = await asyncio.gather(*appends)
    assert all(isinstance(r, AppendResult) for r in results)
    reopened = await storage.open()
    assert sorted(e.stream_id for e in await reopened.read_all()) == sorted(streams)


async def test_an_append_made_after_close_began_is_refused(storage: SqlStorage) -> None:
    store = await storage.open()
    queued = [asyncio.ensure_future(store.append(_request(f"s{i}"))) for i in range(5)]
    closing = asyncio.ensure_future(store.close())
    await asyncio.sleep(0)  # the appends are queued, then close() begins
    assert not closing.done()
    with pytest.raises(StoreClosed):
        await store.append(_request("late"))
    await closing
    assert all(isinstance(r, AppendResult) for r in await asyncio.gather(*queued))
    reopened = await storage.open()
    assert await reopened.stream_version("late") == 0


async def test_concurrent_closes_all_wait_for_the_queued_appends(storage: SqlStorage) -> None:
    store = await storage.open()
    queued = [asyncio.ensure_future(store.append(_request(f"s{i}"))) for i in range(5)]
    await asyncio.sleep(0)
    first = asyncio.ensure_future(store.close())
    await store.close()  # a second caller returns only once the store is closed
    assert all(a.done() and not a.exception() for a in queued)
    await first
    await store.close()  # and closing again is harmless
    with pytest.raises(StoreClosed):
        await store.append(_request("late"))


async def test_appends_still_unfinished_when_close_gives_up_fail_saying_so() -> None:
    store = InMemoryEventStore()
    never = asyncio.Event()
    sending = asyncio.Event()
    sent: list[Sequence[AppendRequest]] = []

    async def stuck(requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        sent.append(requests)
        sending.set()
        await never.wait()  # the database never answers
        return await store.append_many(requests)

    committer = GroupCommitter(stuck, GroupCommitSettings(close_timeout=0))
    in_flight = asyncio.ensure_future(committer.append(_request("a")))
    await sending.wait()  # the first append is sent and waits for its answer
    queued = asyncio.ensure_future(committer.append(_request("b")))
    await asyncio.sleep(0)
    await committer.close()
    with pytest.raises(StoreUnavailable, match="may or may not have been written"):
        await in_flight
    with pytest.raises(StoreUnavailable, match="was not written"):
        await queued
    with pytest.raises(StoreClosed):
        await committer.append(_request("c"))
    assert len(sent) == 1


@pytest.mark.parametrize("value", [-1, float("nan"), True, "1"])
def test_a_bad_close_timeout_is_refused(value: object) -> None:
    with pytest.raises(ValidationError, match="close_timeout"):
        GroupCommitSettings(close_timeout=value)  # type: ignore[arg-type]


async def test_close_waits_for_every_batch_under_way_when_several_may_be() -> None:
    store = InMemoryEventStore()
    gates: list[asyncio.Event] = []
    three_under_way = asyncio.Event()

    async def gated(requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        gate = asyncio.Event()
        gates.append(gate)
        if len(gates) == 3:
            three_under_way.set()
        await gate.wait()
        return await store.append_many(requests)

    committer = GroupCommitter(gated, GroupCommitSettings(max_in_flight=3))
    appends = [asyncio.ensure_future(committer.append(_request(f"s{i}"))) for i in range(10)]
    await asyncio.wait_for(three_under_way.wait(), timeout=5)
    closing = asyncio.ensure_future(committer.close())
    for gate in gates[:2]:
        gate.set()
    await asyncio.sleep(0.01)
    assert not closing.done(), "one batch is still under way"
    gates[2].set()
    await asyncio.wait_for(closing, timeout=5)
    assert all(a.done() and not a.exception() for a in appends)
    assert len(await store.read_all()) == 10


async def test_close_giving_up_with_several_batches_under_way_says_which_may_be_written() -> None:
    store = InMemoryEventStore()
    never = asyncio.Event()
    sent: list[Sequence[AppendRequest]] = []
    both_sent = asyncio.Event()

    async def stuck(requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        sent.append(requests)
        if len(sent) == 2:
            both_sent.set()
        await never.wait()  # the database never answers
        return await store.append_many(requests)

    committer = GroupCommitter(stuck, GroupCommitSettings(max_in_flight=2, close_timeout=0))
    first = asyncio.ensure_future(committer.append(_request("a")))
    second = asyncio.ensure_future(committer.append(_request("b")))
    await asyncio.wait_for(both_sent.wait(), timeout=5)
    # Behind the first, on its stream: held back until that batch is answered.
    behind = asyncio.ensure_future(
        committer.append(AppendRequest.create({"a": 1}, [NewEvent(StreamId("a"), "T", b"{}")]))
    )
    await asyncio.sleep(0)
    await asyncio.wait_for(committer.close(), timeout=5)
    for under_way in (first, second):
        with pytest.raises(StoreUnavailable, match="may or may not have been written"):
            await under_way
    with pytest.raises(StoreUnavailable, match="was not written"):
        await behind
    assert len(sent) == 2
