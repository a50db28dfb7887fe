"""The group reader: a lone read goes at once from its caller's task; reads made
while one is in flight share the next query; each caller gets its own streams,
its own exception, and a cancelled caller never holds the others up."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from eventcore.backends.postgres._group_read import GroupReader
from eventcore.errors import StoreUnavailable
from eventcore.types import RecordedEvent, StreamId


class _FakeReads:
    """Stands in for the store's two reads. Each call waits for its own gate when
    ``gated``; every call is recorded with the streams it was asked for."""

    def __init__(self, *, gated: bool = False) -> None:
        self.gated = gated
        self.gates: list[asyncio.Event] = []
        self.alone: list[list[str]] = []
        self.queries: list[list[str]] = []
        self.under_way = 0
        self.most_under_way = 0
        self.fail_with: Exception | None = None
        self.called = asyncio.Event()
        self._calls = asyncio.Condition()

    async def wait_for_gates(self, count: int) -> None:
        """Until ``count`` calls have reached their gates."""
        async with self._calls:
            await asyncio.wait_for(self._calls.wait_for(lambda: len(self.gates) >= count), 5)

    async def _wait(self) -> None:
        self.under_way += 1
        self.most_under_way = max(self.most_under_way, self.under_way)
        self.called.set()
        try:
            if self.gated:
                gate = asyncio.Event()
                self.gates.append(gate)
                async with self._calls:
                    self._calls.notify_all()
                await gate.wait()
            if self.fail_with is not None:
                raise self.fail_with
        finally:
            self.under_way -= 1

    async def read_now(
        self, streams: list[StreamId], firsts: list[int], limit: int | None
    ) -> dict[str, list[RecordedEvent]]:
        self.alone.append(list(streams))
        await self._wait()
        return {stream: [] for stream in streams}

    async def fetch(
        self, streams: Sequence[str], firsts: list[int], limit: int | None
    ) -> dict[int, list[RecordedEvent]]:
        self.queries.append(list(streams))
        await self._wait()
        # Slot n gets n events' worth of markers: enough to tell slots apart.
        return {
            slot: [_marker(stream, first)]
            for slot, (stream, first) in enumerate(zip(streams, firsts, strict=True), 1)
        }


def _marker(stream: str, first: int) -> RecordedEvent:
    # A stand-in that only tells slots apart: compared, never used as an event.
    return (stream, first)  # type: ignore[return-value]


def _reader(reads: _FakeReads, max_in_flight: int = 4) -> GroupReader:
    return GroupReader(reads.fetch, reads.read_now, max_in_flight=max_in_flight)


async def _read(
    reader: GroupReader, *streams: str, first: int = 1
) -> dict[str, list[RecordedEvent]]:
    return await reader.read([StreamId(s) for s in streams], [first] * len(streams), None)


async def _one_read_under_way(
    max_in_flight: int = 4,
) -> tuple[_FakeReads, GroupReader, asyncio.Future[dict[str, list[RecordedEvent]]]]:
    """A reader whose first read, of stream "first", waits at its gate."""
    reads = _FakeReads(gated=True)
    reader = _reader(reads, max_in_flight)
    first = asyncio.ensure_future(_read(reader, "first"))
    await reads.called.wait()
    return reads, reader, first


async def test_a_lone_read_goes_at_once_by_the_stores_plain_read() -> None:
    reads = _FakeReads()
    reader = _reader(reads)
    for _ in range(3):
        assert await _read(reader, "a", "b") == {"a": [], "b": []}
    assert reads.alone == [["a", "b"]] * 3
    assert reads.queries == []
    assert (reader.alone, reader.queries) == (3, 0)


async def test_reads_made_while_one_is_in_flight_share_the_next_query() -> None:
    reads, reader, first = await _one_read_under_way()
    others = [asyncio.ensure_future(_read(reader, f"s{n}", first=n + 1)) for n in range(10)]
    await reads.wait_for_gates(2)
    assert reads.queries == [[f"s{n}" for n in range(10)]]  # one query for all ten
    for gate in reads.gates:
        gate.set()
    assert await first == {"first": []}
    for n, other in enumerate(others):
        assert await other == {f"s{n}": [_marker(f"s{n}", n + 1)]}  # its own slot, no other's


async def test_no_more_than_max_in_flight_reads_are_under_way() -> None:
    reads = _FakeReads(gated=True)
    reader = _reader(reads, max_in_flight=2)
    callers = [asyncio.ensure_future(_read(reader, f"s{n}")) for n in range(6)]
    await reads.wait_for_gates(2)
    await asyncio.sleep(0.01)
    assert reads.under_way == 2, "a third would exceed max_in_flight"
    while not all(c.done() for c in callers):
        for gate in reads.gates:
            gate.set()
        await asyncio.sleep(0)
    assert reads.most_under_way == 2
    assert sorted(s for call in [*reads.alone, *reads.queries] for s in call) == sorted(
        f"s{n}" for n in range(6)
    )


async def test_each_caller_of_a_failed_query_gets_an_exception_of_its_own() -> None:
    reads, reader, first = await _one_read_under_way()
    cause = StoreUnavailable("the connection was lost")
    reads.fail_with = cause
    queued = [asyncio.ensure_future(_read(reader, f"s{n}")) for n in range(3)]
    await reads.wait_for_gates(2)
    for gate in reads.gates:
        gate.set()
    raised = []
    for caller in [first, *queued]:
        with pytest.raises(StoreUnavailable, match="the connection was lost") as info:
            await caller
        raised.append(info.value)
    assert raised[0] is cause  # the lone read raised it itself
    shared = raised[1:]
    assert len({id(exc) for exc in shared}) == 3
    assert all(exc.__cause__ is cause for exc in shared)


async def test_a_queued_caller_cancelled_is_dropped_and_the_rest_are_answered() -> None:
    reads, reader, first = await _one_read_under_way(max_in_flight=1)
    gone = asyncio.ensure_future(_read(reader, "gone"))
    kept = asyncio.ensure_future(_read(reader, "kept"))
    await asyncio.sleep(0)
    gone.cancel()
    reads.gates[0].set()
    await first
    await reads.wait_for_gates(2)
    assert reads.queries == [["kept"]]
    reads.gates[1].set()
    assert await kept == {"kept": [_marker("kept", 1)]}


async def test_a_lone_read_cancelled_frees_its_place() -> None:
    reads, reader, first = await _one_read_under_way(max_in_flight=1)
    queued = asyncio.ensure_future(_read(reader, "queued"))
    await asyncio.sleep(0)
    first.cancel()
    await reads.wait_for_gates(2)  # the queued read goes once the cancelled one is gone
    reads.gates[1].set()
    assert await asyncio.wait_for(queued, timeout=5) == {"queued": [_marker("queued", 1)]}
    reads.gated = False
    assert await _read(reader, "later") == {"later": []}  # alone again: nothing in flight


async def test_a_driver_error_reaches_each_caller_as_a_failed_read_of_its_own() -> None:
    reads, reader, first = await _one_read_under_way()
    cause = ConnectionResetError("reset by peer")  # escaped the store's mapping
    reads.fail_with = cause
    queued = [asyncio.ensure_future(_read(reader, f"s{n}")) for n in range(2)]
    await reads.wait_for_gates(2)
    for gate in reads.gates:
        gate.set()
    with pytest.raises(ConnectionResetError):
        await first  # the store's plain read raises what it raises
    raised = []
    for caller in queued:
        with pytest.raises(StoreUnavailable, match="failed to read: ConnectionResetError") as info:
            await caller
        raised.append(info.value)
    assert raised[0] is not raised[1]
    assert all(exc.__cause__ is cause for exc in raised)
