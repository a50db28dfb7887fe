"""Snapshots: a long stream's fold starts from its snapshot and reads only the tail."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from eventcore import (
    Codec,
    Command,
    EventMetadata,
    StateReuseRefused,
    StoreError,
    StreamId,
    ValidationError,
    execute,
)
from eventcore.store import EventStore, SnapshotStore
from eventcore.testing.faults import FaultInjectingStore
from eventcore.types import AppendRequest, Snapshot

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
    reuses_state: ClassVar[bool] = True
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
        self.reads: list[dict[str, int] | None] = []

    async def read_streams(self, stream_ids: Any, **kwargs: Any) -> Any:
        starts = kwargs.get("from_versions")  # None: every stream from its start
        self.reads.append(None if starts is None else dict(starts))
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


# -- settings are checked once, when the class is defined ----------------------------


def test_snapshots_need_a_name_at_class_definition() -> None:
    with pytest.raises(ValidationError, match="Misconfigured sets snapshot_every but no"):

        class Misconfigured(Count):
            snapshot_name: ClassVar[str | None] = None


def test_a_state_type_that_is_not_a_class_is_refused_at_class_definition() -> None:
    with pytest.raises(ValidationError, match="state_type must be the state's class, got 'Tally'"):

        class NamedTypeAsString(Count):
            state_type: ClassVar[Any] = "Tally"


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_a_snapshot_every_that_is_not_an_int_is_refused_at_class_definition(bad: object) -> None:
    with pytest.raises(ValidationError, match=f"snapshot_every must be an int >= 0, got {bad!r}"):

        class Bad(Count):
            snapshot_every = bad  # type: ignore[assignment]


def test_snapshots_are_refused_for_a_command_class_that_has_not_opted_in() -> None:
    with pytest.raises(StateReuseRefused) as caught:

        class Unsure(Count):
            reuses_state: ClassVar[bool] = False

    message = str(caught.value)
    assert "Unsure has not opted in to reused state" in message
    assert "reuses_state: ClassVar[bool] = True" in message


# -- a snapshot that cannot be taken or stored never fails the command -----------------


class SnapshotSaveFails(FaultInjectingStore):
    def __init__(self, inner: EventStore, error: Exception) -> None:
        super().__init__(inner)
        self.error = error
        self.saves = 0

    async def save_snapshot(self, snapshot: Snapshot) -> bool:
        self.saves += 1
        raise self.error


@pytest.mark.parametrize(
    "error", [StoreError("snapshots table is read-only"), RuntimeError("driver bug")]
)
async def test_a_failed_snapshot_save_does_not_fail_the_command(
    any_store: EventStore, error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    await _fill(any_store, "s", 3)
    store = SnapshotSaveFails(any_store, error)
    with caplog.at_level(logging.WARNING, logger="eventcore.execute"):
        result = await execute(store, Saves("s"), codec=codec)
    assert store.saves == 1
    assert result.events_written == 1
    (record,) = [r for r in caplog.records if r.name == "eventcore.execute"]
    assert record.name == "eventcore.execute"
    assert "could not store snapshot 'test.Count:" in record.getMessage()


@dataclass(frozen=True)
class Saves(Count):
    snapshot_every: ClassVar[int] = 1


async def test_a_state_that_cannot_be_encoded_does_not_fail_the_command_and_warns_once(
    any_store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:

    @dataclass(frozen=True)
    class Unencodable(Count):  # a class of its own per test: the warning is once per class
        snapshot_every: ClassVar[int] = 1

        def initial_state(self) -> Any:
            return object()

        def apply(self, state: Any, stream_id: StreamId, event: Tick) -> Any:
            return state

        def handle(self, state: Any) -> list[tuple[str, Tick]]:
            return [(self.stream, Tick(0))]

    await _fill(any_store, "s", 2)
    with caplog.at_level(logging.WARNING, logger="eventcore.execute"):
        for _ in range(3):
            result = await execute(any_store, Unencodable("s"), codec=codec)
            assert result.events_written == 1
    assert await any_store.stream_version("s") == 5
    (record,) = [r for r in caplog.records if r.name == "eventcore.execute"]
    assert "Unencodable (object): " in record.getMessage()
    assert await any_store.load_snapshot('test.Count:["s"]') is None  # type: ignore[attr-defined]
