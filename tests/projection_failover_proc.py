"""A projection runner process for the failover tests (tests/failover_harness.py).

Usage: python -m tests.projection_failover_proc KIND TARGET SCHEMA HOLDER

KIND is ``sqlite`` (TARGET: the database file; SCHEMA: ``-``) or ``postgres``
(TARGET: the DSN; SCHEMA: the store's schema). Runs the projection ``failover``
with the default RunnerOptions and lease holder HOLDER. Its read model is the
table ``failover_rows`` in the same database (created by the test), one row per
event keyed by position, upserted, recording which holder wrote it and when: a
redelivered event overwrites its row with the same content, so at-least-once
delivery is harmless. Prints ``ready`` once the store is open; runs until killed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections.abc import Sequence

import asyncpg

from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
from eventcore.backends.sqlite import SQLiteEventStore
from eventcore.projection import Projection, run_projection
from eventcore.store import ProjectionStore
from eventcore.types import RecordedEvent

PROJECTION = "failover"
Row = tuple[int, str, str, str, float]  # position, stream, type, writer, handled_at


def rows_of(events: Sequence[RecordedEvent], holder: str) -> list[Row]:
    now = time.time()
    return [(e.global_position, e.stream_id, e.event_type, holder, now) for e in events]


class SQLiteRows(Projection):
    name = PROJECTION

    def __init__(self, path: str, holder: str) -> None:
        self._holder = holder
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout=30000")

    async def handle(self, event: RecordedEvent) -> None:
        await self.handle_batch([event])

    async def handle_batch(self, events: Sequence[RecordedEvent]) -> None:
        await asyncio.to_thread(self._upsert, rows_of(events, self._holder))

    def _upsert(self, rows: list[Row]) -> None:
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("INSERT OR REPLACE INTO failover_rows VALUES (?,?,?,?,?)", rows)

    async def reset(self) -> None:
        await asyncio.to_thread(self._conn.execute, "DELETE FROM failover_rows")


class PostgresRows(Projection):
    name = PROJECTION

    def __init__(self, conn: asyncpg.Connection, schema: str, holder: str) -> None:
        self._conn = conn
        self._holder = holder
        self._table = f'"{schema}".failover_rows'

    async def handle(self, event: RecordedEvent) -> None:
        await self.handle_batch([event])

    async def handle_batch(self, events: Sequence[RecordedEvent]) -> None:
        await self._conn.executemany(
            f"INSERT INTO {self._table} VALUES ($1, $2, $3, $4, $5) ON CONFLICT (position)"
            " DO UPDATE SET stream_id = excluded.stream_id, event_type = excluded.event_type,"
            " writer = excluded.writer, handled_at = excluded.handled_at",
            rows_of(events, self._holder),
        )

    async def reset(self) -> None:
        await self._conn.execute(f"DELETE FROM {self._table}")


async def run(store: ProjectionStore, projection: Projection, holder: str) -> None:
    print("ready", flush=True)
    await run_projection(store, projection, holder=holder)


async def main(kind: str, target: str, schema: str, holder: str) -> None:
    if kind == "sqlite":
        async with await SQLiteEventStore.open(target) as store:
            await run(store, SQLiteRows(target, holder), holder)
        return
    config = PostgresConfig.development(target, schema=schema, max_connections=4)
    conn = await asyncpg.connect(target)
    try:
        async with await PostgresEventStore.open(config, migrate=False) as pg_store:
            await run(pg_store, PostgresRows(conn, schema, holder), holder)
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
