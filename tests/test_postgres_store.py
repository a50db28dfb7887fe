"""What is specific to the PostgreSQL store: configuration, connections, the server's
own guarantees and failures, LISTEN/NOTIFY.

All against the real server; where a test acts behind the store's back it uses a
raw asyncpg connection. Each store gets an application_name of its own, so the
test can find (and terminate) exactly its backends in pg_stat_activity even while
other test runs share the server. The generic behaviour every store shares is
checked by the contract suite (tests/test_contract_postgres.py). Tests that stop or
restart a server do so on a cluster of their own (tests/pg_cluster.py), never on the
shared one, and only with EVENTCORE_TEST_SERVER_RESTARTS=1 (CI sets it).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict
from typing import Any, TypeVar

import asyncpg
import pytest

from eventcore.backends.postgres import (
    DATABASE_URL_VARIABLE,
    PostgresConfig,
    PostgresEventStore,
)
from eventcore.backends.postgres._errors import has_free_connection
from eventcore.demo.bank import Deposit, bank_codec
from eventcore.errors import StoreUnavailable, ValidationError
from eventcore.execute import execute
from eventcore.subscription import follow
from eventcore.types import AppendRequest, AppendResult, NewEvent, RecordedEvent, StreamId
from tests import pg, pg_cluster

pytestmark = pytest.mark.postgres

T = TypeVar("T")
PASSWORD = "s3cret-pw"


def event(stream: str, event_type: str = "Happened", payload: bytes = b"{}") -> NewEvent:
    return NewEvent(StreamId(stream), event_type, payload)


def request(expected: dict[str, int], *events: NewEvent) -> AppendRequest:
    return AppendRequest.create(expected, events)


def unique_application_name() -> str:
    return f"ectest-{uuid.uuid4().hex[:12]}"


@contextlib.asynccontextmanager
async def raw_connection() -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg.PG_URL, timeout=5)
    try:
        yield conn
    finally:
        await conn.close(timeout=5)


async def eventually(check: Callable[[], Awaitable[T]], what: str, within: float = 5.0) -> T:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


async def hangs_no_longer_than(awaitable: Awaitable[T], seconds: float) -> T:
    """Await ``awaitable``; fail the test if it is still running after ``seconds``.

    A guard against hanging, not a speed check: ``seconds`` is far beyond what the
    awaited call needs on a loaded machine, and far below the hang it guards against.
    """
    try:
        return await asyncio.wait_for(awaitable, timeout=seconds)
    except TimeoutError:
        pytest.fail(f"still waiting after {seconds} s: it hangs")


async def finishes_within(task: asyncio.Task[Any], seconds: float) -> bool:
    """Whether ``task`` ends within ``seconds``; cancelled if it does not."""
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if task not in done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False
    task.result()  # re-raise whatever it failed with
    return True


async def backend_pids(
    admin: asyncpg.Connection, application_name: str, where: str = ""
) -> set[int]:
    # pg_stat_activity is a per-transaction snapshot: clear it so polling sees news.
    await admin.execute("SELECT pg_stat_clear_snapshot()")
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity "
        f"WHERE application_name = $1 AND datname = current_database() {where}",
        application_name,
    )
    return {row["pid"] for row in rows}


async def lock_waiters(admin: asyncpg.Connection, application_name: str) -> set[int]:
    return await backend_pids(admin, application_name, "AND wait_event_type = 'Lock'")


async def listener_pids(admin: asyncpg.Connection, application_name: str) -> set[int]:
    """Backends that have finished setting up LISTEN (their last statement is the
    LISTEN itself or the head read that may follow it)."""
    return await backend_pids(
        admin,
        application_name,
        "AND state = 'idle' AND (query LIKE 'LISTEN %' OR query LIKE '%log_head%')",
    )


async def terminate(admin: asyncpg.Connection, pids: set[int]) -> None:
    """Kill the backends, as a server restart would, and wait until they are gone."""
    for pid in pids:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)

    async def gone() -> bool:
        await admin.execute("SELECT pg_stat_clear_snapshot()")
        alive = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", list(pids)
        )
        return bool(alive == 0)

    await eventually(gone, f"backends {sorted(pids)} to exit")


def free_port() -> int:
    """A local port on which nothing listens (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- configuration ------------------------------------------------------------------


def test_the_production_preset_has_exactly_the_seeds_pool_settings() -> None:
    config = PostgresConfig.production("postgresql://app@db/app")
    assert asdict(config) == {
        "dsn": "postgresql://app@db/app",
        "schema": "eventcore",
        "max_connections": 20,
        "min_connections": 5,
        "acquire_timeout": 30.0,
        "idle_timeout": 600.0,
        "max_lifetime": 1800.0,
        "connect_timeout": 5.0,
        "command_timeout": 30.0,
        "application_name": "eventcore",
        "max_payload_bytes": 16 * 1024 * 1024,
        "group_commit": {
            "enabled": True,
            "max_batch": 256,
            "max_wait": 0.0,
            "close_timeout": 30.0,
            "max_in_flight": 2,
        },
        "group_reads": True,
        "copy_threshold": None,
        "statement_cache_size": 100,
        "listen_dsn": None,
        "statement_timeout_at_connect": True,
        "read_dsn": None,
        "command_reads_on_replica": False,
    }


def test_the_development_preset_is_a_small_pool_with_short_timeouts() -> None:
    config = PostgresConfig.development()
    assert asdict(config) == {
        "dsn": None,
        "schema": "eventcore",
        "max_connections": 5,
        "min_connections": 1,
        "acquire_timeout": 5.0,
        "idle_timeout": 60.0,
        "max_lifetime": 300.0,
        "connect_timeout": 2.0,
        "command_timeout": 10.0,
        "application_name": "eventcore-dev",
        "max_payload_bytes": 16 * 1024 * 1024,
        "group_commit": {
            "enabled": True,
            "max_batch": 256,
            "max_wait": 0.0,
            "close_timeout": 30.0,
            "max_in_flight": 2,
        },
        "group_reads": True,
        "copy_threshold": None,
        "statement_cache_size": 100,
        "listen_dsn": None,
        "statement_timeout_at_connect": True,
        "read_dsn": None,
        "command_reads_on_replica": False,
    }


@pytest.mark.parametrize("preset", [PostgresConfig.production, PostgresConfig.development])
def test_preset_overrides_replace_only_the_named_settings(
    preset: Callable[..., PostgresConfig],
) -> None:
    plain = preset("postgresql://app@db/app")
    changed = preset("postgresql://app@db/app", schema="bank", max_connections=50)
    assert (changed.schema, changed.max_connections) == ("bank", 50)
    assert asdict(changed) == asdict(plain) | {"schema": "bank", "max_connections": 50}


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("schema", 'ev"ents'),
        ("schema", "ev'ents"),
        ("schema", "Events"),
        ("schema", "a" * 49),
        ("schema", "1events"),
        ("schema", ""),
        ("schema", "pg_events"),
        ("max_connections", 0),
        ("max_connections", True),
        ("max_connections", 2.0),
        ("min_connections", -1),
        ("min_connections", True),
        ("max_payload_bytes", 0),
        ("max_payload_bytes", True),
        ("acquire_timeout", 0),
        ("idle_timeout", -1.0),
        ("max_lifetime", math.inf),
        ("connect_timeout", math.nan),
        ("command_timeout", True),
        ("command_timeout", "30"),
        ("application_name", "x" * 64),
        ("copy_threshold", 0),
        ("copy_threshold", True),
        ("copy_threshold", 1.5),
        ("copy_threshold", -1),
        ("copy_threshold", "100"),
    ],
)
def test_an_invalid_setting_is_refused_naming_the_value(setting: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        PostgresConfig.production(**{setting: value})  # type: ignore[arg-type]
    assert setting in str(caught.value)
    assert repr(value) in str(caught.value)


def test_a_schema_name_of_48_lower_case_characters_is_accepted() -> None:
    assert PostgresConfig(schema="a" * 48).schema == "a" * 48
    assert PostgresConfig(schema="_bank_2").schema == "_bank_2"


def test_min_connections_above_max_connections_is_refused_naming_both() -> None:
    with pytest.raises(ValidationError, match=r"min_connections \(6\).*max_connections \(5\)"):
        PostgresConfig.development(min_connections=6)


def test_repr_never_shows_the_password_of_the_dsn() -> None:
    config = PostgresConfig.production(f"postgresql://app:{PASSWORD}@db:5432/app", schema="bank")
    assert PASSWORD not in repr(config)
    assert PASSWORD not in str(config)
    assert "schema='bank'" in repr(config)


# -- finding and reaching the server ------------------------------------------------


async def test_opening_without_a_dsn_or_the_environment_variable_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(DATABASE_URL_VARIABLE, raising=False)
    with pytest.raises(ValidationError, match=DATABASE_URL_VARIABLE):
        await PostgresEventStore.open(PostgresConfig.development(schema="never_created"))


async def test_the_environment_variable_gives_the_dsn_when_none_is_configured(
    pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATABASE_URL_VARIABLE, pg.PG_URL)
    config = PostgresConfig.development(schema=pg_schema)
    assert config.dsn is None
    async with await PostgresEventStore.open(config) as store, raw_connection() as raw:
        await store.append(request({"s": 0}, event("s")))
        assert await raw.fetchval(f'SELECT count(*) FROM "{pg_schema}".events') == 1


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://app:{PASSWORD}@127.0.0.1:notaport/test",
        f"host=127.0.0.1 user=app password={PASSWORD} dbname=test",
        f"app:{PASSWORD}@127.0.0.1:5432/test",
    ],
    ids=["port-not-a-number", "key-value-form", "no-scheme"],
)
async def test_a_malformed_dsn_is_a_validation_error_that_hides_the_password(dsn: str) -> None:
    with pytest.raises(ValidationError, match="DSN") as caught:
        await PostgresEventStore.open(PostgresConfig.development(dsn, schema="never_created"))
    assert PASSWORD not in str(caught.value)


