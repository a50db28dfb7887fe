"""No append and no stream read joins the streams or events table: their cost
grows with what they touch, not with the store. A join the planner answered with a
hash of the whole streams table against a batch's 32 streams made every
group-commit batch slower as the store grew; these tests count the rows read by
sequential scans (``pg_stat_user_tables.seq_tup_read``) on a store of 6,000
analysed streams, over more calls than PL/pgSQL plans afresh (it switches to a
cached generic plan after five), through the array path and the COPY path.

Two statements find stream rows by ``stream_id = ANY (array)``: the lock and the
version update. Left to the planner, they scanned the table once a batch named a
good share of it (64 two-stream commands, 128 streams of these 6,000: ten scans
in eight calls), so the array path's append functions run with sequential scans
off (migration 0011). The COPY path's do not (see there), and still scan for
such a batch.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest

from eventcore.backends.postgres import PostgresEventStore
from eventcore.types import AppendRequest, NewEvent, StreamId
from tests import pg

pytestmark = pytest.mark.postgres

_STREAMS = 6000
_CALLS = 8

Operation = Callable[[PostgresEventStore], Awaitable[object]]


class _Streams:
    """Stream ids handed out a few at a time, never twice in a row, with the
    version each is at."""

    def __init__(self) -> None:
        self.ids = [StreamId(f"s-{i:05d}") for i in range(_STREAMS)]
        self.versions = dict.fromkeys([*self.ids, StreamId("long")], 0)
        self._next: Iterator[StreamId] = itertools.cycle(self.ids)

    def take(self, count: int) -> list[StreamId]:
        return [next(self._next) for _ in range(count)]

    def request(self, streams: list[StreamId], events_each: int = 1) -> AppendRequest:
        events = [NewEvent(s, "Tallied", b"{}") for s in streams for _ in range(events_each)]
        request = AppendRequest.create({s: self.versions[s] for s in streams}, events)
        for s in streams:
            self.versions[s] += events_each
        return request


async def _flush_statistics(store: PostgresEventStore) -> None:
    # A backend sends its table counts at most once a second unless told to; the
    # store has one connection, so this reaches the backend that ran the calls.
    async with store._pool.acquire() as conn:
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await conn.execute("SELECT 1")


async def _rows_scanned(raw: Any, schema: str) -> dict[str, int]:
    rows = await raw.fetch(
        "SELECT relname, seq_tup_read FROM pg_stat_user_tables"
        " WHERE schemaname = $1 AND relname IN ('streams', 'events')",
        schema,
    )
    return {row["relname"]: int(row["seq_tup_read"]) for row in rows}


async def _populate(schema: str, streams: _Streams) -> None:
    await pg.require_server()
    async with await pg.fresh_store(schema) as store:
        for start in range(0, _STREAMS, 500):
            chunk = streams.ids[start : start + 500]
            await store.append_many([streams.request([s]) for s in chunk])
        await store.append(streams.request([StreamId("long")], 1000))
    raw = await asyncpg.connect(pg.test_config(schema).dsn)
    try:
        await raw.execute(f'ANALYZE "{schema}".streams; ANALYZE "{schema}".events')
    finally:
        await raw.close()


@pytest.fixture(scope="module")
def populated() -> Iterator[tuple[str, _Streams]]:
    # Built once for the module (6,000 streams take a few seconds), outside the
    # tests' event loops.
    schema = pg.new_schema_name()
    streams = _Streams()
    try:
        asyncio.run(_populate(schema, streams))
        yield schema, streams
    finally:
        asyncio.run(pg.drop_schema(schema))


def _operations(streams: _Streams) -> dict[str, Operation]:
    async def batch(store: PostgresEventStore, commands: int, width: int, events: int) -> None:
        requests = [streams.request(streams.take(width), events) for _ in range(commands)]
        await store.append_many(requests)

    async def sharing(store: PostgresEventStore) -> None:
        chosen = streams.take(32)
        requests = [streams.request([s]) for s in chosen]
        requests.append(streams.request(chosen[:1]))  # a second run of one command
        await store.append_many(requests)

    return {
        "one command on one stream": lambda store: batch(store, 1, 1, 1),
        "one command on 40 streams": lambda store: batch(store, 1, 40, 1),
        "one command of 1,000 events": lambda store: batch(store, 1, 1, 1000),
        "32 one-stream commands": lambda store: batch(store, 32, 1, 1),
        "16 two-stream commands": lambda store: batch(store, 16, 2, 1),
        "64 two-stream commands": lambda store: batch(store, 64, 2, 1),
        "33 commands of 30 events": lambda store: batch(store, 33, 1, 30),
        "commands sharing a stream": sharing,
        "read one stream": lambda store: store.read_stream(streams.take(1)[0]),
        "read 32 streams": lambda store: store.read_streams(streams.take(32)),
        "read a stream's tail": lambda store: store.read_stream_tail(StreamId("long"), count=3),
        "a stream's version": lambda store: store.stream_version(streams.take(1)[0]),
    }


_NAMES = list(_operations(_Streams()))
_STORES: dict[str, dict[str, object]] = {
    "defaults": {},  # arrays, group reads
    "copy": {"copy_threshold": 1},
    "reads alone": {"group_reads": False},
}


# The COPY path keeps the planner's choice (migration 0011), which scans the
# streams table for a batch naming 128 of its 6,000 streams.
_SCANNED_ON_PURPOSE = {("64 two-stream commands", "copy")}


@pytest.mark.parametrize(
    ("name", "path"),
    [
        (name, path)
        for path in _STORES
        for name in _NAMES
        if (name, path) not in _SCANNED_ON_PURPOSE
    ],
)
async def test_an_operation_reads_no_table_from_end_to_end(
    populated: tuple[str, _Streams], name: str, path: str
) -> None:
    schema, streams = populated
    operation = _operations(streams)[name]
    overrides: dict[str, object] = {"max_connections": 1, "min_connections": 1, **_STORES[path]}
    raw = await asyncpg.connect(pg.test_config(schema).dsn)
    try:
        await raw.execute("SET stats_fetch_consistency = none")
        async with await pg.fresh_store(schema, **overrides) as store:
            await _flush_statistics(store)
            before = await _rows_scanned(raw, schema)
            for _ in range(_CALLS):
                await operation(store)
            await _flush_statistics(store)
            after = await _rows_scanned(raw, schema)
    finally:
        await raw.close()
    scanned = {table: after[table] - before[table] for table in after}
    assert scanned == {"streams": 0, "events": 0}, f"{_CALLS} calls scanned {scanned}"


async def test_every_append_function_runs_with_sequential_scans_off_and_generic_plans(
    pg_schema: str,
) -> None:
    # CREATE OR REPLACE FUNCTION drops the settings: a migration that replaces one
    # of them and forgets to set them again fails here.
    async with await pg.fresh_store(pg_schema):
        pass
    raw = await asyncpg.connect(pg.test_config(pg_schema).dsn)
    try:
        rows = await raw.fetch(
            "SELECT proname, proconfig FROM pg_proc"
            " WHERE pronamespace = $1::regnamespace"
            " AND (proname LIKE 'append%' OR proname = 'check_slices')",
            pg_schema,
        )
    finally:
        await raw.close()
    settings = {row["proname"]: set(row["proconfig"] or ()) for row in rows}
    generic = {"plan_cache_mode=force_generic_plan"}
    never_scan = {"enable_seqscan=off"} | generic
    assert settings == {
        "append_batch": never_scan,
        "append_to_stream": never_scan,
        "append_streams": never_scan,
        "append_disjoint": never_scan,
        "append_versions_now": never_scan,
        "append_one": never_scan,
        "append_independent": never_scan,
        # These two read no table: append_run slices its arrays for the functions
        # above, check_slices checks them.
        "append_run": generic,
        "check_slices": generic,
        # The COPY path reads its staging table, which has no index (migration
        # 0011); its plans depend on how many rows it holds (migration 0012).
        "append_staged": set(),
        "append_independent_staged": set(),
    }
