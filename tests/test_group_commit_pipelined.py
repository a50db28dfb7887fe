"""Pipelined group commit (``max_in_flight`` >= 2) under cancellation and lost
connections: every caller is answered once, nothing acknowledged is lost,
nothing is written twice, and the log stays gapless and in commit order.

The invariants are in tests/group_commit_ledger.py. Random schedules run against
a scripted ``append_many`` on the memory store (hypothesis decides when each
batch commits, fails or is lost, and which callers give up); the same workload
runs against the real PostgreSQL store, once with callers cancelled while queued
and while their batch is under way, once with the store's connections killed by
the server (``pg_terminate_backend``).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventcore import InMemoryEventStore, StoreUnavailable, VersionConflict
from eventcore.backends._group_commit import GroupCommitSettings, GroupCommitter
from eventcore.backends.postgres import PostgresEventStore
from eventcore.errors import StoreError
from eventcore.store import AppendOutcome
from eventcore.types import AppendRequest
from tests import pg
from tests.group_commit_ledger import (
    CANCELLED,
    CONFLICT,
    OK,
    UNAVAILABLE,
    Append,
    Call,
    Ledger,
    check_log,
)


@contextmanager
def loop_errors() -> Iterator[list[dict[str, Any]]]:
    """What reaches the loop's exception handler (a committer task that failed
    with nobody awaiting it, a future answered twice) is a defect: collect it."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: seen.append(context))
    try:
        yield seen
    finally:
        loop.set_exception_handler(previous)


# -- random schedules against a scripted append_many --------------------------------

COMMIT, REFUSE = "commit", "refuse"
LOSE_BEFORE, LOSE_AFTER = "lose before", "lose after"
# A backend's own StoreUnavailable with no OSError under it: still an unknown outcome.
UNKNOWN_AFTER = "unknown after"


@dataclass(eq=False)
class _Sent:
    requests: list[AppendRequest]
    fate: asyncio.Future[str]


@dataclass
class _ScriptedAppends:
    """append_many on a memory store; each call waits until the schedule decides
    its fate: commit, lose the connection before or after committing, commit and
    raise StoreUnavailable (outcome unknown), or refuse the batch for a reason of
    one request (so the committer retries one by one)."""

    max_in_flight: int
    store: InMemoryEventStore = field(default_factory=InMemoryEventStore)
    under_way: list[_Sent] = field(default_factory=list)
    sent: set[int] = field(default_factory=set)  # id() of every request sent

    async def __call__(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        streams = {s for request in requests for s, _ in request.expected}
        for other in self.under_way:
            busy = {s for request in other.requests for s, _ in request.expected}
            assert streams.isdisjoint(busy), "two batches under way share a stream"
        sent = _Sent(list(requests), asyncio.get_running_loop().create_future())
        self.under_way.append(sent)
        assert len(self.under_way) <= self.max_in_flight
        self.sent.update(id(r) for r in requests)
        try:
            fate = await sent.fate
        finally:
            self.under_way.remove(sent)
        if fate == REFUSE and len(requests) > 1:
            raise StoreError("refused: one request spoilt the batch")
        if fate == LOSE_BEFORE:
            raise StoreUnavailable("connection lost before the commit") from ConnectionResetError()
        outcomes = await self.store.append_many(requests)
        if fate == LOSE_AFTER:
            raise StoreUnavailable("connection lost after the commit") from ConnectionResetError()
        if fate == UNKNOWN_AFTER:
            raise StoreUnavailable("no reply to the commit")
        return outcomes

    def decide(self, index: int, fate: str) -> None:
        waiting = [s for s in self.under_way if not s.fate.done()]
        if waiting:
            waiting[index % len(waiting)].fate.set_result(fate)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


_STREAMS = ["s0", "s1", "s2", "s3"]
_WRITERS = ["w0", "w1"]

_steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("append"),
            st.sampled_from(_STREAMS),
            st.sampled_from([None, *_STREAMS]),
            st.integers(1, 2),
            st.integers(1, 3),  # appends made at the same moment (on streams in turn)
        ),
        st.tuples(st.just("write"), st.sampled_from(_WRITERS)),
        st.tuples(st.just("cancel"), st.integers(0, 50)),
        st.tuples(
            st.just("decide"),
            st.integers(0, 10),
            st.sampled_from(
                [COMMIT, COMMIT, COMMIT, LOSE_BEFORE, LOSE_AFTER, UNKNOWN_AFTER, REFUSE]
            ),
        ),
    ),
    max_size=60,
)


