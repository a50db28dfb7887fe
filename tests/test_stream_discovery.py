"""Streams discovered at run time: bounded per execution, folded without starving
other tasks."""

from __future__ import annotations

import asyncio
import itertools
import pickle
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from eventcore import (
    Codec,
    Command,
    EventMetadata,
    InMemoryEventStore,
    StreamId,
    TooManyStreams,
    ValidationError,
    execute,
)
from eventcore.store import EventStore
from eventcore.types import AppendRequest

codec = Codec()


@codec.register("test.Pointer")
@dataclass(frozen=True)
class Pointer:
    """Names the next stream of a chain."""

    next: str


RUNAWAY = 5_000  # far past any limit: reaching it means nothing stopped the resolver


@dataclass(frozen=True)
class Chase(Command[int, Pointer]):
    """Its resolver names a stream never seen before every time it is asked."""

    start: str
    asked: itertools.count[int] = field(default_factory=itertools.count)

    def streams(self) -> list[str]:
        return [self.start]

    def initial_state(self) -> int:
        return 0

    def apply(self, state: int, stream_id: StreamId, event: Pointer) -> int:
        return state + 1

    def resolve_streams(self, state: int) -> list[str]:
        n = next(self.asked)
        if n > RUNAWAY:  # keeps this test from hanging where no limit exists
            raise AssertionError(f"the resolver was asked {n} times: nothing bounds it")
        return [f"chase-{n}"]

    def handle(self, state: int) -> list[tuple[str, Pointer]]:
        return [(self.start, Pointer("chase-0"))]


@dataclass(frozen=True)
class ShortChase(Chase):
    max_streams: ClassVar[int] = 10


async def test_a_resolver_that_keeps_naming_new_streams_is_stopped_at_the_limit(
    any_store: EventStore,
) -> None:
    with pytest.raises(TooManyStreams) as caught:
        await execute(any_store, Chase("start"), codec=codec)
    error = caught.value
    assert error.limit == 1000
    assert error.command == "Chase"
    assert error.last_streams[-1] == "chase-999"
    assert "Chase named more than its max_streams=1000 streams" in str(error)
    assert "'chase-999'" in str(error)
    assert await any_store.read_all() == [], "nothing is written"


async def test_a_command_class_sets_its_own_stream_limit(any_store: EventStore) -> None:
    with pytest.raises(TooManyStreams, match=r"max_streams=10 .*'chase-9'"):
        await execute(any_store, ShortChase("start"), codec=codec)


@dataclass(frozen=True)
class Declares(Command[int, Pointer]):
    names: tuple[str, ...]
    max_streams: ClassVar[int] = 3

    def streams(self) -> list[str]:
        return list(self.names)

    def initial_state(self) -> int:
        return 0

    def apply(self, state: int, stream_id: StreamId, event: Pointer) -> int:
        return state

    def handle(self, state: int) -> list[tuple[str, Pointer]]:
        return [(self.names[0], Pointer("x"))]


async def test_declared_streams_count_toward_the_limit(any_store: EventStore) -> None:
    result = await execute(any_store, Declares(("a", "b", "c")), codec=codec)
    assert result.events_written == 1
    with pytest.raises(TooManyStreams, match="max_streams=3"):
        await execute(any_store, Declares(("a", "b", "c", "d")), codec=codec)


def test_too_many_streams_survives_pickling() -> None:
    error = TooManyStreams("Chase", 10, ["a", "b"])
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.command, copy.limit, copy.last_streams) == ("Chase", 10, ("a", "b"))
    assert str(copy) == str(error)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10", None])
def test_a_max_streams_that_is_not_a_positive_int_is_refused_at_class_definition(
    bad: object,
) -> None:
    with pytest.raises(ValidationError, match=f"Bad.max_streams must be an int >= 1, got {bad!r}"):

        class Bad(Chase):
            max_streams = bad  # type: ignore[assignment]


# -- folding yields to the event loop --------------------------------------------------


@dataclass(frozen=True)
class Walk(Command[tuple[int, str | None], Pointer]):
    """Follows a chain of streams, each naming the next one in its events."""

    start: str
    seen: list[int]  # the ticker's count when handle ran
    ticks: list[int]
    max_streams: ClassVar[int] = 100

    def streams(self) -> list[str]:
        return [self.start]

    def initial_state(self) -> tuple[int, str | None]:
        return (0, None)

    def apply(
        self, state: tuple[int, str | None], stream_id: StreamId, event: Pointer
    ) -> tuple[int, str | None]:
        return (state[0] + 1, event.next)

    def resolve_streams(self, state: tuple[int, str | None]) -> list[str]:
        return [state[1]] if state[1] else []

    def handle(self, state: tuple[int, str | None]) -> list[tuple[str, Pointer]]:
        self.seen.append(self.ticks[0])
        return []


async def test_a_long_fold_on_the_memory_store_lets_other_tasks_run() -> None:
    store = InMemoryEventStore()
    links, events_each = 50, 40
    for n in range(links):
        stream = StreamId(f"link-{n}")
        target = f"link-{n + 1}" if n + 1 < links else ""
        events = [
            codec.new_event(stream, Pointer(target), EventMetadata()) for _ in range(events_each)
        ]
        await store.append(AppendRequest.create({stream: 0}, events))

    ticks = [0]
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            ticks[0] += 1
            await asyncio.sleep(0)

    running = asyncio.create_task(ticker())
    seen: list[int] = []
    try:
        await execute(store, Walk("link-0", seen, ticks), codec=codec, fold_page_size=10)
    finally:
        stop.set()
        await running
    assert len(seen) == 1
    assert seen[0] > 0, "the fold never let the other task run"
