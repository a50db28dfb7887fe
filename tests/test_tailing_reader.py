"""A reader tailing read_all(after=P) while writer tasks append sees the whole log."""

from __future__ import annotations

import asyncio
import random

from eventcore import InMemoryEventStore, StreamId, VersionConflict
from eventcore.store import EventStore
from eventcore.testing.faults import FaultInjectingStore
from eventcore.types import AppendRequest, NewEvent

WRITERS = 8
APPENDS_PER_WRITER = 60


async def _writer(store: EventStore, writer: int, seed: int) -> int:
    """Appends to random streams (conflicting with other writers); returns conflicts."""
    rng = random.Random(seed)
    conflicts = 0
    for n in range(APPENDS_PER_WRITER):
        streams = rng.sample([f"tail-{i}" for i in range(6)], rng.randint(1, 2))
        while True:
            versions = {s: await store.stream_version(s) for s in streams}
            events = [
                NewEvent(StreamId(s), "Tick", f'{{"w":{writer},"n":{n}}}'.encode())
                for s in streams
                for _ in range(rng.randint(1, 3))
            ]
            try:
                await store.append(AppendRequest.create(versions, events))
                break
            except VersionConflict:
                conflicts += 1
    return conflicts


async def _tail(store: EventStore, done: asyncio.Event) -> list[tuple[int, str]]:
    seen: list[tuple[int, str]] = []
    position = 0
    while True:
        finished = done.is_set()  # read once more after the writers finished
        page = await store.read_all(after=position, limit=7)
        seen += [(e.global_position, str(e.event_id)) for e in page]
        if page:
            position = page[-1].global_position
        elif finished:
            return seen
        else:
            await asyncio.sleep(0)


async def test_tailing_reader_sees_exactly_the_final_log_in_order(any_store: EventStore) -> None:
    store = (
        FaultInjectingStore(any_store, latency=0)
        if isinstance(any_store, InMemoryEventStore)
        else any_store
    )
    done = asyncio.Event()
    reader = asyncio.create_task(_tail(store, done))
    conflicts = await asyncio.gather(*(_writer(store, w, seed=w) for w in range(WRITERS)))
    done.set()
    seen = await reader

    final = [(e.global_position, str(e.event_id)) for e in await store.read_all()]
    assert seen == final
    assert [p for p, _ in final] == list(range(1, len(final) + 1))
    assert len(final) >= WRITERS * APPENDS_PER_WRITER
    assert sum(conflicts) > 0, "writers must really race for the test to mean anything"
