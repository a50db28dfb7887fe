"""Group commit and append_many: batching never changes what an append means."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncpg
import pytest

from eventcore import (
    EventCoreError,
    InMemoryEventStore,
    StoreClosed,
    StoreError,
    StoreUnavailable,
    StreamId,
    ValidationError,
    VersionConflict,
)
from eventcore.backends._group_commit import GroupCommitSettings, GroupCommitter
from eventcore.backends.postgres import _store as postgres_store
from eventcore.backends.sqlite import SQLiteEventStore
from eventcore.backends.sqlite import _store as sqlite_store
from eventcore.store import AppendOutcome, BatchAppender, EventStore
from eventcore.types import AppendRequest, AppendResult, NewEvent
from tests import pg
from tests.sql_storage import REFUSED_TYPE, SQL_KINDS, SqlStorage, sql_storage


def _events(stream: str, count: int = 1) -> list[NewEvent]:
    return [NewEvent(StreamId(stream), "T", b'{"n":%d}' % n) for n in range(count)]


def _request(expected: dict[str, int], stream: str, count: int = 1) -> AppendRequest:
    return AppendRequest.create(expected, _events(stream, count))


def _committer(store: EventStore) -> GroupCommitter | None:
    return getattr(store, "_committer", None)  # private: the tests inspect batching


@pytest.fixture(params=SQL_KINDS)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStorage]:
    async for storage in sql_storage(request.param, tmp_path):
        yield storage


async def test_append_many_applies_requests_as_if_one_after_another(any_store: EventStore) -> None:
    assert isinstance(any_store, BatchAppender)
    outcomes = await any_store.append_many(
        [
            _request({"a": 0}, "a", 2),
            _request({"a": 0, "b": 0}, "b"),  # stale: a is at 2 by now
            _request({"a": 2}, "a"),  # sees the first request's events
            _request({"a": 3, "c": 0}, "c"),  # a read-only participant, current
        ]
    )
    conflict = outcomes[1]
    assert isinstance(conflict, VersionConflict)
    assert (conflict.stream_id, conflict.expected, conflict.actual) == ("a", 0, 2)
    results = [o for i, o in enumerate(outcomes) if i != 1]
    assert all(isinstance(r, AppendResult) for r in results)
    assert [r.positions for r in results] == [(1, 2), (3,), (4,)]  # type: ignore[union-attr]
    assert [e.global_position for e in await any_store.read_all()] == [1, 2, 3, 4]


async def test_concurrent_appends_at_one_version_have_exactly_one_winner(
    any_store: EventStore,
) -> None:
    outcomes = await asyncio.gather(
        *(any_store.append(_request({"race": 0}, "race")) for _ in range(30)),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if isinstance(o, AppendResult)]
    assert len(winners) == 1
    assert all(isinstance(o, VersionConflict) for o in outcomes if o not in winners)
    committer = _committer(any_store)
    if committer is not None:
        assert committer.batches < 30, "concurrent appends should have shared transactions"


async def test_appends_queued_together_see_each_others_effects(any_store: EventStore) -> None:
    # Submitted without a pause, the three land in one batch where the store
    # batches; each expects the version the one before it leaves.
    first = asyncio.ensure_future(any_store.append(_request({"s": 0}, "s", 2)))
    second = asyncio.ensure_future(any_store.append(_request({"s": 2}, "s")))
    third = asyncio.ensure_future(any_store.append(_request({"s": 3, "t": 0}, "t")))
    results = await asyncio.gather(first, second, third)
    assert [r.positions for r in results] == [(1, 2), (3,), (4,)]
    committer = _committer(any_store)
    if committer is not None:
        # One batch; where two may be in flight (PostgreSQL's default) the queue
        # is split between two, the first carrying both appends to "s".
        assert committer.batches == {1: 1, 2: 2}[committer._settings.max_in_flight]
    assert [e.stream_version for e in await any_store.read_stream("s")] == [1, 2, 3]


async def test_the_committer_counts_the_appends_its_batches_carried(tmp_path: Path) -> None:
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    try:
        committer = _committer(store)
        assert committer is not None
        await store.append(_request({"alone": 0}, "alone"))
        await asyncio.gather(*(store.append(_request({f"s{n}": 0}, f"s{n}")) for n in range(5)))
        assert committer.batched_appends == 6
        assert 2 <= committer.batches <= 6
    finally:
        await store.close()


async def test_a_request_that_spoils_its_batch_fails_alone(any_store: EventStore) -> None:
    reused = uuid.uuid4()
    await any_store.append(
        AppendRequest.create({"x": 0}, [NewEvent(StreamId("x"), "T", b"{}", event_id=reused)])
    )
    good = [any_store.append(_request({f"ok-{i}": 0}, f"ok-{i}")) for i in range(5)]
    bad = any_store.append(
        AppendRequest.create({"y": 0}, [NewEvent(StreamId("y"), "T", b"{}", event_id=reused)])
    )
    outcomes = await asyncio.gather(*good[:3], bad, *good[3:], return_exceptions=True)
    assert isinstance(outcomes[3], ValidationError)
    assert all(isinstance(o, AppendResult) for i, o in enumerate(outcomes) if i != 3)
    assert await any_store.stream_version("y") == 0
    positions = [e.global_position for e in await any_store.read_all()]
    assert positions == list(range(1, 7))


async def test_a_lost_connection_fails_every_request_of_the_batch() -> None:
    calls: list[int] = []

    async def broken(requests: object) -> list[AppendOutcome]:
        calls.append(len(requests))  # type: ignore[arg-type]
        raise StoreUnavailable("the server went away") from ConnectionResetError()

    committer = GroupCommitter(broken, GroupCommitSettings())
    outcomes = await asyncio.gather(
        *(committer.append(_request({f"s{i}": 0}, f"s{i}")) for i in range(4)),
        return_exceptions=True,
    )
    assert all(isinstance(o, StoreUnavailable) for o in outcomes)
    assert sum(calls) == 4  # never retried one by one: nothing could have succeeded


async def test_max_batch_bounds_each_transaction() -> None:
    store = InMemoryEventStore()
    sizes: list[int] = []

    async def counting(requests: list[AppendRequest]) -> list[AppendOutcome]:
        sizes.append(len(requests))
        return await store.append_many(requests)

    committer = GroupCommitter(counting, GroupCommitSettings(max_batch=4))  # type: ignore[arg-type]
    await asyncio.gather(*(committer.append(_request({f"s{i}": 0}, f"s{i}")) for i in range(10)))
    assert max(sizes) <= 4
    assert sum(sizes) == 10
    assert [e.global_position for e in await store.read_all()] == list(range(1, 11))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_batch": 0},
        {"max_batch": 1.5},
        {"max_wait": -1},
        {"max_wait": float("inf")},
        {"max_in_flight": 0},
        {"max_in_flight": True},
    ],
)
def test_bad_group_commit_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        GroupCommitSettings(**kwargs)  # type: ignore[arg-type]


async def test_an_append_cancelled_before_it_was_sent_is_not_written() -> None:
    store = InMemoryEventStore()
    release = asyncio.Event()

    async def slow(requests: list[AppendRequest]) -> list[AppendOutcome]:
        await release.wait()  # the first batch is in flight while others queue
        return await store.append_many(requests)

    committer = GroupCommitter(slow, GroupCommitSettings())  # type: ignore[arg-type]
    first = asyncio.ensure_future(committer.append(_request({"a": 0}, "a")))
    await asyncio.sleep(0)  # the first batch is sent and waits
    queued = asyncio.ensure_future(committer.append(_request({"b": 0}, "b")))
    await asyncio.sleep(0)
    queued.cancel()  # its caller gives up while it is still queued
    release.set()
    await first
    with pytest.raises(asyncio.CancelledError):
        await queued
    await asyncio.sleep(0.01)
    assert await store.stream_version("b") == 0
    assert committer.batches == 1


async def test_cancelling_the_flusher_while_it_retries_one_by_one_leaves_nobody_waiting() -> None:
    store = InMemoryEventStore()
    gate = asyncio.Event()
    retrying = asyncio.Event()

    async def spoiled_then_slow(requests: list[AppendRequest]) -> list[AppendOutcome]:
        if len(requests) == 1:
            retrying.set()
        if len(requests) > 1:
            raise ValidationError("one request spoilt the batch")
        await gate.wait()  # each one-by-one retry blocks until the flusher is cancelled
        return await store.append_many(requests)

    committer = GroupCommitter(spoiled_then_slow, GroupCommitSettings())  # type: ignore[arg-type]
    waiters = [
        asyncio.ensure_future(committer.append(_request({f"s{i}": 0}, f"s{i}"))) for i in range(3)
    ]
    await retrying.wait()
    (flusher,) = committer._flushers
    flusher.cancel()
    done, pending = await asyncio.wait(waiters, timeout=1)
    assert not pending, "every caller must be answered (cancelled), none left hanging"
    assert all(w.cancelled() for w in done)


async def test_a_request_the_database_refuses_fails_alone_in_its_batch(
    storage: SqlStorage,
) -> None:
    store = await storage.open()
    await storage.refuse_event_type()
    requests = [_request({f"ok-{i}": 0}, f"ok-{i}") for i in range(12)]
    requests[5] = AppendRequest.create(
        {"refused": 0}, [NewEvent(StreamId("refused"), REFUSED_TYPE, b"{}")]
    )
    outcomes = await asyncio.gather(*map(store.append, requests), return_exceptions=True)
    assert isinstance(outcomes[5], StoreError)
    assert "refused by a database rule" in str(outcomes[5])
    assert all(isinstance(o, AppendResult) for i, o in enumerate(outcomes) if i != 5)
    assert len(await store.read_all()) == 11


async def test_text_the_database_cannot_store_fails_only_its_own_append(
    storage: SqlStorage,
) -> None:
    store = await storage.open()
    requests = [_request({f"ok-{i}": 0}, f"ok-{i}") for i in range(12)]
    # The trusted constructor: nothing checked the lone surrogate on the way in.
    bad = NewEvent(StreamId("bad"), "Bad\ud800", b"{}")
    requests[5] = AppendRequest._trusted(((StreamId("bad"), 0),), (bad,))
    outcomes = await asyncio.gather(*map(store.append, requests), return_exceptions=True)
    assert isinstance(outcomes[5], EventCoreError), f"not an eventcore error: {outcomes[5]!r}"
    assert all(isinstance(o, AppendResult) for i, o in enumerate(outcomes) if i != 5)
    assert len(await store.read_all()) == 11


async def test_a_driver_exception_reaches_only_its_caller_wrapped_in_a_store_error() -> None:
    store = InMemoryEventStore()
    marked = _request({"marked": 0}, "marked")

    async def refusing_marked(requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        if marked in requests:
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        return await store.append_many(requests)

    committer = GroupCommitter(refusing_marked, GroupCommitSettings())
    requests = [_request({f"s{i}": 0}, f"s{i}") for i in range(6)]
    requests[3] = marked
    outcomes = await asyncio.gather(*map(committer.append, requests), return_exceptions=True)
    failure = outcomes[3]
    assert type(failure) is StoreError
    assert "UnicodeEncodeError" in str(failure)
    assert "surrogates not allowed" in str(failure)
    assert isinstance(failure.__cause__, UnicodeEncodeError)
    assert all(isinstance(o, AppendResult) for i, o in enumerate(outcomes) if i != 3)
    assert len(await store.read_all()) == 5


async def test_each_caller_of_a_failed_batch_gets_its_own_exception() -> None:
    cause = StoreUnavailable("the server went away")

    async def broken(requests: object) -> list[AppendOutcome]:
        raise cause from ConnectionResetError()

    committer = GroupCommitter(broken, GroupCommitSettings())
    outcomes = await asyncio.gather(
        *(committer.append(_request({f"s{i}": 0}, f"s{i}")) for i in range(3)),
        return_exceptions=True,
    )
    assert len({id(o) for o in outcomes}) == 3, "one exception object shared by callers"
    for failure in outcomes:
        assert type(failure) is StoreUnavailable
        assert str(failure) == str(cause)
        assert failure.__cause__ is cause


async def test_a_connection_lost_while_retrying_one_by_one_fails_the_rest_at_once() -> None:
    calls: list[int] = []

    async def spoiled_then_lost(requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        calls.append(len(requests))
        if len(requests) > 1:
            raise StoreError("one request spoilt the batch")
        raise StoreUnavailable("the server went away") from ConnectionResetError()

    committer = GroupCommitter(spoiled_then_lost, GroupCommitSettings())
    outcomes = await asyncio.gather(
        *(committer.append(_request({f"s{i}": 0}, f"s{i}")) for i in range(4)),
        return_exceptions=True,
    )
    assert all(isinstance(o, StoreUnavailable) for o in outcomes)
    assert calls == [4, 1], "after the connection was lost, nothing more is tried"


def _raised_from(cause: BaseException) -> StoreError:
    error = StoreUnavailable("wrapped by the backend")
    error.__cause__ = cause
    return error


@pytest.mark.parametrize("max_in_flight", [1, 2])
async def test_a_batch_whose_outcome_is_unknown_is_never_sent_again(max_in_flight: int) -> None:
    store = InMemoryEventStore()
    sent: list[int] = []

    async def commits_then_loses_the_reply(
        requests: Sequence[AppendRequest],
    ) -> list[AppendOutcome]:
        sent.append(len(requests))
        await store.append_many(requests)
        raise StoreUnavailable("no reply to the commit")  # no OSError under it

    committer = GroupCommitter(
        commits_then_loses_the_reply, GroupCommitSettings(max_in_flight=max_in_flight)
    )
    outcomes = await asyncio.gather(
        *(committer.append(_request({f"s{i}": 0}, f"s{i}")) for i in range(3)),
        return_exceptions=True,
    )
    # Sent again one by one, each would meet its own events (a conflict, or a
    # second copy in a store that checks no ids) though it was written. (With two
    # in flight the three go as two batches, 2 and 1: each append is sent once.)
    assert sum(sent) == 3, sent
    assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
    assert len(await store.read_all()) == 3


def test_postgres_fails_a_whole_batch_only_for_trouble_no_request_caused() -> None:
    store_wide = postgres_store._fails_every_append
    assert store_wide(_raised_from(asyncpg.exceptions.ConnectionDoesNotExistError("gone")))
    assert store_wide(_raised_from(asyncpg.exceptions.AdminShutdownError("restart")))
    assert store_wide(_raised_from(TimeoutError()))  # no connection free in time
    assert store_wide(_raised_from(asyncpg.exceptions.QueryCanceledError("statement timeout")))
    assert store_wide(StoreClosed("PostgresEventStore"))
    assert not store_wide(_raised_from(asyncpg.exceptions.CharacterNotInRepertoireError("0x00")))
    assert not store_wide(_raised_from(asyncpg.exceptions.DataError("invalid input")))
    assert not store_wide(_raised_from(asyncpg.exceptions.RaiseError("refused by a rule")))
    assert not store_wide(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"))


def test_sqlite_fails_a_whole_batch_only_when_the_file_is_unusable(tmp_path: Path) -> None:
    store_wide = sqlite_store._fails_every_append
    path = tmp_path / "errors.sqlite"
    first = sqlite3.connect(path, isolation_level=None, timeout=0)
    second = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        first.execute("CREATE TABLE t (x UNIQUE)")
        first.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(sqlite3.IntegrityError) as refused:
            first.execute("INSERT INTO t VALUES (1)")
        first.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as busy:
            second.execute("BEGIN IMMEDIATE")
        first.execute("ROLLBACK")
    finally:
        first.close()
        second.close()
    assert store_wide(_raised_from(busy.value))
    assert store_wide(StoreClosed("SQLiteEventStore"))
    assert not store_wide(_raised_from(refused.value))
    assert not store_wide(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"))


class _GatedAppends:
    """append_many on a memory store, where each call waits for its own gate; it
    records what each call was sent and how many were under way at once."""

    def __init__(self) -> None:
        self.store = InMemoryEventStore()
        self.sent: list[list[str]] = []
        self.gates: list[asyncio.Event] = []
        self.started = asyncio.Condition()
        self.under_way = 0
        self.most_under_way = 0

    async def __call__(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        gate = asyncio.Event()
        self.gates.append(gate)
        self.under_way += 1
        self.most_under_way = max(self.most_under_way, self.under_way)
        async with self.started:
            self.sent.append([e.stream_id for r in requests for e in r.events])
            self.started.notify_all()
        try:
            await gate.wait()
            return await self.store.append_many(requests)
        finally:
            self.under_way -= 1

    async def wait_for_calls(self, count: int) -> None:
        async with self.started:
            await self.started.wait_for(lambda: len(self.sent) >= count)


@pytest.mark.parametrize("max_in_flight", [1, 2, 4])
async def test_a_writer_appending_again_the_moment_it_is_answered_is_never_stranded(
    max_in_flight: int,
) -> None:
    # The writer runs before the flusher that answered it has finished: that
    # flusher must already count as gone, or the next append waits for nobody.
    store = InMemoryEventStore()
    committer = GroupCommitter(store.append_many, GroupCommitSettings(max_in_flight=max_in_flight))

    async def writer(stream: str) -> int:
        for version in range(20):
            await committer.append(_request({stream: version}, stream))
        return await store.stream_version(stream)

    assert await asyncio.wait_for(writer("lone"), timeout=10) == 20
    together = asyncio.gather(*(writer(f"w{n}") for n in range(8)))
    assert await asyncio.wait_for(together, timeout=10) == [20] * 8


async def test_the_next_batch_is_sent_while_the_one_before_commits() -> None:
    appends = _GatedAppends()
    committer = GroupCommitter(appends, GroupCommitSettings(max_in_flight=2))
    first = asyncio.ensure_future(committer.append(_request({"a": 0}, "a")))
    await appends.wait_for_calls(1)
    second = asyncio.ensure_future(committer.append(_request({"b": 0}, "b")))
    await appends.wait_for_calls(2)  # would wait forever with one batch at a time
    assert appends.most_under_way == 2
    for gate in appends.gates:
        gate.set()
    assert [r.positions for r in await asyncio.gather(first, second)] in (
        [(1,), (2,)],
        [(2,), (1,)],
    )


async def test_appends_queued_together_are_split_evenly_among_the_batches_that_may_go() -> None:
    # One batch of all of them would hold every writer until it is answered, so
    # the next batch could never be built while the server commits.
    appends = _GatedAppends()
    committer = GroupCommitter(appends, GroupCommitSettings(max_in_flight=3))
    streams = [f"s{n}" for n in range(10)]
    calls = [asyncio.ensure_future(committer.append(_request({s: 0}, s))) for s in streams]
    await asyncio.wait_for(appends.wait_for_calls(3), timeout=10)  # one batch: never
    assert [len(sent) for sent in appends.sent] == [4, 3, 3]
    assert [s for sent in appends.sent for s in sent] == streams  # in arrival order
    for gate in appends.gates:
        gate.set()
    assert sorted(p for r in await asyncio.gather(*calls) for p in r.positions) == list(
        range(1, 11)
    )


async def test_an_append_to_a_stream_of_a_batch_under_way_waits_for_it() -> None:
    appends = _GatedAppends()
    committer = GroupCommitter(appends, GroupCommitSettings(max_in_flight=2))
    first = asyncio.ensure_future(committer.append(_request({"a": 0}, "a")))
    await appends.wait_for_calls(1)
    # Made after the first: the next append to "a", and one to "c" behind it.
    again = asyncio.ensure_future(committer.append(_request({"a": 1}, "a")))
    other = asyncio.ensure_future(committer.append(_request({"c": 0}, "c")))
    await appends.wait_for_calls(2)
    assert appends.sent == [["a"], ["c"]]  # "c" went ahead; "a" waits for its stream
    appends.gates[1].set()
    await other
    assert not again.done()
    appends.gates[0].set()
    await first
    await appends.wait_for_calls(3)
    assert appends.sent[2] == ["a"]
    appends.gates[2].set()
    assert (await again).stream_versions == {"a": 2}  # in order: no conflict


async def test_appends_to_one_stream_reach_the_store_in_the_order_they_were_made() -> None:
    appends = _GatedAppends()
    committer = GroupCommitter(appends, GroupCommitSettings(max_in_flight=2, max_batch=1))
    first = asyncio.ensure_future(committer.append(_request({"a": 0}, "a")))
    await appends.wait_for_calls(1)
    # While the first is under way: "a" twice more, each expecting the one before.
    later = [
        asyncio.ensure_future(committer.append(_request({"a": 1}, "a"))),
        asyncio.ensure_future(committer.append(_request({"b": 0}, "b"))),
        asyncio.ensure_future(committer.append(_request({"a": 2}, "a"))),
    ]
    await appends.wait_for_calls(2)
    assert appends.sent == [["a"], ["b"]]  # "b" went ahead; both "a"s wait for the first
    appends.gates[0].set()
    await appends.wait_for_calls(3)
    appends.gates[1].set()
    appends.gates[2].set()
    await appends.wait_for_calls(4)
    appends.gates[3].set()
    results = await asyncio.gather(first, *later)
    assert appends.sent == [["a"], ["b"], ["a"], ["a"]]
    assert [r.stream_versions for r in results] == [{"a": 1}, {"a": 2}, {"b": 1}, {"a": 3}]


@pytest.mark.postgres
async def test_appends_queued_during_a_commit_go_out_as_it_ends_before_its_callers_return(
    pg_schema: str,
) -> None:
    """A closed loop of writers in two groups: while one group's batch commits, the
    other's appends queue, and they are sent the moment that batch is answered,
    before its callers run again. So the groups keep taking turns (the client's
    work for one overlaps the server's commit of the other) instead of merging
    into one batch that leaves the client and the server idle in turn."""
    rounds, per_group = 12, 16
    async with await pg.fresh_store(pg_schema) as store:
        committer = _committer(store)
        assert committer is not None

        async def writer(stream: str) -> None:
            for version in range(rounds):
                await store.append(_request({stream: version}, stream))

        sent = asyncio.Event()
        committer.batch_listeners.append(lambda _size: sent.set())
        first = [asyncio.create_task(writer(f"first-{n}")) for n in range(per_group)]
        await sent.wait()  # the first group's batch is under way
        second = [asyncio.create_task(writer(f"second-{n}")) for n in range(per_group)]
        await asyncio.gather(*first, *second)
        mean_batch = committer.batched_appends / committer.batches
    # Taking turns: about one group a batch. Merged, the groups would make
    # batches of both after the first two.
    assert mean_batch <= per_group * 1.25, (committer.batches, committer.batched_appends)
