"""Commands that share no stream, each on one or more: ``append_disjoint``
(migrations/0014), the path the PostgreSQL store takes for such a batch (a batch
of transfers), against ``append_batch``, which takes any batch.

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
from eventcore.errors import StoreError, VersionConflict
from eventcore.types import AppendRequest, AppendResult, EventMetadata
from tests import pg

pytestmark = pytest.mark.postgres

_expectation = st.sampled_from(["current", "current", "current", "below", "above", "zero"])
# A command: its streams (1-3), each with an expectation, and its events, each the
# index of one of its streams (any order, any of them; none at all) and whether it
# carries metadata.
_command = st.integers(1, 3).flatmap(
    lambda width: st.tuples(
        st.lists(_expectation, min_size=width, max_size=width),
        st.lists(st.tuples(st.integers(0, width - 1), st.booleans()), max_size=4),
    )
)
_batch = st.lists(_command, min_size=1, max_size=6)


@pytest.fixture(scope="module")
def migrated_schemas() -> Iterator[tuple[str, str]]:
    yield from pg.migrated_schema_pair()


_examples = itertools.count()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(_batch, min_size=1, max_size=4), seed=st.randoms())
def test_commands_sharing_no_stream_answer_and_store_as_append_batch_does(
    migrated_schemas: tuple[str, str], batches: list[list[Any]], seed: Any
) -> None:
    """The store (append_disjoint) in one schema, the same requests as one call of
    append_batch in the other. Each batch's commands take distinct streams from a
    pool of 18, so streams recur across batches and versions move."""
    prefix = f"x{next(_examples)}-{uuid.uuid4().hex[:6]}-"
    disjoint_path, batch_path = migrated_schemas
    counter = itertools.count()
    traced = EventMetadata("corr", "cause", {"user": "ann"})

    async def run() -> None:
        versions: dict[str, int] = {}
        raw = await asyncpg.connect(pg.PG_URL, timeout=5)
        try:
            async with await PostgresEventStore.open(
                pg.test_config(disjoint_path), migrate=False
            ) as store:
                append_batch = pg.test_statements(batch_path).append_batch
                for batch in batches:
                    pool = [f"{prefix}{n}" for n in range(18)]
                    seed.shuffle(pool)
                    requests = []
                    for expectations, events in batch:
                        streams = [pool.pop() for _ in expectations]
                        expected = {}
                        for stream, expectation in zip(streams, expectations, strict=True):
                            stored = versions.get(stream, 0)
                            expected[stream] = {
                                "current": stored,
                                "below": max(0, stored - 1),
                                "above": stored + 1,
                                "zero": 0,
                            }[expectation]
                        new = [
                            pg.numbered_event(
                                streams[i], next(counter), traced if with_metadata else None
                            )
                            for i, with_metadata in events
                        ]
                        requests.append(AppendRequest.create(expected, new))
                    arrays = BatchArrays.build(requests, 1 << 20)
                    assert arrays.disjoint_parameters() is not None
                    by_disjoint = await store.append_many(requests)
                    rows = await raw.fetch(append_batch, *arrays.parameters())
                    by_batch = [outcome_of(r, q) for r, q in zip(rows, requests, strict=True)]
                    assert [pg.comparable(o) for o in by_disjoint] == [
                        pg.comparable(o) for o in by_batch
                    ]
                    for outcome in by_disjoint:
                        if isinstance(outcome, AppendResult):
                            versions.update(outcome.stream_versions)
        finally:
            await raw.close()

    asyncio.run(run())
    assert asyncio.run(pg.stored_rows(disjoint_path)) == asyncio.run(pg.stored_rows(batch_path))


def _request(expected: dict[str, int], *streams: str) -> AppendRequest:
    return AppendRequest.create(expected, [pg.numbered_event(s, n) for n, s in enumerate(streams)])


def _unchecked(expected: dict[str, int], *streams: str) -> AppendRequest:
    return AppendRequest._trusted(
        tuple((StreamId(s), v) for s, v in expected.items()),
        tuple(pg.numbered_event(s, n) for n, s in enumerate(streams)),
    )


def test_only_commands_sharing_no_stream_take_the_path() -> None:
    def takes(*requests: AppendRequest) -> bool:
        return BatchArrays.build(requests, 1 << 20).disjoint_parameters() is not None

    assert takes(_request({"a": 0, "b": 0}, "a", "b"), _request({"c": 1, "d": 4}, "d"))
    assert takes(_request({"a": 0, "b": 0}, "b", "a", "b"))  # one command, streams interleaved
    assert takes(_request({"a": 0}), _request({"b": 0, "c": 0}, "c"))  # a command writing none
    assert not takes(_request({"a": 0, "b": 0}, "a"), _request({"b": 1, "c": 0}, "c"))  # shared
    # Requests the executor builds unchecked (no store gets others from create()):
    # an event for a stream its command does not expect goes to append_batch, which
    # refuses it.
    assert not takes(_request({"a": 0}, "a"), _unchecked({"b": 0}, "c"))  # no command's
    assert not takes(_request({"a": 0}, "a"), _unchecked({"b": 0}, "a"))  # another's
    assert not takes(_request({"a": 0}, "a"), AppendRequest.create({}, []))  # no stream


def test_an_event_is_sent_as_the_index_of_its_commands_expectation() -> None:
    arrays = BatchArrays.build(
        [_request({"a": 0, "b": 3}, "b", "a", "b"), _request({"c": 2}, "c")], 1 << 20
    )
    parameters = arrays.disjoint_parameters()
    assert parameters is not None
    ends, streams, versions, event_expect = parameters[:4]
    assert (ends, streams, versions, event_expect) == (
        [2, 3],
        ["a", "b", "c"],
        [0, 3, 2],
        [2, 1, 2, 3],
    )


async def test_the_store_sends_such_a_batch_to_append_disjoint(pg_schema: str) -> None:
    async with await pg.fresh_store(pg_schema) as store:
        await pg.rename_functions(pg_schema, "append_batch", "gone")
        outcomes = await store.append_many(
            [
                _request({"a": 0, "b": 0}, "a", "b", "a"),
                _request({"c": 0, "d": 0}, "d"),
                _request({"e": 5, "f": 0}, "e", "f"),
            ]
        )
        assert outcomes[:2] == [
            AppendResult({StreamId("a"): 2, StreamId("b"): 1}, (1, 2, 3)),
            AppendResult({StreamId("c"): 0, StreamId("d"): 1}, (4,)),
        ]
        assert pg.comparable(outcomes[2]) == pg.comparable(VersionConflict(StreamId("e"), 5, 0))
        with pytest.raises(StoreError, match="append_batch"):  # a stream shared: append_batch
            await store.append_many([_request({"a": 2}, "a"), _request({"a": 3}, "a")])


async def test_a_command_with_a_conflict_moves_none_of_its_streams(pg_schema: str) -> None:
    """``a`` is at its expected version and the update moves it; ``b`` is not, so
    the command writes nothing and ``a`` goes back: its next append at the same
    version is accepted, and the other command of the batch is written."""
    async with await pg.fresh_store(pg_schema) as store:
        await store.append_many([_request({"a": 0, "b": 0}, "a", "b", "b")])
        outcomes = await store.append_many(
            [_request({"a": 1, "b": 1}, "a", "b"), _request({"c": 0}, "c")]
        )
        assert [pg.comparable(o) for o in outcomes] == [
            pg.comparable(VersionConflict(StreamId("b"), 1, 2)),
            AppendResult({StreamId("c"): 1}, (4,)),
        ]
        again = await store.append(_request({"a": 1, "b": 2}, "a", "b"))
        assert again == AppendResult({StreamId("a"): 2, StreamId("b"): 3}, (5, 6))
    rows = await pg.stored_rows(pg_schema)
    assert rows[1] == [("a", 2), ("b", 3), ("c", 1)]
    assert rows[2] == 6


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        # expect_end, streams, versions, event_expect
        (([1, 2], ["a", "a"], [0, 0], [1, 2]), "on distinct streams"),
        (([1, 2], ["a", None], [0, 0], [1, 2]), "on distinct streams"),
        (([1, 2], ["a", "b"], [0, None], [1, 2]), "on distinct streams"),
        (([2, 1], ["a", "b"], [0, 0], [1, 2]), "on distinct streams"),
        (([1, 1], ["a", "b"], [0, 0], [1, 2]), "on distinct streams"),
        (([1, 3], ["a", "b"], [0, 0], [1, 2]), "on distinct streams"),
        (([1], ["a", "b"], [0, 0], [1, 2]), "on distinct streams"),
        (([1, 2], ["a", "b"], [0, 0], [1, 3]), "not indexes"),
        (([1, 2], ["a", "b"], [0, 0], [0, 2]), "not indexes"),
        (([1, 2], ["a", "b"], [0, 0], [1, None]), "not indexes"),
        (([1, 2], ["a", "b"], [0, 0], [2, 1]), "in command order"),
        (([1, 2], ["a", "b"], [0, 0], [1]), "on distinct streams"),
        # slice ends that are not increasing, though the last is right
        (([2, 1, 2], ["a", "b"], [0, 0], [1, 2]), "on distinct streams"),
        (([0, 2], ["a", "b"], [0, 0], [1, 2]), "on distinct streams"),
        (([None, 2], ["a", "b"], [0, 0], [1, 2]), "on distinct streams"),
    ],
)
async def test_append_disjoint_refuses_arrays_that_do_not_describe_its_batch(
    pg_schema: str, arguments: tuple[list[Any], ...], complaint: str
) -> None:
    async with await pg.fresh_store(pg_schema):
        pass
    await pg.assert_refused(
        pg_schema, pg.test_statements(pg_schema).append_disjoint, arguments, complaint
    )


async def test_a_stream_that_reaches_the_expected_version_while_the_batch_waits_is_written(
    pg_schema: str,
) -> None:
    """The version update reads each row as of its start. Here it waits for a row
    (``r``) another transaction holds, and that transaction, before it commits,
    also moves ``s`` to the version the batch expects: the update's own view of
    ``s`` is one behind, so it passes ``s`` by; append_disjoint must look again and
    write the command on ``s`` and ``t``, not answer a conflict whose stream is at
    the expected version (nor leave ``t`` moved without its events)."""
    async with await pg.fresh_store(pg_schema) as store:
        await store.append_many([_request({"r": 0}, "r"), _request({"s": 0, "t": 0}, "s", "t")])
        batch = [_request({"r": 1}, "r"), _request({"s": 2, "t": 1}, "s", "t")]
        outcomes = await pg.append_while_moved(store, pg_schema, batch)
        after = await store.append(_request({"s": 3, "t": 2}, "s", "t"))
        assert after.stream_versions == {StreamId("s"): 4, StreamId("t"): 3}
    assert outcomes == [
        AppendResult({StreamId("r"): 2}, (5,)),
        AppendResult({StreamId("s"): 3, StreamId("t"): 2}, (6, 7)),
    ]


async def test_batches_naming_the_same_streams_in_opposite_orders_never_deadlock(
    pg_schema: str,
) -> None:
    """append_disjoint takes its rows in stream_id order whatever the order of its
    arrays: two connections sending two-stream commands over the same streams in
    opposite orders, again and again, never deadlock, and every stream's version
    stays its event count (a command with a conflict moved none of its streams)."""
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
                batch = [
                    _request({a: current[a], b: current[b]}, a, b)
                    for a, b in zip(order[::2], order[1::2], strict=True)
                ]
                parameters = BatchArrays.build(batch, 1 << 20).disjoint_parameters()
                assert parameters is not None
                rows = await conn.fetch(statements.append_disjoint, *parameters)
                written += sum(2 for row in rows if row["conflict_stream"] is None)
        finally:
            await conn.close()
        return written

    forward, backward = await asyncio.gather(writer(names, 400), writer(list(reversed(names)), 400))
    assert forward + backward > 0
    assert await pg.events_counted_by_versions(pg_schema) == len(names) + forward + backward


async def test_a_stream_that_moved_meanwhile_is_locked_again_in_order_never_out_of_it(
    pg_schema: str,
) -> None:
    """The schedule of pg.pass_by_schedule, with the batch [{k0@1}, {k1@2, k2@1}]."""
    batch = [_request({"k0": 1}, "k0"), _request({"k1": 2, "k2": 1}, "k1", "k2")]
    parameters = BatchArrays.build(batch, 1 << 20).disjoint_parameters()
    assert parameters is not None
    statement = pg.test_statements(pg_schema).append_disjoint
    rows, other_rows = await pg.pass_by_schedule(pg_schema, statement, parameters)
    assert other_rows[0]["conflict_stream"] is None  # it wrote k1 and k2
    assert rows[0]["conflict_stream"] is None  # k0
    assert (rows[1]["conflict_stream"], rows[1]["conflict_actual"]) == ("k1", 3)
    assert await pg.events_counted_by_versions(pg_schema) == 3 + 1 + 1 + 2


@pytest.mark.parametrize(
    "arrays",
    [
        "'{2}', '[0:1]={a,b}', '{0,0}', '{1,2}'",  # streams numbered from 0
        "'{2}', '{a,b}', '[0:1]={0,5}', '{1,2}'",  # versions numbered from 0
        "'[2:3]={1,2}', '{a,b}', '{0,0}', '{1,2}'",  # slice ends numbered from 2
        "'{2}', '{{a,b}}', '{0,0}', '{1,2}'",  # two dimensions
    ],
)
async def test_append_disjoint_refuses_arrays_not_numbered_from_one(
    pg_schema: str, arrays: str
) -> None:
    """The function reads its arrays by index: one numbered otherwise (which no
    driver sends, but SQL can) would write events to the wrong streams."""
    async with await pg.fresh_store(pg_schema):
        pass
    raw = await asyncpg.connect(pg.PG_URL, timeout=5)
    try:
        with pytest.raises(asyncpg.RaiseError, match="on distinct streams"):
            await raw.fetch(
                f'SELECT * FROM "{pg_schema}".append_disjoint({arrays},'
                " ARRAY[gen_random_uuid(), gen_random_uuid()], '{T,T}', '{x,y}', '{x,y}')"
            )
    finally:
        await raw.close()