async def test_a_port_where_nothing_listens_raises_store_unavailable_at_once() -> None:
    dsn = f"postgresql://app:{PASSWORD}@127.0.0.1:{free_port()}/test"
    with pytest.raises(StoreUnavailable) as caught:
        # A refused connection is known at once: waiting out connect_timeout (an
        # hour) would trip the guard, which is generous enough for a loaded machine.
        await hangs_no_longer_than(
            PostgresEventStore.open(PostgresConfig.development(dsn, connect_timeout=3600)),
            seconds=60,
        )
    assert isinstance(caught.value.__cause__, OSError)
    assert PASSWORD not in str(caught.value)


async def test_a_server_that_never_answers_raises_store_unavailable_after_connect_timeout() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the client gives up

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    dsn = f"postgresql://app:{PASSWORD}@127.0.0.1:{port}/test"
    try:
        with pytest.raises(StoreUnavailable) as caught:
            # Without connect_timeout the silent server would hold open() forever.
            await hangs_no_longer_than(
                PostgresEventStore.open(PostgresConfig.production(dsn, connect_timeout=0.5)),
                seconds=60,
            )
    finally:
        server.close()
        for writer in accepted:
            writer.close()
        await server.wait_closed()
    assert accepted, "the store never reached the silent server"
    assert PASSWORD not in str(caught.value)


