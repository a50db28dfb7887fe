"""One SQLite file or PostgreSQL schema that tests open stores on, reopen after
close, and change behind the store's back (a database rule, say)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from eventcore.backends.postgres import PostgresEventStore
from eventcore.backends.sqlite import SQLiteEventStore
from eventcore.store import EventStore
from tests import pg

SQL_KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

# A database rule that refuses one event type: a failure that belongs to the one
# request carrying it, raised by the database in the middle of a transaction.
REFUSED_TYPE = "RefusedByTheDatabase"


class SqlStorage:
    def __init__(self, kind: str, path: Path, schema: str | None) -> None:
        self.kind = kind
        self.path = path
        self.schema = schema
        self._opened: list[EventStore] = []

    async def open(self, **settings: Any) -> SQLiteEventStore | PostgresEventStore:
        store: SQLiteEventStore | PostgresEventStore
        if self.kind == "sqlite":
            store = await SQLiteEventStore.open(self.path, **settings)
        else:
            assert self.schema is not None
            store = await pg.fresh_store(self.schema, **settings)
        self._opened.append(store)
        return store

    async def refuse_event_type(self, event_type: str = REFUSED_TYPE) -> None:
        """Install a trigger that makes the database refuse events of ``event_type``."""
        if self.kind == "sqlite":
            await asyncio.to_thread(self._sqlite_trigger, event_type)
            return
        conn = await asyncpg.connect(pg.PG_URL, timeout=5)
        try:
            await conn.execute(
                f"""
                CREATE FUNCTION "{self.schema}".refuse_event() RETURNS trigger
                LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'refused by a database rule'; END $$;
                CREATE TRIGGER refuse_event BEFORE INSERT ON "{self.schema}".events
                FOR EACH ROW WHEN (NEW.event_type = '{event_type}')
                EXECUTE FUNCTION "{self.schema}".refuse_event();
                """
            )
        finally:
            await conn.close()

    def _sqlite_trigger(self, event_type: str) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute(
                f"""
                CREATE TRIGGER refuse_event BEFORE INSERT ON events
                WHEN NEW.event_type = '{event_type}'
                BEGIN SELECT RAISE(ABORT, 'refused by a database rule'); END
                """
            )
        finally:
            conn.close()

    async def close_all(self) -> None:
        for store in self._opened:
            await store.close()


async def sql_storage(kind: str, tmp_path: Path) -> AsyncIterator[SqlStorage]:
    """The body of a fixture: fresh storage of ``kind``, cleaned up afterwards."""
    if kind == "sqlite":
        storage = SqlStorage(kind, tmp_path / "events.sqlite", None)
        try:
            yield storage
        finally:
            await storage.close_all()
        return
    async for schema in pg.schema_fixture():
        storage = SqlStorage(kind, tmp_path, schema)
        try:
            yield storage
        finally:
            await storage.close_all()
