"""Property tests: append invariants against a model, executor invariants."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventcore import InMemoryEventStore, RetryPolicy, StreamId, VersionConflict
from eventcore.store import EventStore
from eventcore.testing.faults import FaultInjectingStore
from eventcore.types import AppendRequest, NewEvent
from tests.bank_checks import check_bank_invariants, open_accounts, run_transfers
from tests.conftest import open_store

STREAMS = ["s-a", "s-b", "s-c", "s-d"]

# One append: for each participating stream, a version offset from the true
# current version (0 = correct, else stale/ahead) and how many events to write.
participant = st.tuples(st.sampled_from(STREAMS), st.integers(-1, 1), st.integers(0, 3))
append_op = st.lists(participant, min_size=1, max_size=3, unique_by=lambda p: p[0])


async def _apply_ops(store: EventStore, ops: list[list[tuple[str, int, int]]]) -> None:
    model: dict[str, list[str]] = {s: [] for s in STREAMS}
    log: list[str] = []
    for n, op in enumerate(ops):
        expected = {s: max(0, len(model[s]) + offset) for s, offset, _ in op}
        events = [
            NewEvent(StreamId(s), "t", f'{{"op":{n},"i":{i}}}'.encode())
            for s, _, count in op
            for i in range(count)
        ]
        request = AppendRequest.create(expected, events)
        should_succeed = all(expected[s] == len(model[s]) for s in expected)
        if not should_succeed:
            with pytest.raises(VersionConflict) as caught:
                await store.append(request)
            conflict = caught.value
            assert conflict.expected == expected[conflict.stream_id]
            assert conflict.actual == len(model[conflict.stream_id])
            continue
        result = await store.append(request)
        for event in events:
            model[event.stream_id].append(event.payload.decode())
            log.append(event.payload.decode())
        assert result.positions == tuple(range(len(log) - len(events) + 1, len(log) + 1))
        assert dict(result.stream_versions) == {s: len(model[s]) for s in expected}

    stored = await store.read_all()
    assert [e.payload.decode() for e in stored] == log
    assert [e.global_position for e in stored] == list(range(1, len(log) + 1))
    for stream, payloads in model.items():
        recorded = await store.read_stream(stream)
        assert [e.payload.decode() for e in recorded] == payloads
        assert [e.stream_version for e in recorded] == list(range(1, len(payloads) + 1))
        assert await store.stream_version(stream) == len(payloads)


@settings(max_examples=150, deadline=None)
@given(st.lists(append_op, max_size=12))
def test_memory_appends_match_the_model(ops: list[list[tuple[str, int, int]]]) -> None:
    asyncio.run(_apply_ops(InMemoryEventStore(), ops))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(append_op, max_size=12))
def test_sqlite_appends_match_the_model(ops: list[list[tuple[str, int, int]]]) -> None:
    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            store = await open_store("sqlite", Path(tmp))
            try:
                await _apply_ops(store, ops)
            finally:
                await store.close()

    asyncio.run(run())


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    accounts=st.integers(2, 6),
    transfers=st.integers(1, 40),
    latency=st.sampled_from([0.0, 0.0005]),
)
def test_concurrent_transfers_conserve_money_under_any_interleaving(
    seed: int, accounts: int, transfers: int, latency: float
) -> None:
    async def run() -> None:
        store = FaultInjectingStore(InMemoryEventStore(), latency=latency)
        names = await open_accounts(store, accounts)
        retry = RetryPolicy.exponential(max_retries=6, base_delay=0.0005)
        outcomes = await run_transfers(store, names, transfers, seed, retry)
        await check_bank_invariants(store, names, outcomes)

    asyncio.run(run())