class _Schedule:
    """Runs one random schedule: appends, sequential writers, cancellations and
    the fates of the batches sent, each step followed by a few loop turns."""

    def __init__(self, max_in_flight: int, max_batch: int) -> None:
        self.appends = _ScriptedAppends(max_in_flight)
        self.store = self.appends.store
        self.committer = GroupCommitter(
            self.appends, GroupCommitSettings(max_in_flight=max_in_flight, max_batch=max_batch)
        )
        self.ledger = Ledger()
        self.writers: dict[str, Call | None] = dict.fromkeys(_WRITERS)

    async def step(self, step: tuple[Any, ...]) -> None:
        kind, *args = step
        if kind == "append":
            await self.append(*args)
        elif kind == "write":
            await self.write(*args)
        elif kind == "cancel":
            self.cancel(*args)
        else:
            self.appends.decide(*args)
        await _settle()

    async def append(self, first: str, also: str | None, count: int, burst: int) -> None:
        """``burst`` appends made at one moment, each at the version it read."""
        calls = [
            self.ledger.request(
                {
                    s: await self.store.stream_version(s)
                    for s in dict.fromkeys([stream, also or stream])
                },
                [stream],
                count,
            )
            for stream in _STREAMS[_STREAMS.index(first) :][:burst]
        ]
        for call in calls:  # with no await in between
            self.ledger.make(call, self.committer.append)

    async def write(self, writer: str) -> None:
        """The writer's next append, once its last one was answered, at the
        version its last one reached (read again after any other answer)."""
        last = self.writers[writer]
        version = 0
        if last is not None:
            if last.outcome is None:
                return
            if last.result is not None:
                version = last.result.stream_versions[writer]
            else:
                version = await self.store.stream_version(writer)
        call = self.ledger.request({writer: version}, [writer])
        self.writers[writer] = self.ledger.make(call, self.committer.append, writer=writer)

    def cancel(self, index: int) -> None:
        pending = self.ledger.pending()
        if pending:
            call = pending[index % len(pending)]
            call.cancelled_unsent = id(call.request) not in self.appends.sent
            assert call.task is not None
            call.task.cancel()

    async def finish(self) -> None:
        """Commit whatever is left, until every caller is answered."""
        for _ in range(1000):
            if not self.ledger.pending() and not self.appends.under_way:
                break
            for sent in self.appends.under_way:
                if not sent.fate.done():
                    sent.fate.set_result(COMMIT)
            await _settle()
        assert not self.ledger.pending(), "a caller was never answered"
        await self.committer.close()


async def _run_schedule(steps: list[tuple[Any, ...]], max_in_flight: int, max_batch: int) -> None:
    schedule = _Schedule(max_in_flight, max_batch)
    with loop_errors() as errors:
        for step in steps:
            await schedule.step(step)
        await schedule.finish()
    assert not errors, errors
    check_log(schedule.ledger, await schedule.store.read_all())


@pytest.mark.parametrize("max_in_flight", [2, 4])
def test_random_schedules_of_appends_cancellations_and_losses_keep_the_invariants(
    max_in_flight: int,
) -> None:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_steps, st.integers(1, 4))
    def check(steps: list[tuple[Any, ...]], max_batch: int) -> None:
        asyncio.run(_run_schedule(steps, max_in_flight, max_batch))

    check()


# -- the real PostgreSQL store ------------------------------------------------------

_WRITER_STREAMS = 10  # one sequential writer each
_SHARED_STREAMS = 10  # racing one-off appends
_ROUNDS = 3  # of the workload per test, each on streams of its own
_APPENDS_PER_WRITER = 10
_RACERS = 100


async def _retrying(read: Any) -> Any:
    """A read while connections are being killed: try again until it answers."""
    for _ in range(100):
        try:
            return await read()
        except StoreUnavailable:
            await asyncio.sleep(0.01)
    raise AssertionError("the store never answered a read")


async def _workload(
    store: PostgresEventStore, ledger: Ledger, rng: random.Random, round_: int
) -> None:
    """200 appends over 20 streams: 10 writers making 10 appends each to a stream
    of their own, each expecting the version its last append left (re-read after
    an unknown outcome), and 100 racers appending once to shared streams at the
    version they read (a third of them also expecting a second stream)."""
    append: Append = store.append

    async def writer(stream: str) -> None:
        version = 0
        for _ in range(_APPENDS_PER_WRITER):
            call = ledger.request({stream: version}, [stream], rng.randint(1, 2))
            await ledger.run(call, append, writer=stream)
            if call.outcome == OK and call.result is not None:
                version = call.result.stream_versions[stream]
            else:
                version = await _retrying(lambda: store.stream_version(stream))

    async def racer() -> None:
        await asyncio.sleep(rng.uniform(0, 0.3))
        stream, also = rng.sample(shared, 2)
        expected = {stream: await _retrying(lambda: store.stream_version(stream))}
        if rng.random() < 0.3:
            expected[also] = await _retrying(lambda: store.stream_version(also))
        await ledger.run(ledger.request(expected, [stream], rng.randint(1, 3)), append)

    own = [f"r{round_}-own-{i}" for i in range(_WRITER_STREAMS)]
    shared = [f"r{round_}-shared-{i}" for i in range(_SHARED_STREAMS)]
    await asyncio.gather(*map(writer, own), *(racer() for _ in range(_RACERS)))