# -- the pool applies its settings --------------------------------------------------


async def test_every_store_connection_carries_the_configured_application_name(
    pg_schema: str,
) -> None:
    name = unique_application_name()
    async with (
        await pg.fresh_store(pg_schema, application_name=name, min_connections=2) as store,
        raw_connection() as admin,
    ):
        await store.wait_for_append(after=0, max_wait=0.01)  # opens the listener too
        assert len(await backend_pids(admin, name)) == 3  # two pooled, one listening


@pytest.mark.parametrize(("command_timeout", "shown"), [(7, "7s"), (2.5, "2500ms")])
async def test_store_connections_have_statement_timeout_equal_to_command_timeout(
    pg_schema: str, command_timeout: float, shown: str
) -> None:
    async with await pg.fresh_store(pg_schema, command_timeout=command_timeout) as store:
        # No public method runs arbitrary SQL, so ask through the private pool.
        conn = await store._pool.acquire()
        try:
            assert await conn.fetchval("SHOW statement_timeout") == shown
        finally:
            await store._pool.release(conn)


async def test_a_pool_with_a_connection_free_is_seen_to_have_one_and_a_drained_pool_not(
    pg_schema: str,
) -> None:
    # The store skips asyncpg's acquire timer only when this says a connection is
    # free: if asyncpg stops keeping its queue where we look, this fails.
    async with await pg.fresh_store(pg_schema, max_connections=2, min_connections=2) as store:
        assert has_free_connection(store._pool)
        held = [await store._pool.acquire() for _ in range(2)]
        try:
            assert not has_free_connection(store._pool)
        finally:
            for conn in held:
                await store._pool.release(conn)
        assert has_free_connection(store._pool)


