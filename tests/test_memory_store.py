"""The in-memory store's own behaviour, beyond the shared contract."""

from __future__ import annotations

import asyncio

from eventcore.backends.memory import InMemoryEventStore
from eventcore.types import AppendRequest, NewEvent, StreamId

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
