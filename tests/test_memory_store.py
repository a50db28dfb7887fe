"""The in-memory store's own behaviour, beyond the shared contract."""

from __future__ import annotations

import asyncio
import gc

from eventcore.backends.memory import InMemoryEventStore
from eventcore.types import AppendRequest, EventMetadata, NewEvent, StreamId

FOREVER = 3600.0  # a waiter that is not woken would hang the test, never pass it


def _one_event(stream: str, version: int) -> AppendRequest:
    return AppendRequest.create({stream: version}, [NewEvent(StreamId(stream), "t", b"{}")])


async def _start_waiting(store: InMemoryEventStore, after: int) -> asyncio.Task[None]:
    waiter = asyncio.create_task(store.wait_for_append(after, FOREVER))
    for _ in range(3):  # let it reach its wait
        await asyncio.sleep(0)
    assert not waiter.done()
    return waiter


async def test_each_append_wakes_the_followers_waiting_at_that_time() -> None:
    async with InMemoryEventStore() as store:
        await store.append(_one_event("a", 0))  # nobody waits yet
        first = await _start_waiting(store, after=1)
        await store.append(_one_event("a", 1))
        await asyncio.wait_for(first, FOREVER)
        second = await _start_waiting(store, after=2)
        await store.append(_one_event("b", 0))
        await asyncio.wait_for(second, FOREVER)


async def test_a_waiter_behind_the_head_returns_at_once() -> None:
    async with InMemoryEventStore() as store:
        await store.append(_one_event("a", 0))
        await asyncio.wait_for(store.wait_for_append(0, FOREVER), FOREVER)


def _tracked_objects() -> int:
    gc.collect()  # a full collection untracks the tuples that hold only atomic values
    return len(gc.get_objects())


async def test_events_written_but_not_read_leave_nothing_for_the_garbage_collector() -> None:
    # Every object the collector tracks is walked again at each full collection;
    # a store keeping four per event spent half a command's CPU there.
    metadata = EventMetadata(correlation_id="c", causation_id="d")
    async with InMemoryEventStore() as store:
        versions = {StreamId(stream): 0 for stream in "abc"}
        for stream in versions:
            await store.append(_one_event(stream, 0))
            versions[stream] += 1
        before = _tracked_objects()
        for i in range(2000):
            new = NewEvent(StreamId("abc"[i % 3]), "t", b"{}", metadata)
            await store.append(
                AppendRequest.create({new.stream_id: versions[new.stream_id]}, [new])
            )
            versions[new.stream_id] += 1
            del new
        grown = _tracked_objects() - before
    assert grown < 20, f"{grown} more objects tracked after 2,000 events"


async def test_appends_keep_no_container_that_would_bring_a_collection_nearer() -> None:
    # The collector runs each time 700 more containers were made than freed; a
    # store keeping one per event (even a tuple that a collection then untracks)
    # brought one every 700 events, a sixth of a cached command's CPU.
    metadata = EventMetadata(correlation_id="c", causation_id="d")
    async with InMemoryEventStore() as store:
        requests = [
            AppendRequest.create(
                {"abc"[i % 3]: i // 3}, [NewEvent(StreamId("abc"[i % 3]), "t", b"{}", metadata)]
            )
            for i in range(3000)
        ]
        gc.collect()
        gc.disable()  # so that no collection untracks what the appends keep
        try:
            before = len(gc.get_objects())
            for request in requests:
                await store.append(request)  # its AppendResult is freed at once
            kept = len(gc.get_objects()) - before
        finally:
            gc.enable()
    assert kept < 20, f"{kept} containers kept by 3,000 appends"


async def test_a_record_built_on_its_first_read_is_the_one_every_later_read_returns() -> None:
    metadata = EventMetadata("corr", "cause", {"user": ["x", 1]})
    async with InMemoryEventStore() as store:
        new = NewEvent(StreamId("a"), "t", b'{"n":1}', metadata)
        await store.append(AppendRequest.create({"a": 0}, [new]))
        await store.append(_one_event("b", 0))
        (first,) = await store.read_stream("a")
        assert (first.event_id, first.stream_id, first.stream_version) == (new.event_id, "a", 1)
        assert (first.global_position, first.event_type, first.payload) == (1, "t", b'{"n":1}')
        assert first.metadata == metadata
        assert (await store.read_all())[0] is first
        assert (await store.read_stream_tail("a"))[0] is first
        assert (await store.events_by_id([new.event_id]))[0] is first
        assert (await store.read_streams(["a"]))["a"][0] is first
        second = (await store.read_all(after=1))[0]
        assert second.metadata == EventMetadata()
        assert second.stream_id == "b"


async def test_a_filtered_read_builds_only_the_records_it_returns() -> None:
    async with InMemoryEventStore() as store:
        for version in range(300):
            await store.append(_one_event("a", version))
        await store.append(AppendRequest.create({"b": 0}, [NewEvent(StreamId("b"), "u", b"{}")]))
        before = _tracked_objects()
        found = await store.read_all(event_types=["u"])
        assert [(e.stream_id, e.global_position) for e in found] == [("b", 301)]
        del found
        assert _tracked_objects() - before < 20
        assert [e.global_position for e in await store.read_all(stream_prefix="a", limit=2)] == [
            1,
            2,
        ]


async def test_the_events_of_one_append_share_their_metadata_when_read() -> None:
    metadata = EventMetadata("corr", None, {"k": 1})
    async with InMemoryEventStore() as store:
        events = [NewEvent(StreamId("a"), "t", b"{}", metadata) for _ in range(3)]
        await store.append(AppendRequest.create({"a": 0}, events))
        await store.append(_one_event("a", 3))
        read = await store.read_stream("a")
        assert read[0].metadata is read[1].metadata is read[2].metadata
        assert read[0].metadata == metadata
        assert read[3].metadata == EventMetadata()