async def test_an_append_outlasting_command_timeout_is_cancelled_and_writes_nothing(
    pg_schema: str,
) -> None:
    # One connection: the cancelled one must come back to the pool usable.
    async with (
        await pg.fresh_store(
            pg_schema, command_timeout=1, min_connections=1, max_connections=1
        ) as store,
        raw_connection() as locker,
    ):
        blocking = locker.transaction()
        await blocking.start()
        try:
            await locker.execute(f'SELECT * FROM "{pg_schema}".log_head FOR UPDATE')
            with pytest.raises(StoreUnavailable):
                # The lock is held until the append gives up: only command_timeout ends it.
                await hangs_no_longer_than(
                    store.append(request({"a": 0, "b": 0}, event("a"), event("b"))), seconds=60
                )
        finally:
            await blocking.rollback()
        assert await store.read_all() == []
        assert await store.head_position() == 0
        assert [await store.stream_version(s) for s in ("a", "b")] == [0, 0]
        written = await store.append(request({"a": 0, "b": 0}, event("a"), event("b")))
        assert written.positions == (1, 2)


# -- the server's own guarantees ----------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {events} SET event_type = 'Forged'",
        "DELETE FROM {events} WHERE position = 1",
        "TRUNCATE {events}",
    ],
    ids=["update", "delete", "truncate"],
)
async def test_stored_events_cannot_be_changed_through_a_raw_connection(
    pg_schema: str, statement: str
) -> None:
    async with await pg.fresh_store(pg_schema) as store, raw_connection() as raw:
        await store.append(request({"s": 0}, event("s", "Real", b'{"real": true}')))
        with pytest.raises(asyncpg.RaiseError, match="immutable"):
            await raw.execute(statement.format(events=f'"{pg_schema}".events'))
        [stored] = await store.read_all()
        assert (stored.event_type, stored.payload) == ("Real", b'{"real": true}')


UNUSUAL_STREAM_IDS = [
    'it\'s a "quoted" id',
    "back\\slash\\\\twice\\",
    "100%_done_%%__",
    "ünïcødé-ストリーム-🚀",
    "tab\tand\nnewline inside",
    "ü" * 255,
]


async def test_unusual_stream_ids_are_stored_byte_for_byte(pg_schema: str) -> None:
    async with await pg.fresh_store(pg_schema) as store, raw_connection() as raw:
        await store.append(
            request({s: 0 for s in UNUSUAL_STREAM_IDS}, *map(event, UNUSUAL_STREAM_IDS))
        )
        rows = await raw.fetch(
            f"SELECT stream_id, convert_to(stream_id, 'UTF8') AS utf8 "
            f'FROM "{pg_schema}".events ORDER BY position'
        )
        assert [row["stream_id"] for row in rows] == UNUSUAL_STREAM_IDS
        assert [bytes(row["utf8"]) for row in rows] == [s.encode() for s in UNUSUAL_STREAM_IDS]
        streams = await raw.fetch(f'SELECT stream_id, version FROM "{pg_schema}".streams')
        assert {row["stream_id"]: row["version"] for row in streams} == dict.fromkeys(
            UNUSUAL_STREAM_IDS, 1
        )


async def test_stores_on_different_schemas_of_one_database_are_isolated(pg_schema: str) -> None:
    other_schema = pg.new_schema_name()
    try:
        async with (
            await pg.fresh_store(pg_schema) as first,
            await pg.fresh_store(other_schema) as second,
        ):
            one = await first.append(request({"same-id": 0}, event("same-id", "InFirst")))
            two = await second.append(
                request({"same-id": 0}, event("same-id", "InSecond"), event("same-id", "InSecond"))
            )
            assert (one.positions, two.positions) == ((1,), (1, 2))
            assert [e.event_type for e in await first.read_all()] == ["InFirst"]
            assert [e.event_type for e in await second.read_all()] == ["InSecond"] * 2
            assert [await first.stream_version("same-id"), await first.head_position()] == [1, 1]
            assert [await second.stream_version("same-id"), await second.head_position()] == [2, 2]
    finally:
        await pg.drop_schema(other_schema)


# -- payload size -------------------------------------------------------------------


