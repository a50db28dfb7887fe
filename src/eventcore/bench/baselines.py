"""The yardstick each scenario is divided by: the cheapest durable write the same
backend can do, measured in the same process, at the same concurrency, in runs
interleaved with the scenario's, so a noisy machine slows both alike.

- postgres: a bare one-row autocommit ``INSERT`` into a scratch table in the
  scenario's schema, through an asyncpg pool of the same size as the store's and,
  like the store's, with the per-release reset turned off. One round trip, one
  commit: the floor a command should approach (docs/adr/0004-postgres-store.md).
- sqlite: a bare one-row ``INSERT`` in its own (autocommit) transaction, on one
  worker thread like the store's writer, in a WAL file of its own with the same
  ``synchronous`` setting as the store.
- memory: ``list.append`` inside a coroutine. There is no write to compare with,
  so this measures the harness's own ceiling (task switches, timing, counting):
  the ratio says what fraction of the harness's maximum rate a command reaches.

A scenario that reads rather than writes may ask for another yardstick:
``walk_log`` is a bare ``iter_all`` walk of the scenario's own log, on any
backend (the replay scenario compares a projection rebuild with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from eventcore.bench.measure import ONE_EVENT, Done, Operation
from eventcore.bench.stores import BenchSetupError
from eventcore.store import EventStore

if TYPE_CHECKING:
    import asyncpg

# About the size of an encoded bank event, so both sides move similar bytes.
_ROW: Final = b'{"amount":1,"reference":""}'


@dataclass(frozen=True, slots=True)
class BaselineOperation:
    kind: str
    description: str
    run: Operation


@contextlib.asynccontextmanager
async def open_baseline(
    backend: str, store: EventStore, options: Mapping[str, Any], kind: str = "insert"
) -> AsyncIterator[BaselineOperation]:
    """The baseline for ``backend``, set up to match ``store`` (opened with ``options``)."""
    if kind == "walk_log":
        yield _walk_log(store)
    elif backend == "memory":
        yield _list_append()
    elif backend == "sqlite":
        async with _sqlite_insert(options) as baseline:
            yield baseline
    elif backend == "postgres":
        async with _postgres_insert(store) as baseline:
            yield baseline
    else:
        raise BenchSetupError(f"no baseline for backend {backend!r}")


def _list_append() -> BaselineOperation:
    rows: list[bytes] = []

    async def append_row() -> Done:
        rows.append(_ROW)
        return ONE_EVENT

    return BaselineOperation(
        "list.append",
        "list.append in a coroutine: the harness's own ceiling (no write to compare with)",
        append_row,
    )


def _walk_log(store: EventStore) -> BaselineOperation:
    async def walk() -> Done:
        events = 0
        async for _ in store.iter_all():
            events += 1
        return Done(events)

    return BaselineOperation(
        "iter_all walk", "a bare iter_all walk of the same log, default page size", walk
    )


class _SQLiteInserter:
    """Owns one sqlite3 connection, used only on the single thread that opened it."""

    def __init__(self, path: Path, synchronous: str) -> None:
        self._path = path
        self._synchronous = synchronous
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        # isolation_level=None: autocommit, so each INSERT is its own transaction.
        conn = sqlite3.connect(self._path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("CREATE TABLE baseline (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
        self._conn = conn

    def insert_row(self) -> None:
        assert self._conn is not None, "open() runs first on the same thread"
        self._conn.execute("INSERT INTO baseline (payload) VALUES (?)", (_ROW,))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@contextlib.asynccontextmanager
async def _sqlite_insert(options: Mapping[str, Any]) -> AsyncIterator[BaselineOperation]:
    # FULL is SQLiteEventStore's default; an explicit option applies to both.
    synchronous = str(options.get("synchronous", "FULL"))
    if synchronous not in ("FULL", "NORMAL"):
        raise BenchSetupError(f"sqlite synchronous must be FULL or NORMAL, got {synchronous!r}")
    loop = asyncio.get_running_loop()
    with (
        tempfile.TemporaryDirectory(prefix="eventcore-baseline-") as directory,
        ThreadPoolExecutor(1, thread_name_prefix="eventcore-bench-baseline") as thread,
    ):
        inserter = _SQLiteInserter(Path(directory) / "baseline.sqlite", synchronous)
        await loop.run_in_executor(thread, inserter.open)

        async def insert_row() -> Done:
            await loop.run_in_executor(thread, inserter.insert_row)
            return ONE_EVENT

        try:
            yield BaselineOperation(
                "sqlite3 INSERT",
                f"one-row sqlite3 INSERT, autocommit, WAL, synchronous={synchronous}, "
                "on one worker thread",
                insert_row,
            )
        finally:
            await loop.run_in_executor(thread, inserter.close)


@contextlib.asynccontextmanager
async def _postgres_insert(store: EventStore) -> AsyncIterator[BaselineOperation]:
    import asyncpg

    from eventcore.backends.postgres import PostgresEventStore

    if not isinstance(store, PostgresEventStore):
        raise BenchSetupError(f"the postgres baseline needs a PostgresEventStore, got {store!r}")
    config = store.config
    table = f"{config.quoted_schema}.bench_baseline"
    pool = await asyncpg.create_pool(
        config.resolved_dsn(),
        min_size=config.min_connections,
        max_size=config.max_connections,
        reset=_no_reset,
    )
    try:
        await pool.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, payload bytea)")
        statement = f"INSERT INTO {table} (payload) VALUES ($1)"

        async def insert_row() -> Done:
            await pool.execute(statement, _ROW)
            return ONE_EVENT

        yield BaselineOperation(
            "asyncpg INSERT",
            f"one-row autocommit INSERT, asyncpg pool of {config.max_connections} "
            f"(min {config.min_connections}), reset off like the store's",
            insert_row,
        )
    finally:
        await pool.close()


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """The store's pool skips asyncpg's per-release reset round trip; so does this."""
