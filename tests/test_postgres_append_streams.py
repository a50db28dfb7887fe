"""Commands on one stream each, no two on the same: ``append_streams``
(migrations/0013), the path the PostgreSQL store takes for such a batch, against
``append_batch``, which takes any batch.

The two must be indistinguishable: the same answers and the same rows for the
same requests, compared across two schemas of the real server."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventcore import StreamId
from eventcore.backends.postgres import PostgresEventStore
from eventcore.backends.postgres._writes import BatchArrays, outcome_of
from eventcore.errors import StoreError
from eventcore.types import AppendRequest, AppendResult, EventMetadata
from tests import pg

pytestmark = pytest.mark.postgres


# (events, expectation) per stream of a batch: one event each (True: with
# metadata); the stored version, one below or above it, or 0.
_command = st.tuples(
    st.lists(st.booleans(), max_size=3),
    st.sampled_from(["current", "current", "current", "below", "above", "zero"]),
)
# a batch: distinct stream indexes, each with its command
_batch = st.dictionaries(st.integers(0, 7), _command, min_size=2, max_size=8)


@pytest.fixture(scope="module")
def migrated_schemas() -> Iterator[tuple[str, str]]:
    yield from pg.migrated_schema_pair()


_examples = itertools.count()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(_batch, min_size=1, max_size=4))
def test_commands_on_a_stream_each_answer_and_store_as_append_batch_does(
    migrated_schemas: tuple[str, str], batches: list[dict[int, Any]]
) -> None:
    """The store (append_streams) in one schema, the same requests as one call of
    append_batch in the other."""
    prefix = f"x{next(_examples)}-{uuid.uuid4().hex[:6]}-"
    streams_path, batch_path = migrated_schemas
    counter = itertools.count()
    traced = EventMetadata("corr", "cause", {"user": "ann"})

    async def run() -> None:
        versions: dict[str, int] = {}
        raw = await asyncpg.connect(pg.PG_URL, timeout=5)
        try:
            async with await PostgresEventStore.open(
                pg.test_config(streams_path), migrate=False
            ) as store:
                append_batch = pg.test_statements(batch_path).append_batch
                for batch in batches:
                    requests = []
                    for index, (events, expectation) in batch.items():
                        stream = f"{prefix}{index}"
                        stored = versions.get(stream, 0)
                        expected = {
                            "current": stored,
                            "below": max(0, stored - 1),
                            "above": stored + 1,
                            "zero": 0,
                        }[expectation]
                        new = [
                            pg.numbered_event(
                                stream, next(counter), traced if with_metadata else None
                            )
                            for with_metadata in events
                        ]
                        requests.append(AppendRequest.create({stream: expected}, new))
                    arrays = BatchArrays.build(requests, 1 << 20)
                    assert arrays.streams_parameters() is not None
                    by_streams = await store.append_many(requests)
                    rows = await raw.fetch(append_batch, *arrays.parameters())
                    by_batch = [outcome_of(r, q) for r, q in zip(rows, requests, strict=True)]
                    assert [pg.comparable(o) for o in by_streams] == [
                        pg.comparable(o) for o in by_batch
                    ]
                    for outcome in by_streams:
                        if isinstance(outcome, AppendResult):
                            versions.update(outcome.stream_versions)
        finally:
            await raw.close()

    asyncio.run(run())
    assert asyncio.run(pg.stored_rows(streams_path, empty_streams=False)) == asyncio.run(
        pg.stored_rows(batch_path, empty_streams=False)
    )


def _request(expected: dict[str, int], *streams: str) -> AppendRequest:
    return AppendRequest.create(expected, [pg.numbered_event(s, n) for n, s in enumerate(streams)])


def test_only_commands_on_distinct_single_streams_take_the_path() -> None:
    def takes(*requests: AppendRequest) -> bool:
        return BatchArrays.build(requests, 1 << 20).streams_parameters() is not None

    assert takes(_request({"a": 0}, "a"), _request({"b": 0}, "b", "b"), _request({"c": 1}))
    assert not takes(_request({"a": 0}, "a"), _request({"a": 1}, "a"))  # a shared stream
    assert not takes(_request({"a": 0}, "a"), _request({"b": 0, "c": 0}, "b"))  # two streams
    assert not takes(_request({"a": 0}, "a"), AppendRequest.create({}, []))  # no stream


async def test_the_store_sends_such_a_batch_to_append_streams(pg_schema: str) -> None:
    async with await pg.fresh_store(pg_schema) as store:
        await pg.rename_functions(pg_schema, "append_batch", "gone")
        outcomes = await store.append_many(
            [_request({"a": 0}, "a", "a"), _request({"b": 0}, "b"), _request({"c": 5}, "c")]
        )
        assert outcomes[:2] == [
            AppendResult({StreamId("a"): 2}, (1, 2)),
            AppendResult({StreamId("b"): 1}, (3,)),
        ]
        with pytest.raises(StoreError, match="append_batch"):  # a stream shared: append_batch
            await store.append_many([_request({"a": 2}, "a"), _request({"a": 3}, "a")])


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ((["a", "a"], [0, 0], [1, 2]), "as many distinct streams"),
        ((["a", None], [0, 0], [1, 2]), "as many distinct streams"),
        ((["a", "b"], [0, None], [1, 2]), "as many distinct streams"),
        ((["a", "b"], [0, 0], [2, 1]), "as many distinct streams"),
        ((["a", "b"], [0, 0], [1, 3]), "as many distinct streams"),
        ((["a", "b"], [0, 0], [1]), "as many distinct streams"),
    ],
)
async def test_append_streams_refuses_arrays_that_do_not_describe_its_batch(
    pg_schema: str, arguments: tuple[list[Any], ...], complaint: str
) -> None:
    async with await pg.fresh_store(pg_schema):
        pass
    await pg.assert_refused(
        pg_schema, pg.test_statements(pg_schema).append_streams, arguments, complaint
    )


async def test_a_stream_that_reaches_the_expected_version_while_the_batch_waits_is_written(
    pg_schema: str,
) -> None:
    """The version update reads each row as of its start. Here it waits for a row
    (``r``) another transaction holds, and that transaction, before it commits,
    also moves ``s`` to the version the batch expects: the update's own view of
    ``s`` is one behind, so it passes ``s`` by; append_streams must look again
    and write it, not answer a conflict whose stream is at the expected version."""
    async with await pg.fresh_store(pg_schema) as store:
        await store.append_many([_request({"r": 0}, "r"), _request({"s": 0}, "s")])
        batch = [_request({"r": 1}, "r"), _request({"s": 2}, "s")]
        outcomes = await pg.append_while_moved(store, pg_schema, batch)
        # the stream's row moved with its events: the next append at 3 is accepted
        after = await store.append(_request({"s": 3}, "s"))
        assert after.stream_versions == {StreamId("s"): 4}
    assert outcomes == [
        AppendResult({StreamId("r"): 2}, (4,)),
        AppendResult({StreamId("s"): 3}, (5,)),
    ]


async def test_batches_naming_the_same_streams_in_opposite_orders_never_deadlock(
    pg_schema: str,
) -> None:
    """append_streams takes its rows in stream_id order whatever the order of its
    arrays: two connections sending the same streams in opposite orders, again and
    again, never deadlock, and every stream's version stays its event count."""
    names = [f"s{n:02}" for n in range(12)]
    async with await pg.fresh_store(pg_schema) as store:
        await store.append_many([_request({name: 0}, name) for name in names])
    statements = pg.test_statements(pg_schema)
    versions_sql = f'SELECT stream_id, version FROM "{pg_schema}".streams'

    async def writer(order: list[str], rounds: int) -> int:
        conn = await asyncpg.connect(pg.test_config(pg_schema).dsn)
        written = 0
        try:
            for _ in range(rounds):
                stored = await conn.fetch(versions_sql)
                current = {row["stream_id"]: row["version"] for row in stored}
                batch = [_request({name: current[name]}, name) for name in order]
                parameters = BatchArrays.build(batch, 1 << 20).streams_parameters()
                assert parameters is not None
                rows = await conn.fetch(statements.append_streams, *parameters)
                written += sum(1 for row in rows if row["conflict_stream"] is None)
        finally:
            await conn.close()
        return written

    forward, backward = await asyncio.gather(writer(names, 400), writer(list(reversed(names)), 400))
    assert forward + backward > 0
    assert await pg.events_counted_by_versions(pg_schema) == len(names) + forward + backward