def _committer_of(store: PostgresEventStore) -> GroupCommitter:
    committer = store._committer  # private: the tests look at what is queued and sent
    assert committer is not None
    return committer


@asynccontextmanager
async def _pipelined_store(
    schema: str, max_in_flight: int, application_name: str
) -> AsyncIterator[PostgresEventStore]:
    store = await pg.fresh_store(
        schema,
        application_name=application_name,
        max_connections=6,
        group_commit=GroupCommitSettings(max_in_flight=max_in_flight),
    )
    try:
        yield store
    finally:
        await store.close()


async def _canceller(
    ledger: Ledger, committer: GroupCommitter, rng: random.Random, done: asyncio.Event
) -> dict[str, int]:
    """Cancel callers at random moments, alternately one whose append is queued
    and one whose batch is under way, until ``done``."""
    cancelled = {"queued": 0, "under way": 0}
    while not done.is_set():
        await asyncio.sleep(rng.uniform(0, 0.01))
        queued = {id(request) for request, _ in committer._waiting}
        under_way = {id(r) for batch in committer._in_flight for r, _ in batch}
        for phase, ids in (("queued", queued), ("under way", under_way)):
            if rng.random() < 0.5:
                continue
            candidates = [c for c in ledger.pending() if id(c.request) in ids]
            if candidates:
                call = rng.choice(candidates)
                call.cancelled_unsent = phase == "queued"
                assert call.task is not None
                call.task.cancel()
                cancelled[phase] += 1
    return cancelled


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("max_in_flight", [2, 4])
async def test_callers_cancelled_while_queued_or_under_way_on_postgres(
    pg_schema: str, max_in_flight: int
) -> None:
    rng = random.Random(max_in_flight)
    ledger = Ledger()
    async with _pipelined_store(pg_schema, max_in_flight, "eventcore-tests") as store:
        committer = _committer_of(store)
        done = asyncio.Event()
        with loop_errors() as errors:
            canceller = asyncio.ensure_future(_canceller(ledger, committer, rng, done))
            for round_ in range(_ROUNDS):
                await _workload(store, ledger, rng, round_)
            done.set()
            cancelled = await canceller
        assert not errors, errors
        check_log(ledger, await store.read_all())
    outcomes = ledger.outcomes()
    assert cancelled["queued"], cancelled
    assert cancelled["under way"], cancelled
    assert outcomes.get(OK, 0) > 50, outcomes
    assert outcomes.get(CANCELLED), outcomes
    assert committer.batched_appends > committer.batches  # batches formed


async def _killer(
    application_name: str, committer: GroupCommitter, rng: random.Random, done: asyncio.Event
) -> int:
    """Until ``done``, terminate some of the store's server processes (one, mostly;
    now and then all) at random moments, most of them while a batch is under way."""
    conn = await asyncpg.connect(pg.PG_URL, timeout=5)
    killed = 0
    try:
        while not done.is_set():
            await asyncio.sleep(rng.uniform(0.01, 0.1))
            if rng.random() < 0.8 and not committer._in_flight:
                continue
            killed += await conn.fetchval(
                "SELECT count(*) FROM ("
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = $1 AND pid <> pg_backend_pid() "
                "ORDER BY random() LIMIT $2) AS killed",
                application_name,
                rng.choice([1, 1, 1, 2, 6]),
            )
    finally:
        await conn.close()
    return killed


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("max_in_flight", [2, 4])
async def test_connections_killed_under_a_pipelined_committer_on_postgres(
    pg_schema: str, max_in_flight: int
) -> None:
    rng = random.Random(10 + max_in_flight)
    ledger = Ledger()
    application_name = f"eventcore-pipe-{uuid.uuid4().hex[:12]}"
    async with _pipelined_store(pg_schema, max_in_flight, application_name) as store:
        committer = _committer_of(store)
        done = asyncio.Event()
        with loop_errors() as errors:
            killer = asyncio.ensure_future(_killer(application_name, committer, rng, done))
            try:
                for round_ in range(_ROUNDS):
                    await _workload(store, ledger, rng, round_)
            finally:
                done.set()
                killed = await killer
            # The random kills may all land between batches (they did, on a fast
            # hour); this one lands on an append under way, whatever the timing.
            await _kill_an_append_under_way(store, ledger, pg_schema)
        assert not errors, errors
        check_log(ledger, await _retrying(store.read_all))
        # The store recovers: a new append after the last kill commits.
        after = ledger.request({"after": 0}, ["after"])
        await ledger.run(after, store.append)
        assert after.outcome == OK, after.error
    outcomes = ledger.outcomes()
    assert killed
    assert outcomes.get(UNAVAILABLE), outcomes
    assert outcomes.get(OK, 0) > 50, outcomes
    assert set(outcomes) <= {OK, CONFLICT, UNAVAILABLE}, outcomes


