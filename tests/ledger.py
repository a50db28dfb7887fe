"""A read model in the store's own database, for the exactly-once tests.

``Ledger`` writes one row per event it handles into a table with no unique key,
so an event applied twice shows up as two rows.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from eventcore.projection import TransactionalProjection
from eventcore.store import ProjectionStore, ProjectionTransaction
from eventcore.types import RecordedEvent
from tests import pg


@dataclass(frozen=True)
class Dialect:
    """Where the ledger table lives and how its SQL is spelled."""

    kind: str  # "sqlite" or "postgres"
    where: str  # the SQLite file, or the PostgreSQL schema

    @property
    def table(self) -> str:
        return "ledger" if self.kind == "sqlite" else f'"{self.where}".ledger'

    @property
    def create(self) -> str:
        key = (
            "INTEGER PRIMARY KEY AUTOINCREMENT"
            if self.kind == "sqlite"
            else "bigserial PRIMARY KEY"
        )
        return (
            f"CREATE TABLE IF NOT EXISTS {self.table} "
            f"(seq {key}, position BIGINT NOT NULL, stream_id TEXT NOT NULL)"
        )

    @property
    def insert(self) -> str:
        marks = "?, ?" if self.kind == "sqlite" else "$1, $2"
        return f"INSERT INTO {self.table} (position, stream_id) VALUES ({marks})"

    async def create_table(self) -> None:
        await self._run(self.create)

    async def positions(self) -> list[int]:
        """The positions in the ledger, in the order they were written (committed
        rows only: read on a connection of its own)."""
        rows = await self._run(f"SELECT position FROM {self.table} ORDER BY seq")
        return [int(row[0]) for row in rows]

    async def _run(self, sql: str) -> list[tuple[Any, ...]]:
        if self.kind == "sqlite":

            def run() -> list[tuple[Any, ...]]:
                conn = sqlite3.connect(Path(self.where), isolation_level=None)
                try:
                    return conn.execute(sql).fetchall()
                finally:
                    conn.close()

            return await asyncio.to_thread(run)
        conn = await asyncpg.connect(pg.PG_URL, timeout=10)
        try:
            return [tuple(row) for row in await conn.fetch(sql)]
        finally:
            await conn.close()


class Ledger(TransactionalProjection):
    name = "ledger"

    def __init__(self, dialect: Dialect, *, fail_at: int | None = None) -> None:
        self.dialect = dialect
        self.fail_at = fail_at

    async def handle(self, event: RecordedEvent, tx: ProjectionTransaction) -> None:
        await tx.execute(self.dialect.insert, event.global_position, event.stream_id)
        if event.global_position == self.fail_at:
            raise RuntimeError(f"refusing event {event.global_position}")

    async def reset(self, tx: ProjectionTransaction) -> None:
        await tx.execute(f"DELETE FROM {self.dialect.table}")


async def ledger_database(
    kind: str, tmp_path: Path
) -> AsyncIterator[tuple[ProjectionStore, Dialect]]:
    """A fresh store of ``kind`` (``sqlite`` or ``postgres``) with an empty ledger
    table in its own database; closed (and the schema dropped) afterwards."""
    if kind == "sqlite":
        from eventcore.backends.sqlite import SQLiteEventStore

        path = tmp_path / "events.sqlite"
        store = await SQLiteEventStore.open(path)
        dialect = Dialect("sqlite", str(path))
        await dialect.create_table()
        try:
            yield store, dialect
        finally:
            await store.close()
        return
    async for schema in pg.schema_fixture():
        pg_store = await pg.fresh_store(schema)
        dialect = Dialect("postgres", schema)
        await dialect.create_table()
        try:
            yield pg_store, dialect
        finally:
            await pg_store.close()
