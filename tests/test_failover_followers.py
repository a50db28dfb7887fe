"""What follows the log survives a Patroni failover: LISTEN/NOTIFY wake-ups, a
tailing reader, and an exactly-once projection runner with its lease.

Two ways the primary goes: ``kill`` (its postmaster killed with SIGKILL: its
connections drop) and ``freeze`` (Patroni and PostgreSQL stopped with SIGSTOP, as
on a machine that hangs: its connections stay open and answer nothing, and the
standby takes over once the leader lock lapses). One cluster of its own each
(tests/patroni_cluster.py), one run each: deposits go on meanwhile; the tests
check what the run saw. Opt-in: EVENTCORE_TEST_SERVER_RESTARTS=1.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import pytest

from eventcore import StoreUnavailable, execute, follow
from eventcore.backends.postgres import PostgresEventStore
from eventcore.demo.bank import Deposit, bank_codec
from eventcore.projection import (
    ExactlyOnceRunner,
    ProjectionState,
    RunnerOptions,
    TransactionalProjection,
)
from eventcore.store import ProjectionTransaction
from eventcore.types import RecordedEvent
from tests import patroni_cluster
from tests.failover_load import DEADLINE, SCHEMA, store_config

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

HOLDER = "runner-1"
BEFORE_KILL = 30
AFTER_KILL = 30
TABLE = f'"{SCHEMA}".handled'


class Handled(TransactionalProjection):
    """One row per event handled, with no key: an event applied twice shows twice."""

    name = "handled"

    async def handle(self, event: RecordedEvent, tx: ProjectionTransaction) -> None:
        await tx.execute(f"INSERT INTO {TABLE} (position) VALUES ($1)", event.global_position)

    async def reset(self, tx: ProjectionTransaction) -> None:
        await tx.execute(f"DELETE FROM {TABLE}")


@dataclass(frozen=True)
class Seen:
    head: int
    followed: list[int]
    handled: list[int]  # the projection's rows on the new primary, in insertion order
    lease_holder: str | None
    runner_state: ProjectionState
    runner_error: BaseException | None
    woken: bool  # a wait for appends ended on a notification from the new primary


async def _deposit(store: PostgresEventStore, n: int) -> None:
    """One deposit, retried on StoreUnavailable under its command id."""
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            await execute(store, Deposit(f"acc-{n % 5}", 1), codec=bank_codec, command_id=f"d{n}")
            return
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _until(check: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {DEADLINE} s waiting for {what}")
        await asyncio.sleep(0.05)


async def _woken_by_a_notification(store: PostgresEventStore, next_deposit: int) -> bool:
    """Whether a wait for appends ends on the next deposit's notification, well
    before its ``max_wait``: the store listens on the promoted primary."""
    head = await store.head_position()
    waiter = asyncio.create_task(store.wait_for_append(after=head, max_wait=4 * DEADLINE))
    await _deposit(store, next_deposit)
    done, _ = await asyncio.wait({waiter}, timeout=DEADLINE)
    waiter.cancel()
    return waiter in done


async def _fetch(url: str, sql: str) -> list[asyncpg.Record]:
    """One statement on a connection of its own (a multi-host DSN reaches the primary)."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


async def _lease_holder(url: str) -> str | None:
    async with await PostgresEventStore.open(store_config(url), migrate=False) as store:
        return await store.lease_holder(Handled.name)


async def _deposits(store: PostgresEventStore, first: int, count: int) -> None:
    for n in range(first, first + count):
        await _deposit(store, n)


async def _run(cluster: patroni_cluster.PatroniCluster, how: str) -> Seen:
    # Short timeouts: against a hung primary, each call waits them out.
    config = store_config(cluster.dsn, command_timeout=5.0, connect_timeout=2.0)
    fail = cluster.kill_primary_postmaster if how == "kill" else cluster.freeze_primary
    async with await PostgresEventStore.open(config) as store:
        await _fetch(cluster.dsn, f"CREATE TABLE {TABLE} (position bigint NOT NULL)")
        followed: list[int] = []

        async def follower() -> None:
            async for event in follow(store, poll_interval=0.5, max_retry_time=DEADLINE):
                followed.append(event.global_position)

        options = RunnerOptions(max_retry_time=DEADLINE)
        runner = ExactlyOnceRunner(store, Handled(), options=options, holder=HOLDER)
        runner.start()
        reader = asyncio.create_task(follower())
        try:
            await _deposits(store, 0, BEFORE_KILL)
            await asyncio.wait_for(runner.caught_up(), DEADLINE)
            await _until(lambda: len(followed) >= BEFORE_KILL, "the follower")
            failed = fail()
            # Deposits go on through the failover, each retried until it commits.
            await _deposits(store, BEFORE_KILL, AFTER_KILL)
            promoted = await cluster.wait_for_new_leader(failed)
            woken = await _woken_by_a_notification(store, BEFORE_KILL + AFTER_KILL)
            head = await store.head_position()
            await asyncio.wait_for(runner.caught_up(head), DEADLINE)
            await _until(lambda: reader.done() or len(followed) >= head, "the follower")
            rows = await _fetch(promoted.url, f"SELECT position FROM {TABLE}")
            return Seen(
                head,
                list(followed),
                [int(row[0]) for row in rows],
                await _lease_holder(promoted.url),
                runner.state,
                runner.error,
                woken,
            )
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await runner.stop()


@pytest.fixture(scope="module", params=["kill", "freeze"])
def seen(request: pytest.FixtureRequest) -> Iterator[Seen]:
    """One run on a cluster of its own, on a loop of its own (a run outlasts a test)."""
    for cluster in patroni_cluster.cluster_or_skip():
        yield asyncio.run(_run(cluster, request.param))


def test_the_listener_listens_again_on_the_promoted_primary(seen: Seen) -> None:
    assert seen.woken


def test_a_follower_keeps_receiving_every_event_once_across_a_failover(seen: Seen) -> None:
    assert seen.followed == list(range(1, seen.head + 1))


def test_a_projection_runner_keeps_its_lease_and_handles_every_event_once(seen: Seen) -> None:
    assert seen.runner_error is None
    assert seen.runner_state is ProjectionState.LIVE
    assert seen.lease_holder == HOLDER
    assert sorted(seen.handled) == list(range(1, seen.head + 1))
