"""Transfers under load while a Patroni primary's postmaster is killed.

Shared by tests/test_failover.py (which checks what happened) and
benchmarks/failover.py (which times the failover over several runs).

:func:`run_under_failover` opens accounts through the multi-host DSN, then runs
writer tasks executing transfers and a tailing reader (:func:`eventcore.follow`)
while it kills the primary's postmaster with SIGKILL. Each transfer has a
``command_id`` (its reference) and is retried on StoreUnavailable until it has a
definite outcome: committed (perhaps recognised as ``already_applied`` by a
retry, when the first attempt committed but its reply was lost), refused, or out
of conflict retries. The run ends once enough transfers committed after the
kill and the reader has reached the log's head.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from dataclasses import dataclass, field

from eventcore import (
    BusinessRuleViolation,
    ExecutionResult,
    RetriesExhausted,
    RetryPolicy,
    StoreUnavailable,
    execute,
    follow,
)
from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
from eventcore.demo.bank import Transfer, bank_codec
from eventcore.types import RecordedEvent
from tests.bank_checks import open_accounts
from tests.patroni_cluster import Node, PatroniCluster

SCHEMA = "failover"
ACCOUNTS = 12
WRITERS = 6
COMMITTED_BEFORE_KILL = 40
COMMITTED_AFTER_KILL = 40
DEADLINE = 120.0  # seconds for any one phase on a busy, shared machine
_RETRY = RetryPolicy.exponential(max_retries=20, base_delay=0.002)
_PAUSE_WHEN_UNAVAILABLE = 0.05


@dataclass
class Settled:
    """One transfer's definite outcome, after however many attempts."""

    transfer: Transfer
    result: ExecutionResult | None  # None: refused or out of conflict retries
    unavailable: int  # attempts that ended in StoreUnavailable
    last_attempt_started: float  # time.monotonic()
    finished: float


@dataclass
class FailoverRun:
    accounts: list[str]
    settled: list[Settled]
    followed: list[RecordedEvent]
    killed: Node
    promoted: Node
    killed_at: float
    promoted_at: float  # when the new leader was seen (polled every 0.2 s)
    other_errors: list[BaseException] = field(default_factory=list)

    @property
    def committed(self) -> list[Settled]:
        return [s for s in self.settled if s.result is not None]

    @property
    def kill_to_first_append(self) -> float:
        """From the kill to the first append that started after it and committed."""
        fresh = [
            s.finished
            for s in self.committed
            if s.last_attempt_started >= self.killed_at
            and s.result is not None
            and not s.result.already_applied
        ]
        return min(fresh) - self.killed_at


def store_config(dsn: str, **overrides: object) -> PostgresConfig:
    settings: dict[str, object] = {
        "schema": SCHEMA,
        "max_connections": WRITERS + 2,
        "min_connections": 2,
        "acquire_timeout": 30.0,
        "connect_timeout": 5.0,
        "command_timeout": 30.0,
        "application_name": "eventcore-failover",
    }
    settings.update(overrides)
    return PostgresConfig.development(dsn, **settings)


class _Load:
    def __init__(self, store: PostgresEventStore, accounts: list[str], seed: int) -> None:
        self._store = store
        self._accounts = accounts
        self._rng = random.Random(seed)
        self._numbers = itertools.count()
        self.settled: list[Settled] = []
        self.other_errors: list[BaseException] = []
        self.stop = asyncio.Event()

    def committed_since(self, moment: float) -> int:
        return sum(1 for s in self.settled if s.result is not None and s.finished >= moment)

    async def writer(self) -> None:
        while not self.stop.is_set():
            source, target = self._rng.sample(self._accounts, 2)
            reference = f"t{next(self._numbers)}"
            transfer = Transfer(source, target, self._rng.randint(1, 40), reference)
            try:
                self.settled.append(await self._settle(transfer))
            except Exception as exc:  # reported, and the test fails on it
                self.other_errors.append(exc)
                return

    async def _settle(self, transfer: Transfer) -> Settled:
        unavailable = 0
        deadline = time.monotonic() + DEADLINE
        while True:
            started = time.monotonic()
            try:
                result: ExecutionResult | None = await execute(
                    self._store,
                    transfer,
                    codec=bank_codec,
                    retry=_RETRY,
                    command_id=transfer.reference,
                )
            except (BusinessRuleViolation, RetriesExhausted):
                result = None
            except StoreUnavailable:
                # Outcome unknown: the same command id makes the retry safe.
                unavailable += 1
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(_PAUSE_WHEN_UNAVAILABLE)
                continue
            return Settled(transfer, result, unavailable, started, time.monotonic())


async def _wait_until(check: object, what: str, load: _Load) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():  # type: ignore[operator]
        if load.other_errors:
            raise load.other_errors[0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {DEADLINE} s waiting for {what}")
        await asyncio.sleep(0.05)


async def _follow_into(store: PostgresEventStore, seen: list[RecordedEvent]) -> None:
    async for event in follow(store, poll_interval=0.5, max_retry_time=DEADLINE):
        seen.append(event)


async def run_under_failover(
    cluster: PatroniCluster, seed: int = 1, *, freeze: bool = False
) -> FailoverRun:
    """Run the scenario on ``cluster`` (fresh, node0 leading); see the module's doc.
    ``freeze``: stop the primary with SIGSTOP instead (a hung machine), with short
    command and connect timeouts, since calls to it wait them out."""
    timeouts = {"command_timeout": 5.0, "connect_timeout": 2.0} if freeze else {}
    fail = cluster.freeze_primary if freeze else cluster.kill_primary_postmaster
    async with await PostgresEventStore.open(store_config(cluster.dsn, **timeouts)) as store:
        accounts = await open_accounts(store, ACCOUNTS)
        load = _Load(store, accounts, seed)
        followed: list[RecordedEvent] = []
        reader = asyncio.create_task(_follow_into(store, followed))
        writers = [asyncio.create_task(load.writer()) for _ in range(WRITERS)]
        try:
            await _wait_until(
                lambda: load.committed_since(0) >= COMMITTED_BEFORE_KILL, "load", load
            )
            killed = fail()
            killed_at = time.monotonic()
            promoted = await cluster.wait_for_new_leader(killed)
            promoted_at = time.monotonic()
            await _wait_until(
                lambda: load.committed_since(killed_at) >= COMMITTED_AFTER_KILL,
                "transfers after the failover",
                load,
            )
            load.stop.set()
            await asyncio.wait_for(asyncio.gather(*writers), DEADLINE)
            head = await store.head_position()
            await _wait_until(
                lambda: reader.done() or (followed and followed[-1].global_position >= head),
                "the reader to reach the head",
                load,
            )
            if reader.done():
                reader.result()  # raises what the reader failed with
        finally:
            load.stop.set()
            for task in (*writers, reader):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*writers, reader, return_exceptions=True)
    return FailoverRun(
        accounts,
        load.settled,
        followed,
        killed,
        promoted,
        killed_at,
        promoted_at,
        load.other_errors,
    )
