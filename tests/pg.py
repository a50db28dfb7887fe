"""Helpers for tests against the real PostgreSQL server (never mocked).

The server is EVENTCORE_TEST_POSTGRES_URL (default: the local test database). Each
test gets a schema of its own, created by the store's migrations and dropped by
the fixture. Without a reachable server the tests skip — except where
EVENTCORE_REQUIRE_POSTGRES is set (CI), where a skip is turned into a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
from eventcore.backends.postgres._sql import Statements
from eventcore.backends.postgres._writes import BatchArrays
from eventcore.store import AppendOutcome
from eventcore.types import AppendRequest, EventMetadata, NewEvent, StreamId

PG_URL = os.environ.get("EVENTCORE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
_reachable: bool | None = None


async def require_server() -> None:
    global _reachable
    if _reachable is None:
        try:
            conn = await asyncpg.connect(PG_URL, timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            _reachable = False
        else:
            await conn.close()
            _reachable = True
    if not _reachable:
        pytest.skip(f"no PostgreSQL server at {PG_URL}")


def new_schema_name() -> str:
    return f"ectest_{uuid.uuid4().hex[:16]}"


def test_config(schema: str, **overrides: Any) -> PostgresConfig:
    settings: dict[str, Any] = {
        "max_connections": 10,
        "min_connections": 1,
        "acquire_timeout": 30.0,
        "application_name": "eventcore-tests",
    }
    settings.update(overrides)
    return PostgresConfig.development(PG_URL, schema=schema, **settings)


async def drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(PG_URL, timeout=5)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def fresh_store(schema: str, **overrides: Any) -> PostgresEventStore:
    return await PostgresEventStore.open(test_config(schema, **overrides))


async def schema_fixture() -> AsyncIterator[str]:
    await require_server()
    schema = new_schema_name()
    try:
        yield schema
    finally:
        await drop_schema(schema)


def test_statements(schema: str) -> Statements:
    """The store's SQL for ``schema``, to call its functions from a raw connection."""
    return Statements.for_schema(f'"{schema}"')


_EVENT_COLUMNS = "position, event_id, stream_id, stream_version, event_type, payload, metadata"