async def test_a_payload_over_max_payload_bytes_is_refused_and_nothing_is_written(
    pg_schema: str,
) -> None:
    bulky = b'{"text": "' + b"x" * 1000 + b'"}'
    async with await pg.fresh_store(pg_schema, max_payload_bytes=1000) as store:
        with pytest.raises(ValidationError) as caught:
            await store.append(
                request(
                    {"small": 0, "big-one": 0}, event("small"), event("big-one", "Bulky", bulky)
                )
            )
        message = str(caught.value)
        assert all(part in message for part in ("'big-one'", "'Bulky'", str(len(bulky)), "1000"))
        assert await store.read_all() == []
        assert await store.stream_version("small") == 0


async def test_a_payload_over_the_limit_refuses_the_whole_append_many_batch(pg_schema: str) -> None:
    async with await pg.fresh_store(pg_schema, max_payload_bytes=1000) as store:
        with pytest.raises(ValidationError, match="'big-one'"):
            await store.append_many(
                [
                    request({"small": 0}, event("small")),
                    request({"big-one": 0}, event("big-one", payload=b'"' + b"x" * 999 + b'"')),
                ]
            )
        assert await store.read_all() == []


async def test_a_payload_of_exactly_max_payload_bytes_is_accepted(pg_schema: str) -> None:
    exact = b'"' + b"x" * 998 + b'"'
    async with await pg.fresh_store(pg_schema, max_payload_bytes=1000) as store:
        await store.append(request({"s": 0}, event("s", payload=exact)))
        [stored] = await store.read_all()
        assert stored.payload == exact


# -- connections lost ---------------------------------------------------------------


async def test_the_store_recovers_after_the_server_drops_its_connections(pg_schema: str) -> None:
    name = unique_application_name()
    async with (
        await pg.fresh_store(pg_schema, application_name=name, min_connections=3) as store,
        raw_connection() as admin,
    ):
        await store.append(request({"s": 0}, event("s")))
        await store.wait_for_append(after=0, max_wait=0.01)  # the listener too
        await terminate(admin, await backend_pids(admin, name))

        # Reads retry once on a fresh connection: none of them may fail.
        assert await store.stream_version("s") == 1
        assert [e.global_position for e in await store.read_all()] == [1]
        assert await store.head_position() == 1
        # An append is never retried (it may have committed): it may fail once ...
        with contextlib.suppress(StoreUnavailable):
            await store.append(request({"s": 1}, event("s")))
        # ... but the store is usable again without being reopened.
        version = await store.stream_version("s")
        written = await store.append(request({"s": version}, event("s")))
        assert written.positions == (version + 1,)


async def test_an_append_whose_connection_dies_while_waiting_leaves_nothing_behind(
    pg_schema: str,
) -> None:
    name = unique_application_name()
    # One connection: the dead one's pool slot must be given back.
    async with (
        await pg.fresh_store(
            pg_schema, application_name=name, min_connections=1, max_connections=1
        ) as store,
        raw_connection() as locker,
        raw_connection() as admin,
    ):
        blocking = locker.transaction()
        await blocking.start()
        try:
            await locker.execute(f'SELECT * FROM "{pg_schema}".log_head FOR UPDATE')
            append = asyncio.create_task(
                store.append(
                    request({"a": 0, "b": 0}, event("a"), event("b"), event("a"), event("b"))
                )
            )
            waiting = await eventually(
                lambda: lock_waiters(admin, name), "the append to wait for the lock"
            )
            await terminate(admin, waiting)
            with pytest.raises(StoreUnavailable):
                await append
        finally:
            await blocking.rollback()
        assert await store.read_all() == []
        assert [await store.stream_version(s) for s in ("a", "b")] == [0, 0]
        assert await store.head_position() == 0
        written = await store.append(request({"a": 0, "b": 0}, event("b"), event("a")))
        assert written.positions == (1, 2)


@contextlib.asynccontextmanager
async def events_locked(schema: str) -> AsyncIterator[None]:
    """Hold an exclusive lock on the events table, so every read waits on it."""
    async with raw_connection() as locker:
        blocking = locker.transaction()
        await blocking.start()
        try:
            await locker.execute(f'LOCK TABLE "{schema}".events IN ACCESS EXCLUSIVE MODE')
            yield
        finally:
            await blocking.rollback()


