"""Snapshots: a long stream's fold starts from its snapshot and reads only the tail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from eventcore import (
    AppendRequest,
    Codec,
    Command,
    EncodingError,
    EventMetadata,
    StreamId,
    ValidationError,
    execute,
)
from eventcore.store import EventStore, SnapshotStore
from eventcore.testing.faults import FaultInjectingStore
from eventcore.types import Snapshot

codec = Codec()


@codec.register("test.Tick")
@dataclass(frozen=True)
class Tick:
    n: int


@dataclass(frozen=True)
class Tally:
    count: int = 0
    total: int = 0


@dataclass(frozen=True)
class Count(Command[Tally, Tick]):
    """Reads a stream, writes one Tick carrying the running total."""

    stream: str
    snapshot_every: ClassVar[int] = 1000
    snapshot_name: ClassVar[str | None] = "test.Count"
    state_type: ClassVar[Any] = Tally

    def streams(self) -> list[str]:
        return [self.stream]

    def initial_state(self) -> Tally:
        return Tally()

    def apply(self, state: Tally, stream_id: StreamId, event: Tick) -> Tally:
        return Tally(state.count + 1, state.total + event.n)

    def handle(self, state: Tally) -> list[tuple[str, Tick]]:
        return [(self.stream, Tick(state.total % 1000))]


class RecordingStore(FaultInjectingStore):
    def __init__(self, inner: EventStore) -> None:
        super().__init__(inner)
        self.reads: list[dict[str, int]] = []

    async def read_streams(self, stream_ids: Any, **kwargs: Any) -> Any:
        self.reads.append(dict(kwargs["from_versions"]))
        return await super().read_streams(stream_ids, **kwargs)


async def _fill(store: EventStore, stream: str, count: int) -> None:
    sid = StreamId(stream)
    for start in range(0, count, 10_000):
        batch = [
            codec.new_event(sid, Tick(n), EventMetadata())
            for n in range(start, min(count, start + 10_000))
        ]
        await store.append(AppendRequest.create({sid: start}, batch))


async def _expected_total(store: EventStore, stream: str) -> int:
    return sum(codec.decode(e).n for e in await store.read_stream(stream))


@pytest.mark.slow
async def test_a_100k_event_stream_with_a_snapshot_reads_only_the_tail(
    any_store: EventStore,
) -> None:
    assert isinstance(any_store, SnapshotStore)
    await _fill(any_store, "long", 100_000)
    store = RecordingStore(any_store)
    await execute(store, Count("long"), codec=codec)  # folds everything, snapshots it
    snapshot = await any_store.load_snapshot('test.Count:["long"]')
    assert snapshot is not None
    assert snapshot.versions == (("long", 100_000),)

    await _fill_more(any_store, "long", 5)
    store.reads.clear()
    await execute(store, Count("long"), codec=codec)
    assert store.reads == [{"long": 100_001}], "only the events after the snapshot are read"
    tail = await any_store.read_stream("long", from_version=100_007)
    (last,) = [codec.decode(e) for e in tail]
    assert last == Tick((await _expected_total(any_store, "long") - last.n) % 1000)


async def _fill_more(store: EventStore, stream: str, count: int) -> None:
    version = await store.stream_version(stream)
    sid = StreamId(stream)
    events = [codec.new_event(sid, Tick(1), EventMetadata()) for _ in range(count)]
    await store.append(AppendRequest.create({sid: version}, events))


async def test_no_snapshot_is_taken_before_enough_events_were_replayed(
    any_store: EventStore,
) -> None:
    assert isinstance(any_store, SnapshotStore)
    await _fill(any_store, "short", 10)
    await execute(any_store, Count("short"), codec=codec)
    assert await any_store.load_snapshot('test.Count:["short"]') is None


async def test_a_snapshot_that_no_longer_decodes_is_ignored(any_store: EventStore) -> None:
    assert isinstance(any_store, SnapshotStore)
    await _fill(any_store, "s", 3)
    stale = Snapshot('test.Count:["s"]', ((StreamId("s"), 2),), b'"an older state shape"')
    await any_store.save_snapshot(stale)
    await execute(any_store, Count("s"), codec=codec)
    (last,) = [codec.decode(e) for e in await any_store.read_stream("s", from_version=4)]
    assert last == Tick(0 + 1 + 2)  # folded from the start, not from the bad snapshot


@dataclass(frozen=True)
class Misconfigured(Count):
    snapshot_name: ClassVar[str | None] = None


@dataclass(frozen=True)
class Unencodable(Count):
    snapshot_every: ClassVar[int] = 1

    def initial_state(self) -> Any:
        return object()

    def apply(self, state: Any, stream_id: StreamId, event: Tick) -> Any:
        return state

    def handle(self, state: Any) -> list[tuple[str, Tick]]:
        return []


async def test_snapshots_need_a_name_and_a_state_type(any_store: EventStore) -> None:
    with pytest.raises(ValidationError, match="snapshot_name"):
        await execute(any_store, Misconfigured("s"), codec=codec)


async def test_a_state_that_cannot_be_encoded_is_a_clear_error(any_store: EventStore) -> None:
    await _fill(any_store, "s", 2)
    with pytest.raises(EncodingError, match="cannot snapshot the state of Unencodable"):
        await execute(any_store, Unencodable("s"), codec=codec)


@dataclass(frozen=True)
class NamedTypeAsString(Count):
    state_type: ClassVar[Any] = "Tally"


async def test_a_state_type_that_is_not_a_class_is_refused(any_store: EventStore) -> None:
    with pytest.raises(ValidationError, match="state_type must be the state's class, got 'Tally'"):
        await execute(any_store, NamedTypeAsString("s"), codec=codec)