async def test_a_stream_that_moved_meanwhile_is_locked_again_in_order_never_out_of_it(
    pg_schema: str,
) -> None:
    """The schedule of pg.pass_by_schedule, with the batch [{k0@1}, {k1@2}, {k2@1}]."""
    batch = [_request({"k0": 1}, "k0"), _request({"k1": 2}, "k1"), _request({"k2": 1}, "k2")]
    parameters = BatchArrays.build(batch, 1 << 20).streams_parameters()
    assert parameters is not None
    statement = pg.test_statements(pg_schema).append_streams
    rows, other_rows = await pg.pass_by_schedule(pg_schema, statement, parameters)
    assert other_rows[0]["conflict_stream"] is None  # it wrote k1 and k2
    assert rows[0]["conflict_stream"] is None  # k0
    conflicts = [(row["conflict_stream"], row["conflict_actual"]) for row in rows[1:]]
    assert conflicts == [("k1", 3), ("k2", 2)]
    assert await pg.events_counted_by_versions(pg_schema) == 3 + 1 + 1 + 2


@pytest.mark.parametrize(
    "arrays",
    [
        "'[0:1]={a,b}', '{0,0}', '{1,2}'",  # streams numbered from 0
        "'{a,b}', '[0:1]={0,5}', '{1,2}'",  # versions numbered from 0
        "'{a,b}', '{0,0}', '[2:3]={1,2}'",  # slice ends numbered from 2
        "'{{a,b}}', '{0,0}', '{1,2}'",  # two dimensions
    ],
)
async def test_append_streams_refuses_arrays_not_numbered_from_one(
    pg_schema: str, arrays: str
) -> None:
    """The function reads its arrays by index (migration 0014 added the check)."""
    async with await pg.fresh_store(pg_schema):
        pass
    raw = await asyncpg.connect(pg.PG_URL, timeout=5)
    try:
        with pytest.raises(asyncpg.RaiseError, match="as many distinct streams"):
            await raw.fetch(
                f'SELECT * FROM "{pg_schema}".append_streams({arrays},'
                " ARRAY[gen_random_uuid(), gen_random_uuid()], '{T,T}', '{x,y}', '{x,y}')"
            )
    finally:
        await raw.close()