async def test_a_read_whose_connection_is_terminated_mid_query_never_leaks_a_driver_error(
    pg_schema: str,
) -> None:
    name = unique_application_name()
    # One connection: the read's retry must not be handed the connection that
    # just died (asyncpg can see the server's error before the socket closes).
    async with (
        await pg.fresh_store(
            pg_schema, application_name=name, min_connections=1, max_connections=1
        ) as store,
        raw_connection() as admin,
    ):
        await store.append(request({"s": 0}, event("s")))
        async with events_locked(pg_schema):
            read = asyncio.create_task(store.read_all())
            waiting = await eventually(
                lambda: lock_waiters(admin, name), "the read to wait for the lock"
            )
            await terminate(admin, waiting)
        with contextlib.suppress(StoreUnavailable):  # the retry may meet it too
            await read
        for _ in range(5):
            assert [e.global_position for e in await store.read_all()] == [1]


async def test_a_query_cancelled_by_its_task_discards_its_connection(pg_schema: str) -> None:
    name = unique_application_name()
    async with (
        await pg.fresh_store(
            pg_schema, application_name=name, min_connections=1, max_connections=1
        ) as store,
        raw_connection() as admin,
    ):
        await store.append(request({"s": 0}, event("s")))
        async with events_locked(pg_schema):
            read = asyncio.create_task(store.read_all())
            waiting = await eventually(
                lambda: lock_waiters(admin, name), "the read to wait for the lock"
            )
            read.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await read

        # Its state unknown, the connection was terminated, not pooled again (the
        # server notices once the lock no longer holds its backend).
        async def cancelled_backend_gone() -> bool:
            return not await backend_pids(admin, name) & waiting

        await eventually(cancelled_backend_gone, "the cancelled read's backend to exit")
        assert [e.global_position for e in await store.read_all()] == [1]
        assert not await backend_pids(admin, name) & waiting


async def test_reads_while_pooled_connections_are_killed_fail_at_most_once_per_connection(
    pg_schema: str,
) -> None:
    name = unique_application_name()
    connections, readers, reads_each, rounds = 4, 4, 50, 3
    async with (
        await pg.fresh_store(
            pg_schema,
            application_name=name,
            min_connections=connections,
            max_connections=connections,
        ) as store,
        raw_connection() as admin,
    ):
        for n in range(10):
            events = [event("s") for _ in range(50)]
            await store.append(request({"s": n * 50}, *events))
        completed = 0
        progressed = asyncio.Condition()
        lost: list[StoreUnavailable] = []
        other: list[BaseException] = []

        async def reader() -> None:
            nonlocal completed
            for _ in range(reads_each):
                try:
                    assert len(await store.read_all()) == 500
                except StoreUnavailable as exc:
                    lost.append(exc)
                except Exception as exc:
                    other.append(exc)
                async with progressed:
                    completed += 1
                    progressed.notify_all()

        tasks = [asyncio.create_task(reader()) for _ in range(readers)]
        killed = 0
        for round_ in range(1, rounds + 1):
            # Kill every backend of the store (the listener's too) mid-reads.
            async with progressed:
                await progressed.wait_for(lambda: completed >= round_ * 10)  # noqa: B023
            pids = await backend_pids(admin, name)
            killed += len(pids)
            await terminate(admin, pids)
        await asyncio.gather(*tasks)
        assert other == []  # never InternalClientError, nor any other raw error
        assert len(lost) <= killed


# -- LISTEN/NOTIFY ------------------------------------------------------------------


async def test_a_waiting_reader_wakes_promptly_when_another_store_appends(pg_schema: str) -> None:
    name = unique_application_name()
    async with (
        await pg.fresh_store(pg_schema, application_name=name) as reader,
        await pg.fresh_store(pg_schema) as writer,
        raw_connection() as admin,
    ):
        waiter = asyncio.create_task(reader.wait_for_append(after=0, max_wait=30))
        await eventually(lambda: listener_pids(admin, name), "the reader to LISTEN")
        assert not waiter.done()
        await writer.append(request({"s": 0}, event("s")))
        assert await finishes_within(waiter, 5), "not woken by the append (max_wait is 30 s)"


async def test_a_wait_after_an_already_announced_append_returns_at_once(pg_schema: str) -> None:
    name = unique_application_name()
    async with (
        await pg.fresh_store(pg_schema, application_name=name) as reader,
        await pg.fresh_store(pg_schema) as writer,
        raw_connection() as admin,
    ):
        waiter = asyncio.create_task(reader.wait_for_append(after=0, max_wait=30))
        await eventually(lambda: listener_pids(admin, name), "the reader to LISTEN")
        await writer.append(request({"s": 0}, event("s")))
        assert await finishes_within(waiter, 5)
        again = asyncio.create_task(reader.wait_for_append(after=0, max_wait=30))
        assert await finishes_within(again, 1)


