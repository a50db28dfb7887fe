"""PostgreSQL's own defences of the log: ``append_batch`` refuses arrays that would
hand out positions for rows it did not insert, stored events cannot be rewritten
by an upsert, and lock trouble is never reported as a conflict nobody caused.

The SQL functions are called directly, with arrays no store would build, on a
schema of the test's own."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest

from eventcore.backends.postgres import PostgresEventStore
from eventcore.backends.postgres._writes import conflict_from_lock_error, lock_error_outcomes
from eventcore.errors import StoreUnavailable, VersionConflict
from eventcore.types import AppendRequest, NewEvent, StreamId
from tests import pg

pytestmark = pytest.mark.postgres


def _event(stream: str) -> NewEvent:
    return NewEvent(StreamId(stream), "Happened", b"{}")


@contextlib.asynccontextmanager
async def _raw_connection() -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg.PG_URL, timeout=5)
    try:
        yield conn
    finally:
        await conn.close(timeout=5)


@contextlib.asynccontextmanager
async def _store_and_raw(schema: str) -> AsyncIterator[tuple[PostgresEventStore, Any]]:
    async with await pg.fresh_store(schema) as store, _raw_connection() as raw:
        yield store, raw


async def _call_batch(
    raw: Any,
    schema: str,
    expect: Sequence[tuple[int, str, int]],
    expect_end: list[int],
    events: Sequence[tuple[int, str]],
    event_end: list[int],
) -> list[Any]:
    """append_batch with the given (command, stream, version) expectations and
    (command, stream) events, and the given slice ends."""
    return list(
        await raw.fetch(
            f'SELECT * FROM "{schema}".append_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)',
            expect_end,
            [c for c, _, _ in expect],
            [s for _, s, _ in expect],
            [v for _, _, v in expect],
            event_end,
            [c for c, _ in events],
            [uuid.uuid4() for _ in events],
            [s for _, s in events],
            ["Forged" for _ in events],
            [b"{}" for _ in events],
            [b"{}" for _ in events],
        )
    )


async def _log_state(raw: Any, schema: str) -> tuple[int, int]:
    head = await raw.fetchval(f'SELECT position FROM "{schema}".log_head')
    count = await raw.fetchval(f'SELECT count(*) FROM "{schema}".events')
    return int(head), int(count)


# -- append_batch refuses what it cannot honour -------------------------------------------


async def test_append_batch_refuses_an_event_for_a_stream_it_was_not_given(pg_schema: str) -> None:
    async with _store_and_raw(pg_schema) as (_store, raw):
        with pytest.raises(asyncpg.RaiseError, match="not among"):
            await _call_batch(raw, pg_schema, [(1, "a", 0)], [1], [(1, "a"), (1, "b")], [2])
        assert await _log_state(raw, pg_schema) == (0, 0)


async def test_append_batch_refuses_an_event_for_an_existing_stream_it_did_not_lock(
    pg_schema: str,
) -> None:
    async with _store_and_raw(pg_schema) as (store, raw):
        await store.append(AppendRequest.create({"b": 0}, [_event("b")]))
        with pytest.raises(asyncpg.RaiseError, match="not among"):
            await _call_batch(raw, pg_schema, [(1, "a", 0)], [1], [(1, "b")], [1])
        assert await _log_state(raw, pg_schema) == (1, 1)
        assert await store.stream_version("b") == 1


async def test_independent_commands_refuse_an_event_for_another_commands_stream(
    pg_schema: str,
) -> None:
    async with _store_and_raw(pg_schema) as (_store, raw):
        with pytest.raises(asyncpg.RaiseError, match="not among"):
            await _call_batch(
                raw, pg_schema, [(1, "a", 0), (2, "c", 0)], [1, 2], [(1, "a"), (2, "a")], [1, 2]
            )
        assert await _log_state(raw, pg_schema) == (0, 0)


async def test_append_batch_refuses_events_past_the_last_commands_slice(pg_schema: str) -> None:
    async with _store_and_raw(pg_schema) as (_store, raw):
        with pytest.raises(asyncpg.RaiseError, match="event arrays"):
            await _call_batch(raw, pg_schema, [(1, "a", 0)], [1], [(1, "a"), (1, "a")], [1])
        assert await _log_state(raw, pg_schema) == (0, 0)


async def test_append_batch_refuses_event_commands_that_disagree_with_the_slices(
    pg_schema: str,
) -> None:
    async with _store_and_raw(pg_schema) as (_store, raw):
        with pytest.raises(asyncpg.RaiseError, match="event arrays"):
            await _call_batch(
                raw, pg_schema, [(1, "a", 0), (2, "c", 0)], [1, 2], [(1, "a"), (1, "a")], [1, 2]
            )
        assert await _log_state(raw, pg_schema) == (0, 0)


async def test_append_one_refuses_a_stream_without_a_row(pg_schema: str) -> None:
    # append_one trusts append_batch to have created and locked the stream rows;
    # called on its own with a stream that has none, it stores nothing.
    async with _store_and_raw(pg_schema) as (_store, raw):
        with pytest.raises(asyncpg.RaiseError, match="'ghost' has no row to lock"):
            await raw.fetch(
                f'SELECT * FROM "{pg_schema}".append_one(1, $1, $2, $3, $4, $5, $6, $7)',
                ["ghost"],
                [0],
                [uuid.uuid4()],
                ["ghost"],
                ["Forged"],
                [b"{}"],
                [b"{}"],
            )
        assert await _log_state(raw, pg_schema) == (0, 0)


async def test_append_independent_refuses_a_stream_without_a_row(pg_schema: str) -> None:
    async with _store_and_raw(pg_schema) as (_store, raw):
        await _call_batch(raw, pg_schema, [(1, "real", 0)], [1], [(1, "real")], [1])
        with pytest.raises(asyncpg.RaiseError, match="'ghost' has no row to lock"):
            await raw.fetch(
                f'SELECT * FROM "{pg_schema}".append_independent('
                "2, $1, $2, $3, $4, $5, $6, $7, $8, $9)",
                [1, 2],
                ["real", "ghost"],
                [1, 0],
                [1, 2],
                [uuid.uuid4(), uuid.uuid4()],
                ["real", "ghost"],
                ["Forged", "Forged"],
                [b"{}", b"{}"],
                [b"{}", b"{}"],
            )
        assert await _log_state(raw, pg_schema) == (1, 1)


_ONE_EVENT = (["Forged"], [b"{}"], [b"{}"])


@pytest.mark.parametrize(
    ("stream", "version", "ids", "rest"),
    [
        ("a", 0, [uuid.uuid4(), uuid.uuid4()], _ONE_EVENT),  # two ids, one event
        ("a", 0, [uuid.uuid4()], (["Forged"], [b"{}", b"{}"], [b"{}"])),  # two payloads
        ("a", 0, [uuid.uuid4()], (["Forged"], [b"{}"], None)),  # no metadata
        (None, 0, [uuid.uuid4()], _ONE_EVENT),  # no stream
        ("a", None, [uuid.uuid4()], _ONE_EVENT),  # no version
    ],
    ids=["ids", "payloads", "metadata", "stream", "version"],
)
async def test_append_to_stream_refuses_arrays_that_do_not_describe_its_events(
    pg_schema: str, stream: str | None, version: int | None, ids: list[uuid.UUID], rest: Any
) -> None:
    async with _store_and_raw(pg_schema) as (_store, raw):
        # Without the check a missing version never matches nor conflicts: the
        # function would retry forever. Bounded, that fails the test instead.
        await raw.execute("SET statement_timeout = '5s'")
        refused = r"append_to_stream: stream .*, version .*: the event arrays"
        with pytest.raises(asyncpg.RaiseError, match=refused):
            await raw.fetch(
                pg.test_statements(pg_schema).append_to_stream, stream, version, ids, *rest
            )
        assert await _log_state(raw, pg_schema) == (0, 0)
        assert await raw.fetchval(f'SELECT count(*) FROM "{pg_schema}".streams') == 0


async def test_append_to_stream_stores_nothing_of_an_event_with_a_missing_value(
    pg_schema: str,
) -> None:
    async with _store_and_raw(pg_schema) as (_store, raw):
        with pytest.raises(asyncpg.NotNullViolationError):
            await raw.fetch(
                pg.test_statements(pg_schema).append_to_stream,
                "a",
                0,
                [uuid.uuid4(), None],
                ["Forged", "Forged"],
                [b"{}", b"{}"],
                [b"{}", b"{}"],
            )
        assert await _log_state(raw, pg_schema) == (0, 0)
        assert await raw.fetchval(f'SELECT count(*) FROM "{pg_schema}".streams') == 0


async def test_well_formed_arrays_still_append(pg_schema: str) -> None:
    async with _store_and_raw(pg_schema) as (store, raw):
        rows = await _call_batch(
            raw, pg_schema, [(1, "a", 0), (2, "c", 0)], [1, 2], [(1, "a"), (2, "c")], [1, 2]
        )
        assert [r["first_position"] for r in rows] == [1, 2]
        assert await store.head_position() == 2


# -- stored events stay as written --------------------------------------------------------


async def test_an_upsert_cannot_rewrite_a_stored_event(pg_schema: str) -> None:
    async with _store_and_raw(pg_schema) as (store, raw):
        await store.append(AppendRequest.create({"s": 0}, [_event("s")]))
        with pytest.raises(asyncpg.RaiseError, match="immutable"):
            await raw.execute(
                f'INSERT INTO "{pg_schema}".events (position, event_id, stream_id,'
                " stream_version, event_type, payload, metadata)"
                " VALUES (1, $1, 's', 1, 'Forged', '\\x7b7d', '\\x7b7d')"
                " ON CONFLICT (position) DO UPDATE SET event_type = excluded.event_type",
                uuid.uuid4(),
            )
        [stored] = await store.read_all()
        assert stored.event_type == "Happened"


def _causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    cause = error.__cause__
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__
    return chain


# -- lock trouble is not a conflict -------------------------------------------------------


def test_a_lock_error_on_a_request_without_streams_invents_no_conflict() -> None:
    assert conflict_from_lock_error(AppendRequest.create({}), []) is None


def test_a_lock_error_where_no_stream_moved_invents_no_conflict() -> None:
    request = AppendRequest.create({"a": 3, "b": 0}, [_event("a")])
    assert conflict_from_lock_error(request, [("a", 3)]) is None


def test_a_lock_error_where_a_stream_moved_is_a_conflict_on_that_stream() -> None:
    request = AppendRequest.create({"a": 3, "b": 0}, [_event("a")])
    conflict = conflict_from_lock_error(request, [("a", 3), ("b", 2)])
    assert isinstance(conflict, VersionConflict)
    assert (conflict.stream_id, conflict.expected, conflict.actual) == ("b", 0, 2)


def test_each_request_of_a_batch_that_hit_a_lock_error_gets_its_own_outcome() -> None:
    moved = AppendRequest.create({"a": 0}, [_event("a")])
    unmoved = AppendRequest.create({"b": 1}, [_event("b")])
    cause = asyncpg.DeadlockDetectedError("deadlock detected")
    outcomes = lock_error_outcomes([moved, unmoved, unmoved], [("a", 2), ("b", 1)], cause)
    assert isinstance(outcomes[0], VersionConflict)
    assert (outcomes[0].stream_id, outcomes[0].actual) == ("a", 2)
    assert all(isinstance(o, StoreUnavailable) for o in outcomes[1:])
    assert outcomes[1] is not outcomes[2]
    assert "deadlock detected" in str(outcomes[1])
    assert all(isinstance(o, Exception) and o.__cause__ is cause for o in outcomes)


# One stream's append goes through append_to_stream, a two-stream one through
# append_disjoint (migration 0014): both take the stream's lock, and both time out
# on it the same way.
_LOCK_TIMEOUT_SIGNATURES = (
    "append_to_stream(text, bigint, uuid[], text[], bytea[], bytea[])",
    "append_disjoint(int[], text[], bigint[], int[], uuid[], text[], bytea[], bytea[])",
)


@pytest.mark.parametrize("expected", [{"a": 1}, {"a": 1, "b": 0}], ids=["one", "two"])
async def test_a_lock_timeout_on_an_unmoved_stream_is_store_unavailable(
    pg_schema: str, expected: dict[str, int]
) -> None:
    async with _store_and_raw(pg_schema) as (store, raw):
        await store.append(AppendRequest.create({"a": 0}, [_event("a")]))
        # A short lock wait, set on this schema's functions only.
        for signature in _LOCK_TIMEOUT_SIGNATURES:
            await raw.execute(
                f"ALTER FUNCTION \"{pg_schema}\".{signature} SET lock_timeout = '100ms'"
            )
        async with raw.transaction():
            await raw.execute(
                f'SELECT 1 FROM "{pg_schema}".streams WHERE stream_id = $1 FOR UPDATE', "a"
            )
            with pytest.raises(StoreUnavailable, match="lock timeout") as caught:
                await store.append(AppendRequest.create(expected, [_event("a")]))
        assert any(isinstance(e, asyncpg.LockNotAvailableError) for e in _causes(caught.value))
        # Nothing was written, and the append goes through once the lock is free.
        assert await store.stream_version("a") == 1
        result = await store.append(AppendRequest.create(expected, [_event("a")]))
        assert result.positions == (2,)


# -- what one append reads ----------------------------------------------------------


async def _streams_index_entries_read(raw: Any, schema: str) -> int:
    await raw.execute("SELECT pg_stat_force_next_flush()")
    read = await raw.fetchval(
        "SELECT idx_tup_read FROM pg_stat_user_indexes"
        " WHERE schemaname = $1 AND indexrelname = 'streams_pkey'",
        schema,
    )
    return int(read)


async def test_a_one_stream_append_probes_the_streams_index_not_walks_it(pg_schema: str) -> None:
    # A session whose first appends were big commands keeps a generic plan for the
    # version check; as a merge join along streams_pkey it read every entry up to
    # the appended stream's id (5,000 per append here) instead of one.
    async with _store_and_raw(pg_schema) as (_store, raw):
        await raw.execute("SET stats_fetch_consistency = none")
        for k in range(5):
            streams = [f"s-{k}-{i:04d}" for i in range(1000)]
            expect = [(1, stream, 0) for stream in streams]
            await _call_batch(raw, pg_schema, expect, [1000], [(1, streams[0])], [1])
        await raw.execute(f'ANALYZE "{pg_schema}".streams')
        before = await _streams_index_entries_read(raw, pg_schema)
        last = "s-4-0999"  # the greatest stream id: a walk would pass every other one
        for version in range(10):
            [outcome] = await _call_batch(
                raw, pg_schema, [(1, last, version)], [1], [(1, last)], [1]
            )
            assert outcome["first_position"] is not None
        read = await _streams_index_entries_read(raw, pg_schema) - before
        assert read < 200, f"10 one-stream appends read {read} streams_pkey entries"


@pytest.mark.parametrize("copy_threshold", [None, 1])
async def test_a_later_version_of_a_stream_without_a_row_is_a_conflict_that_leaves_no_row(
    pg_schema: str, copy_threshold: int | None
) -> None:
    # Rows are made only for streams expected empty (looking up every expected
    # stream for an insert that does nothing cost a tenth of a batch's server CPU);
    # a stream expected at a later version without one is at version 0.
    async with (
        await pg.fresh_store(pg_schema, copy_threshold=copy_threshold) as store,
        _raw_connection() as raw,
    ):
        await store.append(AppendRequest.create({"kept": 0}, [_event("kept")]))
        outcomes = await store.append_many(
            [
                AppendRequest.create({"kept": 1}, [_event("kept")]),
                AppendRequest.create({"ghost": 3, "kept": 2}, [_event("ghost")]),
                AppendRequest.create({"fresh": 0}, [_event("fresh")]),
            ]
        )
        assert [type(o).__name__ for o in outcomes] == [
            "AppendResult",
            "VersionConflict",
            "AppendResult",
        ]
        conflict = outcomes[1]
        assert isinstance(conflict, VersionConflict)
        assert (conflict.stream_id, conflict.expected, conflict.actual) == ("ghost", 3, 0)
        rows = await raw.fetch(
            f'SELECT stream_id, version FROM "{pg_schema}".streams ORDER BY stream_id'
        )
        assert [(r["stream_id"], r["version"]) for r in rows] == [("fresh", 1), ("kept", 2)]
        assert await _log_state(raw, pg_schema) == (3, 3)
