"""A projection runner process for the failover tests (tests/failover_harness.py).

Usage: python -m tests.projection_failover_proc KIND TARGET SCHEMA HOLDER [MODE]

KIND is ``sqlite`` (TARGET: the database file; SCHEMA: ``-``) or ``postgres``
(TARGET: the DSN; SCHEMA: the store's schema). Runs the projection ``failover``
with the default RunnerOptions and lease holder HOLDER. Its read model is the
table ``failover_rows`` in the same database (created by the test), one row per
event keyed by position, upserted, recording which holder wrote it and when: a
redelivered event overwrites its row with the same content, so at-least-once
delivery is harmless. Prints ``ready`` once the store is open; runs until killed.

MODE ``exactly-once`` runs a TransactionalProjection instead: it *inserts* one row
per event (the table has no key on position, so an event applied twice shows up
twice) in the store's own transaction, committed with the fenced checkpoint.
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
from eventcore.projection import Projection, TransactionalProjection, run_projection
from eventcore.store import ProjectionStore, ProjectionTransaction
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


class InsertedRows(TransactionalProjection):
    """Exactly-once: each event inserted once, in the runner's transaction."""

    name = PROJECTION

    def __init__(self, table: str, marks: str, holder: str) -> None:
        self._insert = (
            f"INSERT INTO {table} (position, stream_id, event_type, writer, handled_at)"
            f" VALUES ({marks})"
        )
        self._table = table
        self._holder = holder

    async def handle(self, event: RecordedEvent, tx: ProjectionTransaction) -> None:
        (row,) = rows_of([event], self._holder)
        await tx.execute(self._insert, *row)

    async def reset(self, tx: ProjectionTransaction) -> None:
        await tx.execute(f"DELETE FROM {self._table}")


async def run(
    store: ProjectionStore, projection: Projection | TransactionalProjection, holder: str
) -> None:
    print("ready", flush=True)
    await run_projection(store, projection, holder=holder)


async def main(kind: str, target: str, schema: str, holder: str, mode: str) -> None:
    if mode == "exactly-once":
        await _main_exactly_once(kind, target, schema, holder)
        return
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


async def _main_exactly_once(kind: str, target: str, schema: str, holder: str) -> None:
    if kind == "sqlite":
        async with await SQLiteEventStore.open(target) as store:
            await run(store, InsertedRows("failover_rows", "?, ?, ?, ?, ?", holder), holder)
        return
    config = PostgresConfig.development(target, schema=schema, max_connections=4)
    table = f'"{schema}".failover_rows'
    async with await PostgresEventStore.open(config, migrate=False) as pg_store:
        await run(pg_store, InsertedRows(table, "$1, $2, $3, $4, $5", holder), holder)


if __name__ == "__main__":
    kind, target, schema, holder = sys.argv[1:5]
    mode = sys.argv[5] if len(sys.argv) > 5 else "at-least-once"
    asyncio.run(main(kind, target, schema, holder, mode))
