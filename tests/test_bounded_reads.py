"""The store wrappers pass the bounded reads through: ``read_all(stop=...)``,
``iter_all(stop=...)`` and ``read_stream_tail`` (the behaviour itself is in the
contract suite, eventcore.testing.contract._bounded)."""

from __future__ import annotations

import pytest

from eventcore import StoreUnavailable
from eventcore.observe import Observer
from eventcore.observed_store import observe_store
from eventcore.store import EventStore
from eventcore.testing.contract import append_new, collect
from eventcore.testing.faults import FaultInjectingStore


class _Operations(Observer):
    def __init__(self) -> None:
        self.names: list[str] = []

    def store_operation(self, operation: str, seconds: float, error: Exception | None) -> None:
        self.names.append(operation)


async def _bounded_reads(store: EventStore) -> tuple[list[int], list[int], list[int]]:
    """Positions read with stop=2 (read_all, iter_all) and the stream versions of a
    two-event tail, through ``store``."""
    some = await store.read_all(stop=2)
    walked = await collect(store.iter_all(page_size=1, stop=2))
    tail = await store.read_stream_tail("s", count=2)
    return (
        [e.global_position for e in some],
        [e.global_position for e in walked],
        [e.stream_version for e in tail],
    )


async def test_the_observed_store_passes_bounded_reads_through_and_times_them(
    any_store: EventStore,
) -> None:
    await append_new(any_store, "s", 4)
    observer = _Operations()
    observed = observe_store(any_store, observer)
    assert await _bounded_reads(observed) == ([1, 2], [1, 2], [3, 4])
    assert observer.names == ["read_all", "read_stream_tail"]  # iterators go untimed


async def test_the_fault_injecting_store_passes_bounded_reads_through(
    any_store: EventStore,
) -> None:
    await append_new(any_store, "s", 4)
    assert await _bounded_reads(FaultInjectingStore(any_store)) == ([1, 2], [1, 2], [3, 4])


async def test_an_injected_stream_read_failure_reaches_read_stream_tail(
    any_store: EventStore,
) -> None:
    await append_new(any_store, "s", 2)
    store = FaultInjectingStore(any_store)
    store.fail_next_reads(1)
    with pytest.raises(StoreUnavailable):
        await store.read_stream_tail("s")
    assert [e.stream_version for e in await store.read_stream_tail("s")] == [2]