async def test_a_wait_returns_at_once_when_the_log_grew_before_anyone_listened(
    pg_schema: str,
) -> None:
    async with await pg.fresh_store(pg_schema) as store:
        await store.append(request({"s": 0}, event("s"), event("s")))
        waiter = asyncio.create_task(store.wait_for_append(after=1, max_wait=30))
        assert await finishes_within(waiter, 2)


async def test_a_lost_listener_connection_means_polling_until_it_listens_again(
    pg_schema: str,
) -> None:
    name = unique_application_name()
    async with (
        await pg.fresh_store(pg_schema, application_name=name) as reader,
        await pg.fresh_store(pg_schema) as writer,
        raw_connection() as admin,
    ):
        await reader.wait_for_append(after=0, max_wait=0.01)
        first = await eventually(lambda: listener_pids(admin, name), "the reader to LISTEN")
        await terminate(admin, first)

        # Neither raises nor hangs with its listener gone.
        await hangs_no_longer_than(reader.wait_for_append(after=0, max_wait=0.2), seconds=60)

        waiter = asyncio.create_task(reader.wait_for_append(after=0, max_wait=30))

        async def listening_again() -> set[int]:
            return await listener_pids(admin, name) - first

        await eventually(listening_again, "the reader to LISTEN again")
        await writer.append(request({"s": 0}, event("s")))
        assert await finishes_within(waiter, 5), "not woken after re-listening (max_wait 30 s)"


async def test_a_waiter_is_not_woken_by_appends_to_another_schema(pg_schema: str) -> None:
    name = unique_application_name()
    other_schema = pg.new_schema_name()
    try:
        async with (
            await pg.fresh_store(pg_schema, application_name=name) as reader,
            await pg.fresh_store(other_schema) as elsewhere,
            raw_connection() as admin,
        ):
            waiter = asyncio.create_task(reader.wait_for_append(after=0, max_wait=30))
            await eventually(lambda: listener_pids(admin, name), "the reader to LISTEN")
            await elsewhere.append(request({"s": 0}, event("s")))
            assert not await finishes_within(waiter, 0.5)
    finally:
        await pg.drop_schema(other_schema)


# -- server restarts, on a cluster of the tests' own (never the shared server) -------


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[pg_cluster.Cluster]:
    """A PostgreSQL cluster these tests may stop and restart; opt-in (see pg_cluster)."""
    yield from pg_cluster.cluster_or_skip()


@pytest.fixture
async def cluster(own_cluster: pg_cluster.Cluster) -> AsyncIterator[pg_cluster.Cluster]:
    await own_cluster.ensure_running()
    try:
        yield own_cluster
    finally:
        await own_cluster.ensure_running()  # for the next test, whatever this one did


async def cluster_store(cluster: pg_cluster.Cluster, **overrides: Any) -> PostgresEventStore:
    settings: dict[str, Any] = {
        "max_connections": 4,
        "min_connections": 2,
        "application_name": unique_application_name(),
    }
    settings.update(overrides)
    config = PostgresConfig.development(cluster.url, schema=pg.new_schema_name(), **settings)
    return await PostgresEventStore.open(config)


async def append_next(store: PostgresEventStore, stream: str) -> AppendResult:
    version = await store.stream_version(stream)
    return await store.append(request({stream: version}, event(stream)))


async def first_event(store: PostgresEventStore) -> RecordedEvent:
    return await anext(follow(store))


# Every kind of call a user makes; each either works or raises StoreUnavailable.
OPERATIONS: dict[str, Callable[[PostgresEventStore], Awaitable[object]]] = {
    "execute": lambda s: execute(s, Deposit("acc-1", 10), codec=bank_codec),
    "append": lambda s: append_next(s, "t"),
    "append_many": lambda s: s.append_many([request({"m": 0}, event("m"))]),
    "read_stream": lambda s: s.read_stream("s"),
    "read_streams": lambda s: s.read_streams(["s", "t"]),
    "read_all": lambda s: s.read_all(),
    "stream_version": lambda s: s.stream_version("s"),
    "head_position": lambda s: s.head_position(),
    "follow": first_event,
    "save_checkpoint": lambda s: s.save_checkpoint("projection", 1),
    "load_checkpoint": lambda s: s.load_checkpoint("projection"),
    "load_snapshot": lambda s: s.load_snapshot("snap"),
    "acquire_lease": lambda s: s.acquire_lease("leader", "me", 30),
    "lease_holder": lambda s: s.lease_holder("leader"),
    "migrate": lambda s: s.migrate(),
}


