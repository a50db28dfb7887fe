"""One command on one stream: ``append_to_stream`` (migrations/0008), the short
path the PostgreSQL store takes for it, against ``append_batch``, which takes
every other append.

The two must be indistinguishable: the same answers and the same rows for the
same requests (compared across two schemas of the real server), the same
waits on a stream another transaction holds, and nothing lost, doubled or
checked against a stale version when writer processes mix both paths on a few
hot streams."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventcore.backends.postgres import PostgresEventStore
from eventcore.backends.postgres._writes import BatchArrays, outcome_of
from eventcore.errors import StoreError, VersionConflict
from eventcore.types import (
    EMPTY_METADATA,
    AppendRequest,
    AppendResult,
    EventMetadata,
    NewEvent,
    StreamId,
)
from tests import pg
from tests.pg_tally_proc import tally_codec

pytestmark = pytest.mark.postgres


# -- the same requests, both paths ---------------------------------------------------

# (stream index, events, expectation): the stored version, one below or above it,
# or 0 (a new stream, or a stale one).
# An event: with metadata or without, and its type. Mostly one type and one
# metadata per command, which append_to_stream is sent once (migrations/0015).
_event = st.tuples(st.booleans(), st.sampled_from(["Happened", "Happened", "Noted"]))
_command = st.tuples(
    st.integers(0, 2),
    st.lists(_event, max_size=4),
    st.sampled_from(["current", "current", "current", "below", "above", "zero"]),
)
_commands = st.lists(_command, min_size=1, max_size=12)


@pytest.fixture(scope="module")
def migrated_schemas() -> Iterator[tuple[str, str]]:
    yield from pg.migrated_schema_pair()


_examples = itertools.count()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands=_commands)
def test_one_stream_appends_answer_and_store_as_append_batch_does(
    migrated_schemas: tuple[str, str], commands: list[Any]
) -> None:
    """The store (one command, one stream: append_to_stream) in one schema, the
    same requests as calls of append_batch in the other."""
    prefix = f"x{next(_examples)}-{uuid.uuid4().hex[:6]}-"
    short, batch = migrated_schemas
    counter = itertools.count()
    traced = EventMetadata("corr", "cause", {"user": "ann"})

    async def run() -> None:
        versions: dict[str, int] = {}
        raw = await asyncpg.connect(pg.PG_URL, timeout=5)
        try:
            async with await PostgresEventStore.open(pg.test_config(short), migrate=False) as store:
                append_batch = pg.test_statements(batch).append_batch
                for index, events, expectation in commands:
                    stream = f"{prefix}{index}"
                    stored = versions.get(stream, 0)
                    expected = {
                        "current": stored,
                        "below": max(0, stored - 1),
                        "above": stored + 1,
                        "zero": 0,
                    }[expectation]
                    new = [
                        NewEvent(
                            StreamId(stream),
                            event_type,
                            b'{"n":%d}' % next(counter),
                            traced if with_metadata else EMPTY_METADATA,
                        )
                        for with_metadata, event_type in events
                    ]
                    request = AppendRequest.create({stream: expected}, new)
                    (by_short,) = await store.append_many([request])
                    rows = await raw.fetch(
                        append_batch, *BatchArrays.build([request], 1 << 20).parameters()
                    )
                    by_batch = outcome_of(rows[0], request)
                    assert pg.comparable(by_short) == pg.comparable(by_batch)
                    if isinstance(by_short, AppendResult):
                        versions.update(by_short.stream_versions)
        finally:
            await raw.close()

    asyncio.run(run())
    # Compared once per example: the tables hold every example so far.
    assert asyncio.run(pg.stored_rows(short, empty_streams=False)) == asyncio.run(
        pg.stored_rows(batch, empty_streams=False)
    )


async def test_only_one_command_on_one_stream_takes_the_short_path(pg_schema: str) -> None:
    async with await pg.fresh_store(pg_schema) as store:
        await pg.rename_functions(pg_schema, "append_batch", "gone")
        await pg.rename_functions(pg_schema, "append_disjoint", "gone_too")
        one = await store.append(AppendRequest.create({"a": 0}, [pg.numbered_event("a", 1)]))
        assert one.positions == (1,)
        checks_only = await store.append(AppendRequest.create({"a": 1}))
        assert checks_only.stream_versions == {"a": 1}
        with pytest.raises(StoreError, match="append_disjoint"):
            await store.append(AppendRequest.create({"a": 1, "b": 0}, [pg.numbered_event("a", 2)]))
        with pytest.raises(StoreError, match="append_batch"):
            await store.append_many(  # two commands on one stream
                [
                    AppendRequest.create({"a": 1}, [pg.numbered_event("a", 3)]),
                    AppendRequest.create({"a": 2}, [pg.numbered_event("a", 4)]),
                ]
            )


async def test_a_type_and_metadata_every_event_shares_are_sent_once(pg_schema: str) -> None:
    traced = EventMetadata("corr", "cause", {"user": "ann"})
    events = [pg.numbered_event("s", n, traced) for n in range(3)]
    request = AppendRequest.create({"s": 0}, events)
    parameters = _one_stream_parameters(request)
    assert parameters[3] == ["Happened"]
    assert len(parameters[5]) == 1
    async with await pg.fresh_store(pg_schema) as store:
        await store.append(request)
        stored = await store.read_stream("s")
    assert [(e.event_id, e.event_type, e.payload) for e in stored] == [
        (e.event_id, e.event_type, e.payload) for e in events
    ]
    assert [e.metadata for e in stored] == [traced] * 3
    mixed = [pg.numbered_event("t", 1), pg.numbered_event("t", 2, traced)]
    assert len(_one_stream_parameters(AppendRequest.create({"t": 0}, mixed))[5]) == 2


@pytest.mark.parametrize(
    ("types", "metadata", "error", "match"),
    [
        # neither one for all nor one each
        (["A", "B"], [b"{}"] * 3, asyncpg.RaiseError, "differ in length"),
        (["A"] * 3, [b"{}", b"{}"], asyncpg.RaiseError, "differ in length"),
        (["A"], [b"{}"] * 4, asyncpg.RaiseError, "differ in length"),
        # a missing shared type: the NOT NULL column refuses it
        ([None], [b"{}"], asyncpg.NotNullViolationError, "event_type"),
    ],
)
async def test_event_arrays_the_function_refuses_write_nothing(
    pg_schema: str,
    types: list[str | None],
    metadata: list[bytes],
    error: type[Exception],
    match: str,
) -> None:
    async with await pg.fresh_store(pg_schema):
        pass
    raw = await asyncpg.connect(pg.PG_URL, timeout=5)
    try:
        ids = [uuid.uuid4() for _ in range(3)]
        with pytest.raises(error, match=match):
            await raw.fetch(
                pg.test_statements(pg_schema).append_to_stream,
                *("s", 0, ids, types, [b"{}"] * 3, metadata),
            )
        assert await raw.fetchval(f'SELECT count(*) FROM "{pg_schema}".events') == 0
    finally:
        await raw.close()


async def test_a_stream_with_a_row_but_no_events_takes_its_first_append(pg_schema: str) -> None:
    async with await pg.fresh_store(pg_schema) as store:
        # A check-only append leaves the stream a row at version 0.
        await store.append(AppendRequest.create({"quiet": 0}))
        result = await store.append(
            AppendRequest.create({"quiet": 0}, [pg.numbered_event("quiet", 1)])
        )
        assert result.stream_versions == {"quiet": 1}
        outcome = (await store.append_many([AppendRequest.create({"quiet": 0})]))[0]
        assert isinstance(outcome, VersionConflict)
        assert (outcome.expected, outcome.actual) == (0, 1)


# -- waiting on a stream another transaction holds -------------------------------------


@contextlib.asynccontextmanager
async def _holding(schema: str, stream: str, expected: int) -> AsyncIterator[Any]:
    """A raw transaction that has appended one event to ``stream`` (so holds its
    row) and has not committed; the caller commits or rolls it back."""
    raw = await asyncpg.connect(pg.PG_URL, timeout=5)
    try:
        transaction = raw.transaction()
        await transaction.start()
        request = AppendRequest.create({stream: expected}, [pg.numbered_event(stream, 100)])
        (row,) = await raw.fetch(
            pg.test_statements(schema).append_to_stream,
            *_one_stream_parameters(request),
        )
        assert isinstance(outcome_of(row, request), AppendResult)
        yield transaction
    finally:
        await raw.close()


def _one_stream_parameters(request: AppendRequest) -> tuple[Any, ...]:
    parameters = BatchArrays.build([request], 1 << 20).one_stream_parameters()
    assert parameters is not None
    return parameters


async def _waiting(store: PostgresEventStore, request: AppendRequest) -> asyncio.Task[Any]:
    task = asyncio.create_task(store.append_many([request]))
    await asyncio.sleep(0.3)
    assert not task.done(), "the append did not wait for the row's lock"
    return task


@pytest.mark.parametrize("holder_ends", ["commit", "rollback"])
@pytest.mark.parametrize("created_by_holder", [False, True], ids=["existing", "new"])
async def test_an_append_waiting_on_another_writer_sees_how_it_ended(
    pg_schema: str, created_by_holder: bool, holder_ends: str
) -> None:
    """The other writer committed: a conflict on the version it left. It rolled
    back: the append goes through, at the position the other had taken."""
    async with await pg.fresh_store(pg_schema) as store:
        before = 0
        if not created_by_holder:
            await store.append(AppendRequest.create({"s": 0}, [pg.numbered_event("s", 1)]))
            before = 1
        async with _holding(pg_schema, "s", before) as transaction:
            task = await _waiting(
                store, AppendRequest.create({"s": before}, [pg.numbered_event("s", 2)])
            )
            await (transaction.commit() if holder_ends == "commit" else transaction.rollback())
        (outcome,) = await task
        if holder_ends == "commit":
            assert isinstance(outcome, VersionConflict)
            assert (outcome.stream_id, outcome.expected, outcome.actual) == (
                "s",
                before,
                before + 1,
            )
        else:
            assert isinstance(outcome, AppendResult)
            assert outcome.stream_versions == {"s": before + 1}
            assert outcome.positions == (before + 1,)  # the rolled-back one left no gap
        log = await store.read_all()
        assert [e.global_position for e in log] == list(range(1, before + 2))
        assert [e.stream_version for e in log] == list(range(1, before + 2))


# -- writer processes mixing both paths on hot streams ---------------------------------

WRITERS = 4
COMMANDS_PER_WRITER = 300
STREAMS = 6


@pytest.mark.slow
async def test_writer_processes_mixing_one_and_two_stream_appends_lose_nothing(
    pg_schema: str,
) -> None:
    async with await pg.fresh_store(pg_schema) as store:
        writers = [
            await pg.start_writer(
                "tests.pg_tally_proc",
                pg_schema,
                w,
                COMMANDS_PER_WRITER,
                7000 + w,
                STREAMS,
                "on" if w % 2 else "off",  # alone, and in group commits
            )
            for w in range(WRITERS)
        ]
        await pg.release_writers(writers)
        reports = await pg.writer_reports(writers)

        log = await store.read_all()
        assert [e.global_position for e in log] == list(range(1, len(log) + 1)), "gaps"
        committed = Counter(tag for r in reports for tag in r["committed"])
        assert set(committed.values()) == {1}
        assert sum(committed.values()) + sum(r["exhausted"] for r in reports) == (
            WRITERS * COMMANDS_PER_WRITER
        )
        assert sum(r["retries"] for r in reports) > 0, "the writers must really conflict"
        written: Counter[str] = Counter()
        widths: Counter[int] = Counter()
        for n in range(STREAMS):
            events = await store.read_stream(f"tally-{n}")
            for record in events:
                counted = tally_codec.decode(record)
                # The command saw every event before this one: no stale check passed.
                assert counted.seen == record.stream_version - 1, (record, counted)
                written[counted.tag] += 1
        widths.update(written.values())
        assert set(written) == set(committed)
        # Both paths were taken: one-stream commands wrote one event, the others two.
        assert widths[1] > 0
        assert widths[2] > 0
        assert set(widths) == {1, 2}
