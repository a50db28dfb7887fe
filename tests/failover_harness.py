"""Three runner processes for one projection; the leader is killed with SIGKILL.

Shared by tests/test_projection_failover.py (which checks what happened) and
benchmarks/projection_takeover.py (which times the takeover over several runs).

:func:`run_failover` starts three processes of tests/projection_failover_proc.py,
appends events meanwhile, waits for a leader to write rows, kills it, waits for
another to write rows, stops appending and waits for the read model to reach the
log's head. Every wait polls the lease and the table against a deadline.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import asyncpg

from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
from eventcore.backends.sqlite import SQLiteEventStore
from eventcore.types import AppendRequest, NewEvent, RecordedEvent, StreamId

PROJECTION = "failover"
HOLDERS = ("runner-a", "runner-b", "runner-c")
ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 60.0  # seconds for any one phase; a healthy run needs a few
POLL = 0.02

Row = tuple[int, str, str, str, float]
Store = SQLiteEventStore | PostgresEventStore
TABLE_COLUMNS = "position, stream_id, event_type, writer, handled_at"


class Side(Protocol):
    """One database: the store, the read model table, and how a worker reaches it."""

    kind: str

    async def open_store(self) -> Store: ...
    async def create_table(self) -> None: ...
    async def rows(self) -> list[Row]: ...
    def worker_args(self) -> list[str]: ...


@dataclass
class SQLiteSide:
    path: Path
    kind: str = "sqlite"

    async def open_store(self) -> Store:
        return await SQLiteEventStore.open(self.path)

    async def create_table(self) -> None:
        await asyncio.to_thread(
            self._execute,
            "CREATE TABLE IF NOT EXISTS failover_rows (position INTEGER PRIMARY KEY,"
            " stream_id TEXT NOT NULL, event_type TEXT NOT NULL, writer TEXT NOT NULL,"
            " handled_at REAL NOT NULL)",
        )

    async def rows(self) -> list[Row]:
        return await asyncio.to_thread(
            self._execute, f"SELECT {TABLE_COLUMNS} FROM failover_rows ORDER BY position"
        )

    def _execute(self, sql: str) -> list[Row]:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            return [tuple(row) for row in conn.execute(sql)]
        finally:
            conn.close()

    def worker_args(self) -> list[str]:
        return ["sqlite", str(self.path), "-"]


@dataclass
class PostgresSide:
    dsn: str
    schema: str
    kind: str = "postgres"

    async def open_store(self) -> Store:
        config = PostgresConfig.development(self.dsn, schema=self.schema)
        return await PostgresEventStore.open(config)

    async def create_table(self) -> None:
        await self._fetch(
            f'CREATE TABLE IF NOT EXISTS "{self.schema}".failover_rows (position bigint'
            " PRIMARY KEY, stream_id text NOT NULL, event_type text NOT NULL, writer text"
            " NOT NULL, handled_at double precision NOT NULL)"
        )

    async def rows(self) -> list[Row]:
        return await self._fetch(
            f'SELECT {TABLE_COLUMNS} FROM "{self.schema}".failover_rows ORDER BY position'
        )

    async def _fetch(self, sql: str) -> list[Row]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return [tuple(record) for record in await conn.fetch(sql)]
        finally:
            await conn.close()

    def worker_args(self) -> list[str]:
        return ["postgres", self.dsn, self.schema]


@dataclass(frozen=True)
class FailoverOutcome:
    leader: str
    successor: str
    rows_before_kill: list[Row]  # the table just before the kill
    holder_before_kill: str | None
    holder_after_takeover: str | None
    killed_at: float  # wall clock, as handled_at is
    rows: list[Row]  # the table at the end
    log: list[RecordedEvent]  # the whole log at the end
    survivors_alive: bool

    @property
    def takeover_seconds(self) -> float:
        """From the kill to the first event the successor handled."""
        first = min(r[4] for r in self.rows if r[3] == self.successor)
        return first - self.killed_at


async def until(what: str, check: Callable[[], Awaitable[object]]) -> object:
    """Poll ``check`` until it returns something truthy; fail after DEADLINE."""
    deadline = time.monotonic() + DEADLINE
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {DEADLINE} s waiting for {what}")
        await asyncio.sleep(POLL)


async def _start_worker(side: Side, holder: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.projection_failover_proc",
        *side.worker_args(),
        holder,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), DEADLINE)
    assert line == b"ready\n", f"{holder} did not start: {line!r}"
    return proc


async def _append_until(store: Store, stop: asyncio.Event) -> None:
    """Append one event at a time to five streams until ``stop`` is set."""
    versions = dict.fromkeys((StreamId(f"item-{n}") for n in range(5)), 0)
    n = 0
    while not stop.is_set():
        stream = StreamId(f"item-{n % 5}")
        event = NewEvent(stream, "Noted", b'{"n":%d}' % n)
        await store.append(AppendRequest.create({stream: versions[stream]}, [event]))
        versions[stream] += 1
        n += 1
        await asyncio.sleep(0.005)  # pacing the load, not waiting for anything


def _writers(rows: list[Row]) -> set[str]:
    return {row[3] for row in rows}


async def run_failover(side: Side) -> FailoverOutcome:
    store = await side.open_store()  # creates the store's tables (and PostgreSQL schema)
    procs: dict[str, asyncio.subprocess.Process] = {}
    stop = asyncio.Event()
    appender = asyncio.create_task(_append_until(store, stop))
    try:
        await side.create_table()
        for holder in HOLDERS:
            procs[holder] = await _start_worker(side, holder)

        async def leader_with_rows() -> str | None:
            # A checkpoint past some rows: the successor must resume, not restart.
            holder = await store.lease_holder(PROJECTION)
            checkpoint = await store.load_checkpoint(PROJECTION) or 0
            return holder if holder in HOLDERS and checkpoint >= 20 else None

        leader = str(await until("a leader to write rows and checkpoint", leader_with_rows))
        holder_before = await store.lease_holder(PROJECTION)
        rows_before = await side.rows()
        procs[leader].send_signal(signal.SIGKILL)
        killed_at = time.time()
        await procs[leader].wait()

        async def successor_rows() -> str | None:
            fresh = _writers(await side.rows()) - {leader}
            return next(iter(fresh)) if fresh else None

        successor = str(await until("another runner to take over", successor_rows))

        async def successor_holds() -> str | None:
            return await store.lease_holder(PROJECTION)

        holder_after = await until("the successor's lease", successor_holds)
        stop.set()
        await appender
        head = await store.head_position()

        async def caught_up() -> list[Row] | None:
            rows = await side.rows()
            return rows if len(rows) == head and rows[-1][0] == head else None

        rows = await until("the read model to reach the head", caught_up)
        log = [event async for event in store.iter_all()]
        alive = all(p.returncode is None for h, p in procs.items() if h != leader)
        return FailoverOutcome(
            leader,
            successor,
            rows_before,
            holder_before,
            str(holder_after),
            killed_at,
            list(rows),  # type: ignore[call-overload]
            log,
            alive,
        )
    finally:
        stop.set()
        await asyncio.gather(appender, return_exceptions=True)
        for proc in procs.values():
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        await store.close()
