"""A batch whose commands share streams (``append_batch`` cuts it into runs of
commands that share none, migrations/0009) answers and stores exactly what the
same requests made one after another do.

Each example sends the same requests (same event ids) to two schemas of the real
server: as one ``append_many`` batch to one, one request per call to the other,
and compares every outcome and every row: ``events`` but ``recorded_at``, the
streams that have events, and ``log_head``."""

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
from eventcore.backends.postgres._writes import BatchArrays
from eventcore.errors import VersionConflict
from eventcore.types import AppendRequest, AppendResult, NewEvent
from tests import pg

pytestmark = pytest.mark.postgres

_STREAMS = "abcdef"

# (streams, events as stream indexes into them, expectation)
_command = st.tuples(
    st.lists(st.sampled_from(_STREAMS), min_size=1, max_size=3, unique=True),
    st.lists(st.integers(0, 2), max_size=3),
    st.sampled_from(["after_batch", "after_batch", "stored", "stale"]),
)
_batch = st.lists(_command, min_size=2, max_size=10)


def _requests(
    batch: list[Any], stored: dict[str, int], prefix: str, counter: Iterator[int]
) -> list[AppendRequest]:
    """Expected versions that are mostly right: what the commands before it in the
    batch leave if they all succeed, or what is stored, or one off."""
    pending: dict[str, int] = {}
    requests = []
    for streams, events, expectation in batch:
        names = [f"{prefix}{s}" for s in streams]
        expected = {}
        for name in names:
            version = stored.get(name, 0)
            if expectation == "after_batch":
                version += pending.get(name, 0)
            elif expectation == "stale":
                version = version - 1 if version else 1
            expected[name] = version
        new = []
        for index in events:
            name = names[index % len(names)]
            new.append(NewEvent(StreamId(name), "Happened", b'{"n":%d}' % next(counter)))
            pending[name] = pending.get(name, 0) + 1
        requests.append(AppendRequest.create(expected, new))
    return requests


@pytest.fixture(scope="module")
def migrated_schemas() -> Iterator[tuple[str, str]]:
    yield from pg.migrated_schema_pair()


_examples = itertools.count()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(_batch, min_size=1, max_size=3))
def test_a_batch_of_commands_sharing_streams_is_as_one_after_another(
    migrated_schemas: tuple[str, str], batches: list[list[Any]]
) -> None:
    prefix = f"x{next(_examples)}-{uuid.uuid4().hex[:6]}-"
    counter = itertools.count()
    batched, one_by_one = migrated_schemas

    async def run() -> None:
        stored: dict[str, int] = {}
        async with (
            await PostgresEventStore.open(pg.test_config(batched), migrate=False) as together,
            await PostgresEventStore.open(pg.test_config(one_by_one), migrate=False) as apart,
        ):
            for batch in batches:
                requests = _requests(batch, stored, prefix, counter)
                in_one = await together.append_many(requests)
                in_turn = [(await apart.append_many([r]))[0] for r in requests]
                assert [pg.comparable(o) for o in in_one] == [pg.comparable(o) for o in in_turn]
                for outcome in in_one:
                    if isinstance(outcome, AppendResult):
                        stored.update(outcome.stream_versions)

    asyncio.run(run())
    assert asyncio.run(pg.stored_rows(batched, empty_streams=False)) == asyncio.run(
        pg.stored_rows(one_by_one, empty_streams=False)
    )


async def test_runs_of_independent_commands_take_positions_in_command_order(
    pg_schema: str,
) -> None:
    """Runs a, b | a, c | c: each run sees what the one before it wrote."""

    def request(expected: dict[str, int], *streams: str) -> AppendRequest:
        return AppendRequest.create(
            expected, [NewEvent(StreamId(s), "Happened", b"{}") for s in streams]
        )

    async with await pg.fresh_store(pg_schema) as store:
        outcomes = await store.append_many(
            [
                request({"a": 0}, "a"),
                request({"b": 0}, "b", "b"),
                request({"a": 1, "c": 0}, "a", "c"),
                request({"c": 0}, "c"),  # stale: the command before wrote c
                request({"c": 1, "b": 2}, "c"),
            ]
        )
    results = [o.positions if isinstance(o, AppendResult) else o for o in outcomes]
    assert results[:3] == [(1,), (2, 3), (4, 5)]
    assert not isinstance(results[3], tuple)
    assert results[4] == (6,)


# the call an earlier eventcore makes (no lean argument)
_EARLIER_APPEND_BATCH = (
    'SELECT * FROM "{}".append_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)'
)


async def test_append_batch_answers_every_success_with_its_streams_and_versions(
    pg_schema: str,
) -> None:
    """Processes of an earlier eventcore call append_batch on a schema a newer one
    has migrated, and read a success's new versions from its row: called as they
    call it, the row keeps them, read-only streams included; called lean, as this
    version calls it, only the first position."""

    def request(expected: dict[str, int], *streams: str) -> AppendRequest:
        return AppendRequest.create(
            expected, [NewEvent(StreamId(s), "Happened", b"{}") for s in streams]
        )

    async with await pg.fresh_store(pg_schema) as store:
        await store.append(request({"a": 0, "r": 0}, "a", "r"))
        batch = [
            request({"a": 1, "r": 1}, "a", "a"),  # r is only read
            request({"b": 0}, "b"),
            request({"c": 3}, "c"),  # stale: c has no events
        ]
        arrays = BatchArrays.build(batch, 1 << 20).parameters()
        raw = await asyncpg.connect(pg.test_config(pg_schema).dsn)
        try:
            rows = await _rolled_back(raw, _EARLIER_APPEND_BATCH.format(pg_schema), arrays)
            lean_rows = await _rolled_back(raw, pg.test_statements(pg_schema).append_batch, arrays)
        finally:
            await raw.close()
        outcomes = await store.append_many(batch)
    assert [tuple(row) for row in rows] == [
        (1, 3, ["a", "r"], [3, 1], None, None, None),
        (2, 5, ["b"], [1], None, None, None),
        (3, None, None, None, "c", 3, 0),
    ]
    assert [tuple(row) for row in lean_rows] == [
        (1, 3, None, None, None, None, None),
        (2, 5, None, None, None, None, None),
        (3, None, None, None, "c", 3, 0),
    ]
    assert outcomes[0] == AppendResult({StreamId("a"): 3, StreamId("r"): 1}, (3, 4))
    assert outcomes[1] == AppendResult({StreamId("b"): 1}, (5,))
    assert isinstance(outcomes[2], VersionConflict)


async def _rolled_back(raw: asyncpg.Connection, sql: str, arguments: tuple[Any, ...]) -> list[Any]:
    """The rows of ``sql`` called in a transaction that is then rolled back."""
    rows: list[Any] = []
    try:
        async with raw.transaction():
            rows = await raw.fetch(sql, *arguments)
            raise _RollBack
    except _RollBack:
        pass
    return rows


class _RollBack(Exception):
    """Leaves the raw connection's transaction without committing it."""