async def test_while_the_server_is_down_every_call_raises_store_unavailable(
    cluster: pg_cluster.Cluster,
) -> None:
    async with await cluster_store(cluster) as store:
        await store.append(request({"s": 0}, event("s")))
        await store.wait_for_append(after=0, max_wait=0.01)  # the listener connects
        await cluster.stop()
        for _name, call in OPERATIONS.items():  # a failure's traceback shows the name
            with pytest.raises(StoreUnavailable):
                await call(store)
        # A tailing reader falls back to polling: it neither raises nor hangs.
        await store.wait_for_append(after=1, max_wait=0.05)

        await cluster.start()
        # Back: every call works again, without reopening the store.
        for call in OPERATIONS.values():
            await call(store)
        assert await store.stream_version("t") == 1


async def test_calls_racing_a_server_restart_raise_only_store_unavailable(
    cluster: pg_cluster.Cluster,
) -> None:
    async with await cluster_store(cluster) as store:
        await store.append(request({"s": 0}, event("s")))
        restarted = asyncio.Event()
        raw: list[BaseException] = []
        failures = 0

        async def keep_calling(worker: int) -> None:
            nonlocal failures
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: execute(store, Deposit(f"acc-{worker}", 1), codec=bank_codec),
                lambda: append_next(store, f"w-{worker}"),
                store.read_all,
                lambda: store.stream_version("s"),
            ]
            while not restarted.is_set():
                for call in calls:
                    try:
                        await call()
                    except StoreUnavailable:
                        failures += 1
                        await asyncio.sleep(0.01)  # pace the calls while it is down
                    except Exception as exc:
                        raw.append(exc)

        workers = [asyncio.create_task(keep_calling(n)) for n in range(4)]
        await cluster.restart()
        restarted.set()
        await asyncio.gather(*workers)
        assert raw == []
        # Back: without reopening, reads work at once and so do appends.
        assert [e.global_position for e in await store.read_stream("s")] == [1]
        for n in range(4):
            await append_next(store, f"w-{n}")
            await execute(store, Deposit(f"acc-{n}", 1), codec=bank_codec)


async def test_the_store_recovers_after_a_real_server_restart(cluster: pg_cluster.Cluster) -> None:
    async with await cluster_store(cluster) as store:
        await store.append(request({"s": 0}, event("s")))
        await cluster.restart()
        # Reads transparently retry on a fresh connection; an append that meets a
        # dead pooled connection fails cleanly, and the next one goes through.
        assert await store.stream_version("s") == 1
        failures = 0
        while True:
            try:
                await store.append(request({"s": 1}, event("s")))
                break
            except StoreUnavailable:
                failures += 1
                assert failures == 1, "only an append that met a dead connection may fail"
        assert [e.stream_version for e in await store.read_stream("s")] == [1, 2]
        assert await store.head_position() == 2


class CountingReader:
    """Wraps a store; counts the log reads that found the store unavailable."""

    def __init__(self, store: PostgresEventStore) -> None:
        self._store = store
        self.unavailable = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def read_all(self, **kwargs: Any) -> list[RecordedEvent]:
        try:
            return await self._store.read_all(**kwargs)
        except StoreUnavailable:
            self.unavailable += 1
            raise


async def test_a_follower_started_before_a_restart_sees_every_event_exactly_once(
    cluster: pg_cluster.Cluster,
) -> None:
    async with await cluster_store(cluster) as store:
        for _ in range(3):
            await append_next(store, "s")
        reader = CountingReader(store)
        seen: list[int] = []

        async def follower() -> None:
            async for recorded in follow(reader, poll_interval=0.05):
                seen.append(recorded.global_position)
                if len(seen) == 6:
                    return

        following = asyncio.create_task(follower())
        await eventually(lambda: asyncio.sleep(0, len(seen) == 3), "the first three events")
        await cluster.stop()
        # The follower has met the outage at least once before the server returns.
        await eventually(
            lambda: asyncio.sleep(0, reader.unavailable > 0 or following.done()),
            "the follower to read while the server is down",
            within=30,
        )
        await cluster.start()
        for _ in range(3):
            await append_next(store, "s")
        assert await finishes_within(following, 30), "the follower stopped following"
        assert seen == [1, 2, 3, 4, 5, 6]
