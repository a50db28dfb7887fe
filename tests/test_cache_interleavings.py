"""Cached executions give what uncached ones give, under random interleavings of
several tasks (with caches of their own or shared) and a writer that bypasses
every cache, on the memory and SQLite stores."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventcore import BusinessRuleViolation, InMemoryEventStore, RetryPolicy, execute
from eventcore.backends.sqlite import SQLiteEventStore
from eventcore.cache import StateCache
from eventcore.demo.bank import Deposit, MoneyDeposited, Transfer, bank_codec
from eventcore.store import EventStore
from eventcore.testing.faults import FaultInjectingStore

FAST = RetryPolicy.fixed(0, 50)
ACCOUNTS = 4
# Actors 0 and 1 share a cache, actor 2 has its own, actor 3 uses none (another
# process, say): each one's writes make the others' entries stale.
ACTORS = 4

Op = tuple[int, str, int, int, int]  # actor, kind, source, target, amount
operation = st.tuples(
    st.integers(0, ACTORS - 1),
    st.sampled_from(["deposit", "transfer", "transfer"]),
    st.integers(0, ACCOUNTS - 1),
    st.integers(0, ACCOUNTS - 1),
    st.integers(1, 60),
)
operations = st.lists(operation, max_size=40)


@asynccontextmanager
async def _store(kind: str) -> AsyncIterator[EventStore]:
    if kind == "memory":
        yield InMemoryEventStore()
        return
    with tempfile.TemporaryDirectory(prefix="eventcore-test-") as directory:
        store = await SQLiteEventStore.open(Path(directory) / "events.sqlite")
        try:
            yield store
        finally:
            await store.close()


@dataclass(frozen=True, slots=True)
class RacingDeposit(Deposit):
    """The bank's deposit, without turns: tasks sharing a cache race on a stream."""

    takes_turns: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class RacingTransfer(Transfer):
    takes_turns: ClassVar[bool] = False


def _command(kind: str, source: int, target: int, amount: int, *, turns: bool = True) -> Any:
    if kind == "deposit" or source == target:
        return (Deposit if turns else RacingDeposit)(f"acc-{source}", amount)
    return (Transfer if turns else RacingTransfer)(f"acc-{source}", f"acc-{target}", amount)


def _caches(cached: bool) -> list[StateCache | None]:
    if not cached:
        return [None] * ACTORS
    shared = StateCache(verify=0.5)
    return [shared, shared, StateCache(verify=0.5), None]


async def _outcome(run: Awaitable[Any]) -> str:
    try:
        result = await run
    except BusinessRuleViolation as refusal:
        return f"refused: {refusal}"
    return f"written at {result.positions}"


async def _stored(store: EventStore) -> list[tuple[str, int, str, bytes]]:
    return [
        (e.stream_id, e.stream_version, e.event_type, bytes(e.payload))
        for e in await store.read_all()
    ]


async def _in_turns(kind: str, ops: list[Op], cached: bool) -> tuple[list[str], list[Any]]:
    """One task per actor; the tasks take turns in the order ``ops`` gives, one
    command at a time, so a cached and an uncached run meet the same history."""
    async with _store(kind) as store:
        caches = _caches(cached)
        turns = [asyncio.Event() for _ in ops]
        finished = [asyncio.Event() for _ in ops]
        outcomes: list[str] = [""] * len(ops)

        async def actor(me: int) -> None:
            for n, (who, kind_, source, target, amount) in enumerate(ops):
                if who != me:
                    continue
                await turns[n].wait()
                command = _command(kind_, source, target, amount)
                outcomes[n] = await _outcome(
                    execute(store, command, codec=bank_codec, cache=caches[me], retry=FAST)
                )
                finished[n].set()

        async with asyncio.TaskGroup() as group:
            for me in range(ACTORS):
                group.create_task(actor(me))
            for n in range(len(ops)):
                turns[n].set()
                await finished[n].wait()
        return outcomes, await _stored(store)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_tasks_taking_turns_get_the_same_outcomes_with_caches_as_without(kind: str) -> None:
    @settings(
        max_examples=120 if kind == "memory" else 25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(operations)
    def check(ops: list[Op]) -> None:
        async def both() -> None:
            assert await _in_turns(kind, ops, cached=True) == await _in_turns(
                kind, ops, cached=False
            )

        asyncio.run(both())

    check()


def _balance_at(events: list[tuple[str, int, str, bytes]], account: str) -> int:
    total = 0
    for stream, _, event_type, payload in events:
        if stream != account:
            continue
        event = bank_codec.decode_payload(event_type, payload, stream, 0)
        total += event.amount if isinstance(event, MoneyDeposited) else -event.amount
    return total


async def _replayed(commands: list[Any]) -> list[tuple[str, int, str, bytes]]:
    """The log the committed commands give when run one after another, uncached."""
    store = InMemoryEventStore()
    for command in commands:
        await execute(store, command, codec=bank_codec)
    return await _stored(store)


async def _overlapping(kind: str, ops: list[Op], wave: int, turns: bool) -> None:
    """Commands ``wave`` at a time, overlapping: the committed ones, run uncached
    one after another in commit order, write the same log, and every refusal was
    true of the log at some moment while it ran. With ``turns``, the commands
    take turns on their streams (the tasks sharing a cache wait for each other;
    the others still race); without, every task races."""
    async with _store(kind) as store:
        wrapped = FaultInjectingStore(store, latency=0)  # every call yields: they overlap
        caches = _caches(True)
        committed: list[tuple[int, Any]] = []
        refused: list[tuple[Any, int, int]] = []

        async def one(who: int, command: Any) -> None:
            started = await store.head_position()
            try:
                result = await execute(
                    wrapped, command, codec=bank_codec, cache=caches[who], retry=FAST
                )
            except BusinessRuleViolation:
                refused.append((command, started, await store.head_position()))
                return
            committed.append((result.positions[0], command))

        for start in range(0, len(ops), wave):
            await asyncio.gather(
                *(one(op[0], _command(*op[1:], turns=turns)) for op in ops[start : start + wave])
            )
        log = await _stored(store)
        in_order = [command for _, command in sorted(committed, key=lambda c: c[0])]
        assert await _replayed(in_order) == log
        for transfer, started, ended in refused:
            balances = [
                _balance_at(log[:head], transfer.source) for head in range(started, ended + 1)
            ]
            assert min(balances) < transfer.amount, f"{transfer} was refused with enough money"


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_overlapping_cached_commands_are_equivalent_to_uncached_ones_run_in_commit_order(
    kind: str,
) -> None:
    @settings(
        max_examples=120 if kind == "memory" else 25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(operations, st.integers(2, 6), st.booleans())
    def check(ops: list[Op], wave: int, turns: bool) -> None:
        asyncio.run(_overlapping(kind, ops, wave, turns))

    check()
