"""The PostgreSQL store behind PgBouncer in transaction pooling mode.

PgBouncer (tests/pgbouncer.py) pools at most four server connections while each
store opens up to ten client connections, so consecutive transactions of one
client connection run on different server sessions: anything the store kept in a
session (a named prepared statement, a LISTEN, a session setting) would break.
Opt in with EVENTCORE_TEST_SERVER_RESTARTS=1 (CI sets it and installs PgBouncer).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import pytest_asyncio

import eventcore
from eventcore import RetryPolicy, StoreError, StoreUnavailable, ValidationError
from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
from eventcore.cache import StateCache
from eventcore.projection import (
    ExactlyOnceRunner,
    ProjectionRunner,
    ProjectionState,
    RunnerOptions,
)
from eventcore.subscription import follow
from eventcore.testing.contract import PeerFactory, StoreContract, append_new
from tests import pg
from tests.bank_checks import check_bank_invariants, open_accounts, run_transfers
from tests.ledger import Dialect, Ledger
from tests.pgbouncer import Bouncer, bouncer_or_skip
from tests.test_projection import Recorder

pytestmark = pytest.mark.postgres

BOUND = 30.0  # seconds: a test that waits longer has hung
OPTIONS = RunnerOptions(poll_interval=0.05, lease_ttl=2.0, checkpoint_every=3)


@pytest.fixture(scope="module")
def bouncer() -> Iterator[Bouncer]:
    yield from bouncer_or_skip()


def bouncer_config(bouncer: Bouncer, schema: str, **overrides: Any) -> PostgresConfig:
    settings: dict[str, Any] = {
        "listen_dsn": bouncer.direct_url,
        "schema": schema,
        "max_connections": 10,
        "min_connections": 1,
        "application_name": "eventcore-tests",
        "command_timeout": 10.0,
    }
    settings.update(overrides)
    listen_dsn = settings.pop("listen_dsn")
    return PostgresConfig.behind_pgbouncer(bouncer.url, listen_dsn=listen_dsn, **settings)


async def open_store(bouncer: Bouncer, schema: str, **overrides: Any) -> PostgresEventStore:
    return await PostgresEventStore.open(bouncer_config(bouncer, schema, **overrides))


@pytest_asyncio.fixture
async def store(bouncer: Bouncer, pg_schema: str) -> AsyncIterator[PostgresEventStore]:
    async with await open_store(bouncer, pg_schema) as opened:
        yield opened


class TestPostgresThroughPgBouncer(StoreContract):
    """The whole store contract, every handle through the transaction pool."""

    @pytest_asyncio.fixture
    async def store(self, bouncer: Bouncer, pg_schema: str) -> AsyncIterator[PostgresEventStore]:
        async with await open_store(bouncer, pg_schema) as opened:
            yield opened

    @pytest_asyncio.fixture
    async def open_peer(
        self, bouncer: Bouncer, pg_schema: str, store: PostgresEventStore
    ) -> AsyncIterator[PeerFactory]:
        async with AsyncExitStack() as peers:

            async def open_peer() -> PostgresEventStore:
                return await peers.enter_async_context(await open_store(bouncer, pg_schema))

            yield open_peer


# -- the settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("statement_cache_size", -1),
        ("statement_cache_size", True),
        ("statement_cache_size", 1.5),
        ("listen_dsn", ""),
        ("listen_dsn", "  "),
        ("listen_dsn", 5432),
        ("statement_timeout_at_connect", "no"),
        ("statement_timeout_at_connect", 1),
    ],
)
def test_an_invalid_pooler_setting_is_refused_naming_the_value(setting: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        PostgresConfig.production(**{setting: value})  # type: ignore[arg-type]
    assert setting in str(caught.value)
    assert repr(value) in str(caught.value)


def test_repr_never_shows_the_password_of_the_listen_dsn() -> None:
    config = PostgresConfig.behind_pgbouncer(
        "postgresql://app:first-secret@bouncer:6432/app",
        listen_dsn="postgresql://app:second-secret@db:5432/app",
    )
    assert "secret" not in repr(config)
    assert "listen_dsn=<listen_dsn>" in repr(config)


def test_the_preset_keeps_the_settings_it_is_given() -> None:
    config = PostgresConfig.behind_pgbouncer(
        "postgresql://app@bouncer/app", listen_dsn=None, max_connections=50, schema="bank"
    )
    assert (config.max_connections, config.schema, config.listen_dsn) == (50, "bank", None)
    assert config.statement_cache_size == 0
    assert not config.statement_timeout_at_connect


async def test_without_statement_timeout_at_connect_the_server_default_applies(
    pg_schema: str,
) -> None:
    async with await pg.fresh_store(pg_schema, statement_timeout_at_connect=False) as store:
        # No public method runs arbitrary SQL, so ask through the private pool.
        conn = await store._pool.acquire()
        try:
            assert await conn.fetchval("SHOW statement_timeout") == "0"
        finally:
            await store._pool.release(conn)


async def test_the_listener_connects_to_the_listen_dsn_not_the_main_one(pg_schema: str) -> None:
    # Nothing listens on port 1: the store works, its followers poll.
    unreachable = "postgresql://postgres@127.0.0.1:1/test"
    async with await pg.fresh_store(pg_schema, listen_dsn=unreachable) as store:
        await append_new(store, "a")
        await store.wait_for_append(0, 0.01)
        assert not store._listener.listening()
        assert await store.head_position() == 1


# -- what the preset turns off, and why ---------------------------------------------------


async def test_the_default_config_is_refused_at_connect_with_a_hint(
    bouncer: Bouncer, pg_schema: str
) -> None:
    config = PostgresConfig.development(bouncer.url, schema=pg_schema)
    with pytest.raises(StoreUnavailable, match="statement_timeout") as caught:
        await PostgresEventStore.open(config)
    assert "behind_pgbouncer" in str(caught.value)


async def test_cached_prepared_statements_fail_when_sessions_are_shared(
    bouncer: Bouncer, pg_schema: str
) -> None:
    # The statement cache on, nothing else changed: a statement prepared on one
    # server session is looked for on another.
    async with await open_store(bouncer, pg_schema, statement_cache_size=100) as cached:
        outcomes = await asyncio.gather(
            *(cached.stream_version(f"s-{n % 16}") for n in range(400)),
            return_exceptions=True,
        )
    failures = [o for o in outcomes if isinstance(o, StoreError)]
    assert failures, "every read found its prepared statement: sessions were not shared"
    assert "prepared statement" in str(failures[0])


# -- the write path, shared sessions -------------------------------------------------------


async def test_concurrent_transfers_with_group_commit_keep_every_invariant(
    store: PostgresEventStore,
) -> None:
    assert store.config.group_commit.enabled
    accounts = await open_accounts(store, 12)
    outcomes = await run_transfers(
        store,
        accounts,
        count=200,
        seed=7,
        retry=RetryPolicy(max_retries=50, base_delay=0.001),
        cache=StateCache(),
    )
    assert outcomes.committed
    await check_bank_invariants(store, accounts, outcomes)


# -- LISTEN goes past the bouncer ----------------------------------------------------------


async def _first_followed(store: PostgresEventStore, poll_interval: float) -> int:
    async for event in follow(store, poll_interval=poll_interval):
        return event.global_position
    raise AssertionError("follow() ended")


async def test_a_follower_is_woken_through_the_direct_listen_dsn(
    store: PostgresEventStore,
) -> None:
    # A poll interval far past the bound: only a notification can deliver in time.
    follower = asyncio.create_task(_first_followed(store, poll_interval=3600))
    await store.wait_for_append(0, 0.2)  # the listener is up before the append
    await append_new(store, "woken")
    assert await asyncio.wait_for(follower, BOUND) == 1


async def test_a_follower_is_woken_through_a_session_mode_pool(
    bouncer: Bouncer, pg_schema: str
) -> None:
    async with await open_store(bouncer, pg_schema, listen_dsn=bouncer.session_url) as store:
        follower = asyncio.create_task(_first_followed(store, poll_interval=3600))
        await store.wait_for_append(0, 0.2)
        await append_new(store, "woken")
        assert await asyncio.wait_for(follower, BOUND) == 1


async def test_open_store_with_pooler_pgbouncer_works_through_the_transaction_pool(
    bouncer: Bouncer, pg_schema: str
) -> None:
    url = f"{bouncer.url}?schema={pg_schema}&pooler=pgbouncer"
    store = await eventcore.open_store(url, listen_url=bouncer.direct_url)
    try:
        assert isinstance(store, PostgresEventStore)
        assert store.config.statement_cache_size == 0
        follower = asyncio.create_task(_first_followed(store, poll_interval=3600))
        await store.wait_for_append(0, 0.2)  # the listener is up before the append
        await asyncio.gather(*(append_new(store, f"s-{n}") for n in range(8)))
        assert await asyncio.wait_for(follower, BOUND) == 1
    finally:
        await store.close()


async def test_listening_through_the_transaction_pool_hears_nothing(
    bouncer: Bouncer, pg_schema: str
) -> None:
    # Why listen_dsn exists: the LISTEN ran on a server session that went back
    # to the pool, so the append's notification reaches nobody and the waiter
    # sleeps out its whole wait.
    async with await open_store(bouncer, pg_schema, listen_dsn=bouncer.url) as store:
        await store.wait_for_append(0, 0.2)
        loop = asyncio.get_running_loop()
        waiting = asyncio.create_task(store.wait_for_append(0, 2.0))
        started = loop.time()
        await asyncio.sleep(0.1)
        await append_new(store, "unheard")
        await waiting
        assert loop.time() - started >= 1.9


# -- projections: leases and transactions through the pool ---------------------------------


async def test_a_projection_runner_holds_its_lease_and_catches_up(
    store: PostgresEventStore,
) -> None:
    for n in range(10):
        await append_new(store, f"stream-{n % 3}")
    active, standby = Recorder(), Recorder()
    async with ProjectionRunner(store, active, options=OPTIONS, holder="one") as first:
        assert await asyncio.wait_for(first.caught_up(), BOUND) == 10
        async with ProjectionRunner(store, standby, options=OPTIONS, holder="two") as second:
            await asyncio.wait_for(second.wait_for_state(ProjectionState.STANDBY), BOUND)
            assert (await second.status()).lease_holder == "one"
            await append_new(store, "stream-0")
            assert await asyncio.wait_for(first.caught_up(), BOUND) == 11
    assert active.deliveries == list(range(1, 12))
    assert standby.deliveries == []
    assert await store.load_checkpoint("recorder") == 11


async def test_an_exactly_once_runner_commits_its_read_model_with_the_checkpoint(
    store: PostgresEventStore, pg_schema: str
) -> None:
    dialect = Dialect("postgres", pg_schema)
    await dialect.create_table()
    for n in range(25):
        await append_new(store, f"account-{n % 3}")
    async with ExactlyOnceRunner(store, Ledger(dialect), options=OPTIONS) as runner:
        assert await asyncio.wait_for(runner.caught_up(), BOUND) == 25
    assert await dialect.positions() == list(range(1, 26))
    assert await store.load_checkpoint("ledger") == 25