async def _kill_an_append_under_way(store: PostgresEventStore, ledger: Ledger, schema: str) -> None:
    """Append to a stream whose row another connection holds locked, and end the
    server process that waits for it: the append is under way when its connection
    dies, so its caller must hear StoreUnavailable."""
    opened = ledger.request({"held": 0}, ["held"])
    await ledger.run(opened, store.append)
    assert opened.outcome == OK, opened.error
    holder = await asyncpg.connect(pg.PG_URL, timeout=5)
    try:
        async with holder.transaction():
            await holder.execute(
                f'SELECT 1 FROM "{schema}".streams WHERE stream_id = $1 FOR UPDATE', "held"
            )
            waiting = ledger.request({"held": 1}, ["held"])
            under_way = asyncio.ensure_future(ledger.run(waiting, store.append))
            await holder.execute(
                "SELECT pg_terminate_backend($1)", await pg.backend_waiting_for(holder)
            )
            await under_way
    finally:
        await holder.close()
    assert waiting.outcome == UNAVAILABLE, (waiting.outcome, waiting.error)


class _BatchesSent:
    """Counts the batches a committer sends; ``wait_for(n)`` until n were sent."""

    def __init__(self, committer: GroupCommitter) -> None:
        self.count = 0
        self._reached: dict[int, asyncio.Event] = {}
        committer.batch_listeners.append(self._sent)

    def _sent(self, _: int) -> None:
        self.count += 1
        for count, reached in self._reached.items():
            if self.count >= count:
                reached.set()

    async def wait_for(self, count: int) -> None:
        reached = self._reached.setdefault(count, asyncio.Event())
        if self.count >= count:
            reached.set()
        await reached.wait()


@pytest.mark.postgres
async def test_a_conflict_fails_alone_and_one_streams_appends_keep_order_across_batches(
    pg_schema: str,
) -> None:
    async with _pipelined_store(pg_schema, 2, "eventcore-tests") as store:
        committer = _committer_of(store)
        sent = _BatchesSent(committer)
        ledger = Ledger()
        # Hold the log's lock so that both batches are under way at once.
        holder = await asyncpg.connect(pg.PG_URL, timeout=5)
        try:
            lock = holder.transaction()
            await lock.start()
            await holder.execute(f'SELECT * FROM "{pg_schema}".log_head FOR UPDATE')
            first = ledger.make(ledger.request({"a": 0}, ["a"]), store.append)
            await sent.wait_for(1)
            neighbours = [
                ledger.make(ledger.request({"b": 0}, ["b"]), store.append),
                ledger.make(ledger.request({"c": 3}, ["c"]), store.append),  # stale
                ledger.make(ledger.request({"d": 0}, ["d"]), store.append),
            ]
            # The next append to "a", expecting the first's version: it waits for
            # the first's batch, whatever is sent meanwhile.
            again = ledger.make(ledger.request({"a": 1}, ["a"]), store.append)
            await sent.wait_for(2)
            assert len(committer._in_flight) == 2
            assert [len(batch) for batch in committer._in_flight] == [1, 3]
            await lock.rollback()
        finally:
            await holder.close()
        calls = [first, *neighbours, again]
        await asyncio.wait([c.task for c in calls if c.task is not None])
        assert [c.outcome for c in calls] == [OK, OK, CONFLICT, OK, OK]
        conflict = neighbours[1].error
        assert isinstance(conflict, VersionConflict)
        assert (conflict.stream_id, conflict.expected, conflict.actual) == ("c", 3, 0)
        assert again.result is not None
        assert first.result is not None
        assert again.result.stream_versions == {"a": 2}
        assert max(first.result.positions) < min(again.result.positions)
        assert committer.batches == 3
        check_log(ledger, await store.read_all())
