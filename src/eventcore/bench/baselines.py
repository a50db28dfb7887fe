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

A scenario may ask for another yardstick:

- ``walk_log``: a bare ``iter_all`` walk of the scenario's own log, on any
  backend (the replay scenario compares a projection rebuild with it);
- ``copy``: on PostgreSQL, one ``COPY`` of as many rows as the scenario's batch
  (asyncpg ``copy_records_to_table``, positions and versions made by the client)
  into a scratch table made ``LIKE events INCLUDING ALL``: the same rows (the
  scenario's event type, payload and metadata, event ids made as ``NewEvent``
  makes them, one stream whose versions climb, as the scenario's single writer
  appends) into the same columns, constraints and indexes, with none of the
  store's checks. The append scenario compares its batches with it. On other
  backends it is the backend's own insert.

  Why not a table without indexes: every store of events must keep the indexes
  its reads need, and on this table's four they cost more than such a COPY's
  whole write (docs/benchmarks.md, "Why the misses");
  ``benchmarks/copy_appends.py`` measures against both.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from eventcore.bench.measure import ONE_EVENT, Done, Operation
from eventcore.bench.scenarios import APPENDED_PAYLOAD, APPENDED_TYPE
from eventcore.bench.stores import BenchSetupError
from eventcore.codec import encode_metadata
from eventcore.store import EventStore
from eventcore.types import EMPTY_METADATA, new_event_id

if TYPE_CHECKING:
    import asyncpg

    from eventcore.backends.postgres import PostgresConfig

# About the size of an encoded bank event, so both sides move similar bytes.
_ROW: Final = b'{"amount":1,"reference":""}'
# About the size of an event's encoded metadata (a correlation id).
_METADATA: Final = b'{"correlation_id":"0c6b3e8e-6f33-4b8a-9d51-6a1d7e1f2b3c"}'


@dataclass(frozen=True, slots=True)
class BaselineOperation:
    kind: str
    description: str
    run: Operation


@contextlib.asynccontextmanager
async def open_baseline(
    backend: str,
    store: EventStore,
    options: Mapping[str, Any],
    kind: str = "insert",
    batch_size: int | None = None,
) -> AsyncIterator[BaselineOperation]:
    """The baseline for ``backend``, set up to match ``store`` (opened with ``options``);
    ``batch_size`` is the rows one ``copy`` operation writes."""
    if kind == "walk_log":
        yield _walk_log(store)
    elif kind == "copy" and backend == "postgres":
        async with _postgres_copy(store, batch_size or 1) as baseline:
            yield baseline
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

    config = _postgres_config(store)
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


@contextlib.asynccontextmanager
async def _postgres_copy(store: EventStore, batch_size: int) -> AsyncIterator[BaselineOperation]:
    import asyncpg

    config = _postgres_config(store)
    table = "bench_copy_baseline"
    conn = await asyncpg.connect(config.resolved_dsn())
    try:
        schema = config.quoted_schema
        await conn.execute(f"CREATE TABLE {schema}.{table} (LIKE {schema}.events INCLUDING ALL)")
        columns = (
            "position",
            "event_id",
            "stream_id",
            "stream_version",
            "event_type",
            "payload",
            "metadata",
        )
        # One stream, as the scenario's one writer keeps: its versions are the positions.
        positions = itertools.count(1)
        # The scenario's events: its type, payload and (empty) metadata.
        stream, metadata = "copy-0", encode_metadata(EMPTY_METADATA)
        kind, payload = APPENDED_TYPE, APPENDED_PAYLOAD

        async def copy_batch() -> Done:
            rows = [
                (position, new_event_id(), stream, position, kind, payload, metadata)
                for position in itertools.islice(positions, batch_size)
            ]
            await conn.copy_records_to_table(
                table, records=rows, columns=columns, schema_name=config.schema
            )
            return Done(batch_size)

        yield BaselineOperation(
            "asyncpg COPY",
            f"COPY of {batch_size} rows into a table LIKE events (its columns and four indexes), "
            "one connection",
            copy_batch,
        )
    finally:
        await conn.close()


def _postgres_config(store: EventStore) -> PostgresConfig:
    from eventcore.backends.postgres import PostgresEventStore

    if not isinstance(store, PostgresEventStore):
        raise BenchSetupError(f"the postgres baseline needs a PostgresEventStore, got {store!r}")
    return store.config


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """The store's pool skips asyncpg's per-release reset round trip; so does this."""