async def stored_rows(
    schema: str, *, empty_streams: bool = True
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
    """Every row of ``events`` but ``recorded_at`` (the transaction's clock), every
    row of ``streams``, and the log head: what two ways of appending the same
    requests must leave alike. ``empty_streams=False`` leaves out the version-0
    rows a stream gets when an append only checked it (no read tells them from
    no row at all)."""
    conn = await asyncpg.connect(PG_URL, timeout=5)
    try:
        s = f'"{schema}"'
        events = await conn.fetch(f"SELECT {_EVENT_COLUMNS} FROM {s}.events ORDER BY position")
        where = "" if empty_streams else " WHERE version > 0"
        streams = await conn.fetch(f"SELECT stream_id, version FROM {s}.streams{where} ORDER BY 1")
        head = await conn.fetchval(f"SELECT position FROM {s}.log_head")
    finally:
        await conn.close()
    return [tuple(r) for r in events], [tuple(r) for r in streams], int(head)


def migrated_schema_pair() -> Iterator[tuple[str, str]]:
    """Two migrated schemas, dropped afterwards: for a module-scoped fixture of tests
    that append the same requests two ways (each example with streams of its own).
    Skips when no server answers."""
    names = (new_schema_name(), new_schema_name())

    async def migrate() -> bool:
        try:
            for name in names:
                async with await PostgresEventStore.open(test_config(name)):
                    pass
            return True
        except OSError:
            return False

    if not asyncio.run(migrate()):
        pytest.skip(f"no PostgreSQL server at {PG_URL}")
    try:
        yield names
    finally:
        for name in names:
            asyncio.run(drop_schema(name))


# -- writer processes -----------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent


async def start_writer(module: str, *args: object) -> asyncio.subprocess.Process:
    """``python -m module DSN args...`` from the checkout, returned once it says
    ``ready`` (connected); it starts on a line on its stdin (``release_writers``)
    and ends by printing one JSON line (``writer_reports``)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        PG_URL,
        *(str(arg) for arg in args),
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"ready"
    return proc


async def release_writers(writers: Sequence[asyncio.subprocess.Process]) -> None:
    """Let writers started by ``start_writer`` go, as nearly together as can be."""
    for proc in writers:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()


async def writer_reports(writers: Sequence[asyncio.subprocess.Process]) -> list[Any]:
    """Each writer's last line of output, as JSON, once it has exited with 0
    (within 4 minutes)."""
    reports = []
    for proc in writers:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
        assert proc.returncode == 0
        reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    return reports


async def rename_functions(schema: str, name: str, new_name: str) -> None:
    """Rename every overload of ``schema.name``: calls by the old name then fail."""
    conn = await asyncpg.connect(PG_URL, timeout=5)
    try:
        functions = await conn.fetch(
            "SELECT oid::regprocedure::text AS signature FROM pg_proc"
            " WHERE pronamespace = $1::regnamespace AND proname = $2",
            schema,
            name,
        )
        for function in functions:
            await conn.execute(f"ALTER FUNCTION {function['signature']} RENAME TO {new_name}")
    finally:
        await conn.close()


def comparable(outcome: AppendOutcome) -> object:
    """An append outcome as a value two stores' answers can be compared by: an
    error by its type, message and fields."""
    if isinstance(outcome, Exception):
        return (type(outcome), str(outcome), vars(outcome))
    return outcome


def numbered_event(stream: str, n: int = 0, metadata: EventMetadata | None = None) -> NewEvent:
    """A ``Happened`` event for ``stream`` whose payload is ``{"n": n}``."""
    payload = b'{"n":%d}' % n
    if metadata is None:
        return NewEvent(StreamId(stream), "Happened", payload)
    return NewEvent(StreamId(stream), "Happened", payload, metadata)


async def backend_waiting_for(holder: asyncpg.Connection) -> int:
    """The pid of the server backend that waits for a lock ``holder`` holds (polled
    for up to 5 s)."""
    for _ in range(500):
        # Inside a transaction the holder's view of pg_stat_activity is fixed at its
        # first read: cleared, a backend that connected since then shows too.
        await holder.execute("SELECT pg_stat_clear_snapshot()")
        pid = await holder.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE pg_backend_pid() = ANY (pg_blocking_pids(pid))"
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.01)
    raise AssertionError("nothing waited for the lock the holder holds")


async def assert_refused(
    schema: str, statement: str, arguments: Sequence[Any], complaint: str
) -> None:
    """Call an append function of a migrated ``schema`` with ``arguments`` followed by
    two events' ids, types, payloads and metadata; it must raise ``complaint`` and
    number nothing."""
    raw = await asyncpg.connect(PG_URL, timeout=5)
    try:
        with pytest.raises(asyncpg.RaiseError, match=complaint):
            await raw.fetch(
                statement,
                *arguments,
                [uuid.uuid4(), uuid.uuid4()],
                ["T", "T"],
                [b"{}", b"{}"],
                [b"{}", b"{}"],
            )
        assert await raw.fetchval(f'SELECT position FROM "{schema}".log_head') == 0
    finally:
        await raw.close()


async def events_counted_by_versions(schema: str) -> int:
    """Assert that every stream of ``schema`` with events is at the version of its
    event count; return how many events there are."""
    conn = await asyncpg.connect(PG_URL, timeout=5)
    try:
        counts = await conn.fetch(
            f'SELECT s.stream_id, s.version, count(e.*) AS events FROM "{schema}".streams s'
            f' JOIN "{schema}".events e USING (stream_id) GROUP BY s.stream_id, s.version'
        )
    finally:
        await conn.close()
    assert all(row["version"] == row["events"] for row in counts), counts
    return sum(int(row["events"]) for row in counts)


async def blocked(
    observer: asyncpg.Connection,
    backend: asyncpg.Connection,
    by: asyncpg.Connection | None = None,
) -> None:
    """Wait (up to 5 s) until ``backend``'s server process waits for a lock (held
    by ``by``'s, if given). ``observer`` asks: ``backend`` is busy."""
    pid = backend.get_server_pid()
    holder = None if by is None else by.get_server_pid()
    for _ in range(500):
        blocking = await observer.fetchval("SELECT pg_blocking_pids($1)", pid)
        if blocking if holder is None else holder in blocking:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited for a lock of {holder or 'anyone'}")


async def pass_by_schedule(
    schema: str, statement: str, parameters: Sequence[Any]
) -> tuple[list[Any], list[Any]]:
    """Streams k0 < k1 < k2 at version 1. One transaction holds k0 and moves k1 to 2;
    another holds k2. ``statement`` (a batch expecting k0 at 1, k1 at 2 and k2 at
    1) waits on k0; when the first commits, its update takes k0, passes k1 by (its
    snapshot has 1) and waits on k2. An append_batch call for {k1@2, k2@1} (an
    older eventcore's) locks k1 and waits on k2. When k2 is free, the batch must
    not lock k1 now, after k2: that is a deadlock with the other call. Returns the
    rows of both calls."""

    def request(expected: dict[str, int]) -> AppendRequest:
        return AppendRequest.create(expected, [numbered_event(s) for s in expected])

    async with await fresh_store(schema) as store:
        await store.append_many([request({k: 0}) for k in ("k0", "k1", "k2")])
    dsn = test_config(schema).dsn
    statements = test_statements(schema)
    first, second, batch, older = [await asyncpg.connect(dsn) for _ in range(4)]
    try:
        holding_first = first.transaction()
        await holding_first.start()
        await first.execute(f"SELECT 1 FROM \"{schema}\".streams WHERE stream_id = 'k0' FOR UPDATE")
        moved = BatchArrays.build([request({"k1": 1})], 1 << 20).one_stream_parameters()
        assert moved is not None
        await first.fetch(statements.append_to_stream, *moved)
        holding_second = second.transaction()
        await holding_second.start()
        await second.execute(
            f"SELECT 1 FROM \"{schema}\".streams WHERE stream_id = 'k2' FOR UPDATE"
        )
        called = asyncio.ensure_future(batch.fetch(statement, *parameters))
        await blocked(first, batch, by=first)
        await holding_first.commit()
        await blocked(second, batch, by=second)
        other = BatchArrays.build([request({"k1": 2, "k2": 1})], 1 << 20).parameters()
        general = asyncio.ensure_future(older.fetch(statements.append_batch, *other))
        await blocked(second, older)
        await holding_second.commit()
        rows, other_rows = await asyncio.gather(called, general)
    finally:
        for conn in (first, second, batch, older):
            await conn.close()
    return list(rows), list(other_rows)


async def append_while_moved(
    store: PostgresEventStore, schema: str, batch: Sequence[AppendRequest]
) -> list[AppendOutcome]:
    """``store.append_many(batch)`` while another transaction holds stream ``r`` and,
    before it commits, moves stream ``s`` on by one event: the batch's update waits
    on ``r`` with ``s`` one behind in its snapshot."""
    holder = await asyncpg.connect(test_config(schema).dsn)
    try:
        holding = holder.transaction()
        await holding.start()
        await holder.execute(f"SELECT 1 FROM \"{schema}\".streams WHERE stream_id = 'r' FOR UPDATE")
        version = await holder.fetchval(
            f"SELECT version FROM \"{schema}\".streams WHERE stream_id = 's'"
        )
        moved = AppendRequest.create({"s": version}, [numbered_event("s")])
        parameters = BatchArrays.build([moved], 1 << 20).one_stream_parameters()
        assert parameters is not None
        await holder.fetch(test_statements(schema).append_to_stream, *parameters)
        append = asyncio.ensure_future(store.append_many(batch))
        await backend_waiting_for(holder)
        await holding.commit()
        return await append
    finally:
        await holder.close()
