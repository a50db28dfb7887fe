"""Reads on a hot standby (``read_dsn``): where each read goes, followers woken on
the replica, the gap-free tail across replication, projections and commands.

The servers are a primary and a streaming standby of the tests' own
(tests/pg_replica.py; opt in with EVENTCORE_TEST_SERVER_RESTARTS=1). Replay on the
standby is paused in some tests, to make it lag the primary for as long as the
test needs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

import eventcore
from eventcore import RetryPolicy, execute
from eventcore.backends import GroupCommitSettings
from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
from eventcore.backends.postgres._replica import ReplayWatch
from eventcore.demo.bank import Deposit, bank_codec
from eventcore.errors import ProjectionFailed, StoreUnavailable, ValidationError
from eventcore.observe import Observer
from eventcore.observed_store import observe_store
from eventcore.projection import Projection, ProjectionRunner, RunnerOptions
from eventcore.store import ProjectionStore
from eventcore.subscription import follow
from eventcore.types import AppendRequest, NewEvent, RecordedEvent, StreamId
from tests import pg, pg_replica

pytestmark = pytest.mark.postgres
NO_GROUP_COMMIT = GroupCommitSettings(enabled=False)

# -- configuration (no server) --------------------------------------------------------


def test_read_dsn_is_hidden_in_the_repr() -> None:
    config = PostgresConfig(dsn="postgresql://a:pw1@p/db", read_dsn="postgresql://a:pw2@r/db")
    shown = repr(config)
    assert "pw2" not in shown
    assert "read_dsn=<read_dsn>" in shown


@pytest.mark.parametrize("read_dsn", ["", "  ", 5432])
def test_an_empty_or_non_text_read_dsn_is_refused(read_dsn: Any) -> None:
    with pytest.raises(ValidationError, match="read_dsn must be a non-empty str"):
        PostgresConfig(read_dsn=read_dsn)


def test_command_reads_on_the_replica_without_a_replica_are_refused() -> None:
    with pytest.raises(ValidationError, match="set read_dsn"):
        PostgresConfig(command_reads_on_replica=True)


# -- a primary and its standby ----------------------------------------------------------


@pytest.fixture(scope="module")
def pair() -> Iterator[pg_replica.ReplicatedPair]:
    yield from pg_replica.replicated_pair_or_skip()


@pytest.fixture
def schema() -> str:
    return pg.new_schema_name()


async def open_store(
    pair: pg_replica.ReplicatedPair, schema: str, *, replica: bool = True, **overrides: Any
) -> PostgresEventStore:
    settings: dict[str, Any] = {"max_connections": 6, "min_connections": 1}
    if replica:
        settings["read_dsn"] = pair.standby.url
    settings.update(overrides)
    store = await PostgresEventStore.open(
        PostgresConfig.development(pair.primary.url, schema=schema, **settings)
    )
    await pair.wait_replayed()  # the schema made on the primary exists on the standby
    return store


@contextlib.asynccontextmanager
async def paused_replay(pair: pg_replica.ReplicatedPair) -> AsyncIterator[None]:
    """The standby applies nothing received after this until the block ends."""
    conn = await asyncpg.connect(pair.standby.url, timeout=5)
    try:
        await conn.execute("SELECT pg_wal_replay_pause()")
        try:
            yield
        finally:
            await conn.execute("SELECT pg_wal_replay_resume()")
    finally:
        await conn.close()


def tick(stream: str, version: int, count: int = 1) -> AppendRequest:
    events = [NewEvent(StreamId(stream), "Tick", b"{}") for _ in range(count)]
    return AppendRequest.create({stream: version}, events)


async def write_ticks(store: PostgresEventStore, stream: str, appends: int, size: int) -> None:
    for n in range(appends):
        await store.append(tick(stream, n * size, size))


async def test_log_reads_go_to_the_replica(pair: pg_replica.ReplicatedPair, schema: str) -> None:
    async with await open_store(pair, schema) as store, paused_replay(pair):
        await store.append(tick("s", 0))
        assert await store.read_all() == []
        assert await store.head_position() == 0


async def test_open_store_sends_log_reads_to_the_read_url(
    pair: pg_replica.ReplicatedPair, schema: str
) -> None:
    url = f"{pair.primary.url}?schema={schema}"
    store = await eventcore.open_store(url, read_url=pair.standby.url)
    try:
        await pair.wait_replayed()
        async with paused_replay(pair):
            await store.append(tick("s", 0))
            assert await store.read_all() == []
    finally:
        await store.close()


async def test_open_store_takes_the_read_url_from_the_environment(
    pair: pg_replica.ReplicatedPair, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENTCORE_READ_DATABASE_URL", pair.standby.url)
    store = await eventcore.open_store(f"{pair.primary.url}?schema={schema}")
    try:
        assert isinstance(store, PostgresEventStore)
        assert store.config.read_dsn == pair.standby.url
        await pair.wait_replayed()
        async with paused_replay(pair):
            await store.append(tick("s", 0))
            assert await store.head_position() == 0
    finally:
        await store.close()


async def test_a_store_configured_from_the_environment_takes_its_read_dsn_from_it(
    pair: pg_replica.ReplicatedPair, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENTCORE_DATABASE_URL", pair.primary.url)
    monkeypatch.setenv("EVENTCORE_READ_DATABASE_URL", pair.standby.url)
    async with await PostgresEventStore.open(PostgresConfig(schema=schema)) as store:
        assert store.config.read_dsn == pair.standby.url
        await pair.wait_replayed()
        async with paused_replay(pair):
            await store.append(tick("s", 0))
            assert await store.head_position() == 0


async def test_stream_reads_stay_on_the_primary_by_default(
    pair: pg_replica.ReplicatedPair, schema: str
) -> None:
    async with await open_store(pair, schema) as store, paused_replay(pair):
        await store.append(tick("s", 0))
        assert len(await store.read_stream("s")) == 1
        assert await store.stream_version("s") == 1


async def test_stream_reads_go_to_the_replica_when_opted_in(
    pair: pg_replica.ReplicatedPair, schema: str
) -> None:
    opted_in = await open_store(pair, schema, command_reads_on_replica=True)
    async with opted_in as store, paused_replay(pair):
        await store.append(tick("s", 0))
        assert await store.read_stream("s") == []
        assert await store.stream_version("s") == 0


async def test_a_waiting_follower_waits_for_the_replica_to_replay_the_commit(
    pair: pg_replica.ReplicatedPair, schema: str
) -> None:
    async with await open_store(pair, schema) as store:
        async with paused_replay(pair):
            waiter = asyncio.create_task(store.wait_for_append(after=0, max_wait=30))
            await store.append(tick("s", 0))
            done, _ = await asyncio.wait({waiter}, timeout=0.5)
            assert not done, "woke before the replica had the event"
        done, _ = await asyncio.wait({waiter}, timeout=10)
        assert done, "not woken once the replica replayed the event"
        assert [e.global_position for e in await store.read_all()] == [1]


async def test_a_follower_on_the_replica_sees_every_position_in_order_while_writers_append(
    pair: pg_replica.ReplicatedPair, schema: str
) -> None:
    async with (
        await open_store(pair, schema, replica=False) as batched,
        await open_store(pair, schema, replica=False, group_commit=NO_GROUP_COMMIT) as single,
        await open_store(pair, schema) as reader,
    ):
        writers = [
            write_ticks(batched, "a", 60, 1),
            write_ticks(batched, "b", 30, 3),
            write_ticks(single, "c", 60, 1),
            write_ticks(single, "d", 20, 4),
        ]
        total = 60 + 90 + 60 + 80
        seen: list[int] = []

        async def tail() -> None:
            async for event in follow(reader, poll_interval=5.0):
                seen.append(event.global_position)
                if len(seen) == total:
                    return

        follower = asyncio.create_task(tail())
        await asyncio.gather(*writers)
        await asyncio.wait_for(follower, timeout=30)
        assert seen == list(range(1, total + 1))
        assert await batched.head_position() == total


async def test_a_filtered_follower_on_a_lagging_replica_skips_nothing_that_matches(
    pair: pg_replica.ReplicatedPair, schema: str
) -> None:
    # A filtered follower counts the log up to the head as scanned: were the head
    # read on the primary, the events the standby has not replayed would be lost.
    async with (
        await open_store(pair, schema, replica=False) as writer,
        await open_store(pair, schema) as reader,
    ):
        await writer.append(tick("a", 0))
        await pair.wait_replayed()
        positions: asyncio.Queue[int] = asyncio.Queue()

        async def tail() -> None:
            async for event in follow(reader, stream_prefix="a", poll_interval=0.05):
                positions.put_nowait(event.global_position)

        follower = asyncio.create_task(tail())
        try:
            assert await asyncio.wait_for(positions.get(), 10) == 1
            async with paused_replay(pair):
                await writer.append(tick("a", 1))
                await writer.append(tick("b", 0))
                await asyncio.sleep(0.3)  # several pages read from the lagging standby
                assert positions.empty()
            assert await asyncio.wait_for(positions.get(), 10) == 2
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower


class Positions(Projection):
    def __init__(self) -> None:
        self.name = "positions"
        self.seen: dict[int, str] = {}

    async def handle(self, event: RecordedEvent) -> None:
        self.seen[event.global_position] = event.stream_id

    async def reset(self) -> None:
        self.seen.clear()


async def test_a_projection_reading_the_replica_reaches_the_head_and_checkpoints_on_the_primary(
    pair: pg_replica.ReplicatedPair, schema: str
) -> None:
    async with (
        await open_store(pair, schema, replica=False) as primary,
        await open_store(pair, schema) as store,
    ):
        await write_ticks(primary, "before", 50, 2)
        projection = Positions()
        options = RunnerOptions(poll_interval=5.0, lease_ttl=5.0, checkpoint_every=10)
        async with ProjectionRunner(store, projection, options=options) as runner:
            await write_ticks(primary, "during", 50, 1)
            head = await primary.head_position()
            assert await asyncio.wait_for(runner.caught_up(head), timeout=30) == head
        assert sorted(projection.seen) == list(range(1, head + 1))
        assert await primary.load_checkpoint("positions") == head


@pytest.mark.parametrize("observed", [False, True], ids=["plain", "observed"])
async def test_a_projection_whose_checkpoint_the_replica_has_not_replayed_waits_for_it(
    pair: pg_replica.ReplicatedPair, schema: str, observed: bool
) -> None:
    # The checkpoint is saved on the primary; the standby's log lags it. Observed:
    # the store as an Application with a store-call observer hands it to runners.
    async with (
        await open_store(pair, schema, replica=False) as primary,
        await open_store(pair, schema) as store,
    ):
        await write_ticks(primary, "before", 3, 1)
        await pair.wait_replayed()
        projection = Positions()
        options = RunnerOptions(poll_interval=5.0, lease_ttl=5.0)
        source = observe_store(store, Observer()) if observed else store
        assert isinstance(source, ProjectionStore)
        runner = ProjectionRunner(source, projection, options=options)
        try:
            async with paused_replay(pair):
                await write_ticks(primary, "lagging", 3, 1)
                await primary.save_checkpoint("positions", 6)
                assert await store.head_position() == 3
                running = asyncio.create_task(runner.run())
                await asyncio.sleep(0.5)  # the runner starts, and finds the replica behind
                assert not running.done(), f"stopped on a lagging replica: {running}"
            await primary.append(tick("after", 0))
            assert await asyncio.wait_for(runner.caught_up(7), timeout=30) == 7
            assert sorted(projection.seen) == [7], "the checkpoint was not kept"
        finally:
            await runner.stop()


async def test_a_projection_gives_up_on_a_replica_that_does_not_reach_its_checkpoint_in_time(
    pair: pg_replica.ReplicatedPair, schema: str
) -> None:
    async with (
        await open_store(pair, schema, replica=False) as primary,
        await open_store(pair, schema) as store,
        paused_replay(pair),
    ):
        await primary.append(tick("a", 0))
        await primary.save_checkpoint("positions", 1)
        options = RunnerOptions(lease_ttl=5.0, max_retry_time=0.5)
        runner = ProjectionRunner(store, Positions(), options=options)
        with pytest.raises(ProjectionFailed, match="replica it reads has replayed") as caught:
            await asyncio.wait_for(runner.run(), timeout=30)
        assert "Rebuild" not in str(caught.value)


async def test_a_projection_on_a_replica_whose_checkpoint_is_past_the_primarys_head_fails(
    pair: pg_replica.ReplicatedPair, schema: str
) -> None:
    async with await open_store(pair, schema) as store:
        await store.append(tick("a", 0))
        await store.save_checkpoint("positions", 50)
        runner = ProjectionRunner(store, Positions(), options=RunnerOptions(lease_ttl=5.0))
        with pytest.raises(ProjectionFailed, match="checkpoint 50 is past the log's head 1"):
            await asyncio.wait_for(runner.run(), timeout=30)


async def test_a_command_reading_a_stale_replica_retries_until_the_replica_catches_up(
    pair: pg_replica.ReplicatedPair, schema: str
) -> None:
    async with (
        await open_store(pair, schema, replica=False) as primary,
        await open_store(pair, schema, command_reads_on_replica=True) as store,
    ):
        await execute(primary, Deposit("acc", 10), codec=bank_codec)
        await pair.wait_replayed()
        async with paused_replay(pair):
            await execute(primary, Deposit("acc", 5), codec=bank_codec)
            patient = RetryPolicy.fixed(0.05, max_retries=400)
            command = execute(store, Deposit("acc", 1), codec=bank_codec, retry=patient)
            running = asyncio.create_task(command)
            done, _ = await asyncio.wait({running}, timeout=0.5)
            assert not done, "a read of the stale replica cannot append"
        result = await asyncio.wait_for(running, timeout=30)
        assert result.attempts > 1
        assert result.stream_versions == {"acc": 3}
        assert await primary.stream_version("acc") == 3


async def test_concurrent_commands_reading_the_replica_lose_no_update(
    pair: pg_replica.ReplicatedPair, schema: str
) -> None:
    async with await open_store(pair, schema, command_reads_on_replica=True) as store:
        patient = RetryPolicy.exponential(max_retries=30, base_delay=0.002)
        deposits = [
            execute(store, Deposit(f"acc-{n % 3}", 1), codec=bank_codec, retry=patient)
            for n in range(90)
        ]
        await asyncio.gather(*deposits)
        await pair.wait_replayed()
        versions = [await store.stream_version(f"acc-{n}") for n in range(3)]
        assert versions == [30, 30, 30]
        assert await store.head_position() == 90


# -- the replay watch (no server: it is given the query to run) -------------------------


class ReplicaHead:
    """A replica's log head that the test moves; counts how often it is asked."""

    def __init__(self) -> None:
        self.head = 0
        self.asked = 0

    async def read(self) -> int:
        self.asked += 1
        await asyncio.sleep(0)  # a query is never instantaneous
        return self.head


