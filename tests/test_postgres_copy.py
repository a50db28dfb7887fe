"""Big batches by COPY (``copy_threshold``): the same requests stored through the
COPY path and through the array path leave the same rows, answers, errors and
notifications.

Each comparison appends the same requests (same event ids) to two schemas of the
real server, one store with ``copy_threshold=1`` (every batch goes by COPY) and
one with ``copy_threshold=None`` (never), and compares every column of every row
of ``events`` except ``recorded_at`` (the transaction's clock), every row of
``streams``, and ``log_head``."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
from eventcore.errors import DuplicateEventId, VersionConflict
from eventcore.types import AppendRequest, AppendResult, EventMetadata, NewEvent, StreamId
from tests import pg

_COPY_USED = "SELECT to_regclass('pg_temp.eventcore_staged_events') IS NOT NULL"


def _request(expected: dict[str, int], *events: NewEvent) -> AppendRequest:
    return AppendRequest.create(expected, events)


@contextlib.asynccontextmanager
async def _two_stores(
    copy_schema: str, array_schema: str, *, migrate: bool = True
) -> AsyncIterator[tuple[PostgresEventStore, PostgresEventStore]]:
    async with (
        await PostgresEventStore.open(
            pg.test_config(copy_schema, copy_threshold=1), migrate=migrate
        ) as copying,
        await PostgresEventStore.open(
            pg.test_config(array_schema, copy_threshold=None), migrate=migrate
        ) as arrays,
    ):
        yield copying, arrays


@pytest.fixture
async def schemas() -> AsyncIterator[tuple[str, str]]:
    async for first in pg.schema_fixture():
        async for second in pg.schema_fixture():
            yield first, second


async def _append_both(
    stores: tuple[PostgresEventStore, PostgresEventStore], batch: Sequence[AppendRequest]
) -> tuple[list[object], list[object]]:
    copying, arrays = stores
    by_copy = [pg.comparable(o) for o in await copying.append_many(batch)]
    by_arrays = [pg.comparable(o) for o in await arrays.append_many(batch)]
    return by_copy, by_arrays


def _mixed_batches() -> list[list[AppendRequest]]:
    """Every shape append_batch distinguishes: one command; commands sharing no
    stream (with a conflict, a read-only command, several streams per command);
    commands sharing a stream (each sees the versions the one before left)."""
    traced = EventMetadata("corr-1", "cause-1", {"user": "ann", "n": [1, 2]})
    return [
        [_request({"a": 0}, *(pg.numbered_event("a", n) for n in range(40)))],
        [
            _request(
                {"b": 0, "c": 0, "a": 40},
                pg.numbered_event("b", 1, traced),
                pg.numbered_event("c", 2),
                pg.numbered_event("b", 3),
            )
        ],
        [
            _request({"d": 0}, pg.numbered_event("d", 1), pg.numbered_event("d", 2)),
            _request({"a": 39}, pg.numbered_event("a", 99)),  # stale: a is at 40
            _request({"e": 0, "b": 2}),  # reads only
            _request(
                {"f": 0, "g": 0}, pg.numbered_event("g", 1, traced), pg.numbered_event("f", 2)
            ),
        ],
        [
            _request({"h": 0}, pg.numbered_event("h", 1)),
            _request({"h": 0}, pg.numbered_event("h", 2)),  # stale after the one before
            _request({"h": 1, "i": 0}, pg.numbered_event("h", 3), pg.numbered_event("i", 4)),
        ],
    ]


# -- the COPY path and the array path agree ---------------------------------------------


@pytest.mark.postgres
async def test_copy_path_stores_every_column_as_the_array_path_does(
    schemas: tuple[str, str],
) -> None:
    async with _two_stores(*schemas) as stores:
        for batch in _mixed_batches():
            by_copy, by_arrays = await _append_both(stores, batch)
            assert by_copy == by_arrays
    copied, arrayed = await pg.stored_rows(schemas[0]), await pg.stored_rows(schemas[1])
    assert copied == arrayed
    assert copied[2] == 40 + 3 + 4 + 3  # log_head: every event written, once


@pytest.mark.postgres
async def test_copy_path_notifies_the_same_positions_as_the_array_path(
    schemas: tuple[str, str],
) -> None:
    heard: dict[str, list[str]] = {schema: [] for schema in schemas}
    all_heard = asyncio.Event()

    def hear(schema: str, payload: str) -> None:
        heard[schema].append(payload)
        if all(len(payloads) == 5 for payloads in heard.values()):
            all_heard.set()

    listener = await asyncpg.connect(pg.PG_URL, timeout=5)
    try:
        for schema in schemas:
            channel = PostgresConfig(schema=schema).channel
            await listener.add_listener(channel, lambda *a, s=schema: hear(s, a[3]))
        async with _two_stores(*schemas) as stores:
            for batch in _mixed_batches():
                await _append_both(stores, batch)
        await asyncio.wait_for(all_heard.wait(), timeout=5)
    finally:
        await listener.close()
    # the shared-stream batch notifies once per command that wrote, as append_one does
    assert heard[schemas[0]] == heard[schemas[1]] == ["40", "43", "47", "48", "50"]


@pytest.mark.postgres
async def test_a_conflict_on_the_copy_path_raises_as_on_the_array_path_and_stores_nothing(
    schemas: tuple[str, str],
) -> None:
    async with _two_stores(*schemas) as (copying, arrays):
        first = _request({"a": 0}, pg.numbered_event("a"))
        for store in (copying, arrays):
            await store.append(first)
        before = await pg.stored_rows(schemas[0])
        stale = _request({"a": 0, "b": 0}, *(pg.numbered_event("b", n) for n in range(20)))
        with pytest.raises(VersionConflict) as by_copy:
            await copying.append(stale)
        with pytest.raises(VersionConflict) as by_arrays:
            await arrays.append(stale)
    assert pg.comparable(by_copy.value) == pg.comparable(by_arrays.value)
    assert (by_copy.value.stream_id, by_copy.value.expected, by_copy.value.actual) == ("a", 0, 1)
    after = await pg.stored_rows(schemas[0])
    assert (after[0], after[2]) == (before[0], before[2])  # no event, no position
    # (both paths leave the row, at version 0, of a stream the append named)
    assert after == await pg.stored_rows(schemas[1])


@pytest.mark.postgres
async def test_a_stored_event_id_on_the_copy_path_raises_duplicate_and_stores_nothing(
    schemas: tuple[str, str],
) -> None:
    first = pg.numbered_event("a")
    async with _two_stores(*schemas) as (copying, arrays):
        for store in (copying, arrays):
            await store.append(_request({"a": 0}, first))
        before = await pg.stored_rows(schemas[0])
        again = [_request({"b": 0}, pg.numbered_event("b")), _request({"a": 1}, first)]
        with pytest.raises(DuplicateEventId) as by_copy:
            await copying.append_many(again)
        with pytest.raises(DuplicateEventId) as by_arrays:
            await arrays.append_many(again)
    assert by_copy.value.event_ids == by_arrays.value.event_ids == (first.event_id,)
    assert await pg.stored_rows(schemas[0]) == before
    assert await pg.stored_rows(schemas[1]) == before


@pytest.mark.postgres
async def test_an_event_id_repeated_within_a_copied_batch_raises_duplicate(
    pg_schema: str,
) -> None:
    twice = pg.numbered_event("b")
    twin = NewEvent(StreamId("c"), "Happened", b"{}", event_id=twice.event_id)
    async with await pg.fresh_store(pg_schema, copy_threshold=1) as store:
        with pytest.raises(DuplicateEventId) as caught:
            await store.append_many([_request({"b": 0}, twice), _request({"c": 0}, twin)])
        assert caught.value.event_ids == (twice.event_id,)
        assert await store.head_position() == 0


# -- which batches go by COPY -------------------------------------------------------------


async def _copy_table_exists(store: PostgresEventStore) -> bool:
    # The store has one connection, so this is the session that appended.
    async with store.checkpoint_transaction("probe", 0) as transaction:
        ((exists,),) = await transaction.fetch(_COPY_USED)
    return bool(exists)


@pytest.mark.postgres
async def test_a_batch_of_copy_threshold_events_goes_by_copy(pg_schema: str) -> None:
    async with await pg.fresh_store(
        pg_schema, copy_threshold=3, max_connections=1, min_connections=1
    ) as store:
        await store.append_many(
            [
                _request({"a": 0}, pg.numbered_event("a"), pg.numbered_event("a")),
                _request({"b": 0}, pg.numbered_event("b")),
            ]
        )
        assert await _copy_table_exists(store)
        assert [e.stream_version for e in await store.read_stream("a")] == [1, 2]


@pytest.mark.postgres
async def test_a_batch_below_copy_threshold_goes_as_arrays(pg_schema: str) -> None:
    async with await pg.fresh_store(
        pg_schema, copy_threshold=4, max_connections=1, min_connections=1
    ) as store:
        await store.append_many(
            [
                _request({"a": 0}, pg.numbered_event("a"), pg.numbered_event("a")),
                _request({"b": 0}, pg.numbered_event("b")),
            ]
        )
        assert not await _copy_table_exists(store)
        assert await store.head_position() == 3


@pytest.mark.postgres
async def test_concurrent_appends_that_group_commit_joins_past_the_threshold_all_land(
    pg_schema: str,
) -> None:
    async with await pg.fresh_store(pg_schema, copy_threshold=10) as store:
        streams = [f"s{n}" for n in range(40)]
        results = await asyncio.gather(
            *(
                store.append(_request({s: 0}, *(pg.numbered_event(s, n) for n in range(5))))
                for s in streams
            )
        )
        assert sorted(p for r in results for p in r.positions) == list(range(1, 201))
        for stream in streams:
            assert [e.stream_version for e in await store.read_stream(stream)] == [1, 2, 3, 4, 5]


def test_copy_is_off_by_default_and_any_positive_threshold_is_accepted() -> None:
    assert PostgresConfig.production().copy_threshold is None
    assert PostgresConfig.production(copy_threshold=1).copy_threshold == 1


# -- random batches -----------------------------------------------------------------------

_STREAMS = ("a", "b", "c", "d")
_command = st.tuples(
    st.lists(st.sampled_from(_STREAMS), min_size=1, max_size=3, unique=True),
    st.lists(st.tuples(st.integers(0, 2), st.booleans()), max_size=6),  # (stream index, traced)
    st.sampled_from(["current", "current", "pending", "stale"]),
)
_batches = st.lists(st.lists(_command, min_size=1, max_size=4), min_size=1, max_size=3)


def _requests(
    batch: Sequence[Any], versions: dict[str, int], prefix: str, counter: Iterator[int]
) -> list[AppendRequest]:
    """Requests whose expected versions are mostly right: the stored version, or
    that plus what earlier commands of the batch write (right when they succeed),
    or one too low."""
    pending: dict[str, int] = {}
    requests = []
    for streams, events, expectation in batch:
        names = [f"{prefix}{s}" for s in streams]
        expected = {}
        for name in names:
            version = versions.get(name, 0)
            if expectation == "pending":
                version += pending.get(name, 0)
            elif expectation == "stale":
                version = max(0, version - 1) if version else version + 1
            expected[name] = version
        new = []
        for index, traced in events:
            name = names[index % len(names)]
            metadata = EventMetadata("corr", None, {"k": index}) if traced else None
            new.append(pg.numbered_event(name, next(counter), metadata))
            pending[name] = pending.get(name, 0) + 1
        requests.append(_request(expected, *new))
    return requests


@pytest.fixture(scope="module")
def migrated_schemas() -> Iterator[tuple[str, str]]:
    yield from pg.migrated_schema_pair()


_examples = itertools.count()


@pytest.mark.postgres
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=_batches)
# A one-stream request, stale on a stream that has no events: a conflict both ways.
@example(batches=[[(["a"], [(0, False)], "stale")]])
def test_random_batches_store_the_same_by_copy_as_by_arrays(
    migrated_schemas: tuple[str, str], batches: list[list[Any]]
) -> None:
    prefix = f"x{next(_examples)}-{uuid.uuid4().hex[:6]}-"
    counter = itertools.count()

    async def run() -> None:
        versions: dict[str, int] = {}
        async with _two_stores(*migrated_schemas, migrate=False) as stores:
            for batch in batches:
                requests = _requests(batch, versions, prefix, counter)
                by_copy, by_arrays = await _append_both(stores, requests)
                assert by_copy == by_arrays
                for outcome in by_copy:
                    if isinstance(outcome, AppendResult):
                        versions.update(outcome.stream_versions)
        # Without the version-0 rows of streams only checked: the array store sends
        # a lone one-stream request through append_to_stream, which makes no row
        # for a stream it finds in conflict, where COPY (like append_batch) does.
        copying, arrays = migrated_schemas
        copied = await pg.stored_rows(copying, empty_streams=False)
        assert copied == await pg.stored_rows(arrays, empty_streams=False)

    asyncio.run(run())