async def test_the_replay_watch_sleeps_between_polls_of_a_lagging_replica() -> None:
    replica = ReplicaHead()
    watch = ReplayWatch(replica.read)
    ticks = 0

    async def elsewhere() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    other = asyncio.create_task(elsewhere())
    assert not await watch.wait_past(0, max_wait=0.3)
    other.cancel()
    # 1 ms growing by half to 20 ms covers 0.3 s in about 25 polls, not thousands.
    assert replica.asked < 40
    assert ticks >= 10


async def test_the_replay_watch_returns_once_the_replica_has_replayed_past_the_position() -> None:
    replica = ReplicaHead()
    watch = ReplayWatch(replica.read)
    waiter = asyncio.create_task(watch.wait_past(4, max_wait=30))
    await asyncio.sleep(0.05)
    replica.head = 5
    assert await asyncio.wait_for(waiter, timeout=5)


async def test_followers_waiting_on_one_replay_watch_share_its_polls() -> None:
    replica = ReplicaHead()
    watch = ReplayWatch(replica.read)
    alone = ReplicaHead()
    await ReplayWatch(alone.read).wait_past(0, max_wait=0.2)
    await asyncio.gather(*(watch.wait_past(0, max_wait=0.2) for _ in range(20)))
    # Unshared, 20 followers would poll about 20 times as often as one. The two
    # windows are timed separately, and on a loaded machine their sleeps overshoot
    # differently (17 polls alone against 20 shared in one such run), so the
    # bound is twice the lone count, not the count itself.
    assert replica.asked <= 2 * alone.asked


async def test_the_replay_watch_stops_waiting_when_the_replica_cannot_be_asked() -> None:
    async def unreachable() -> int:
        raise StoreUnavailable("head_position on the replica failed: connection refused")

    assert not await asyncio.wait_for(ReplayWatch(unreachable).wait_past(0, max_wait=30), 5)
