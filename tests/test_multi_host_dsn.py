"""A multi-host DSN (``postgresql://user@host1:port1,host2:port2/db``), as used to
reach a failover cluster, on the shared test server; the failover itself is
tests/test_failover.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
from eventcore.backends.postgres._errors import describe_target
from eventcore.backends.postgres._hosts import split_hosts
from eventcore.demo.bank import Deposit, bank_codec
from eventcore.errors import StoreUnavailable
from eventcore.execute import execute
from tests import pg
from tests.patroni_cluster import free_ports

pytestmark = pytest.mark.postgres

PASSWORD = "s3cret-pw"


def multi_host(attrs: str, password: str = "", first_port: int | None = None) -> str:
    """A first host (by default a port where nothing listens), then the shared server."""
    shared = urlsplit(pg.PG_URL)
    (first,) = free_ports(1) if first_port is None else (first_port,)
    login = f"{shared.username}:{password}" if password else shared.username
    return (
        f"postgresql://{login}@127.0.0.1:{first},{shared.hostname}:{shared.port}"
        f"{shared.path}?target_session_attrs={attrs}"
    )


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[int, list[asyncio.StreamWriter]]]:
    """A host that accepts connections and never answers (a hung machine, as far as a
    client can tell); yields its port and the connections it accepted."""
    accepted: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        with contextlib.suppress(ConnectionError):
            await reader.read()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], accepted
    finally:
        for writer in accepted:
            writer.close()
        server.close()


async def test_a_multi_host_dsn_reaches_the_host_that_accepts_writes(pg_schema: str) -> None:
    config = PostgresConfig.development(multi_host("read-write"), schema=pg_schema)
    async with await PostgresEventStore.open(config) as store:
        result = await execute(store, Deposit("acc", 5), codec=bank_codec)
        assert result.positions == (1,)


async def test_a_multi_host_dsn_with_no_writable_host_raises_store_unavailable(
    pg_schema: str,
) -> None:
    # The shared server is a primary: asking for a read-only host finds none.
    dsn = multi_host("read-only", password=PASSWORD)
    with pytest.raises(StoreUnavailable) as caught:
        await PostgresEventStore.open(PostgresConfig.development(dsn, schema=pg_schema))
    assert PASSWORD not in str(caught.value)
    assert describe_target(dsn) in str(caught.value)


def test_messages_name_every_host_of_a_multi_host_dsn_but_never_the_password() -> None:
    dsn = f"postgresql://app:{PASSWORD}@db1:5432,db2:5433/app?target_session_attrs=read-write"
    assert describe_target(dsn) == "db1:5432,db2:5433/app"


async def test_a_multi_host_dsn_whose_first_host_never_answers_reaches_the_next(
    pg_schema: str,
) -> None:
    async with silent_server() as (port, _):
        dsn = multi_host("read-write", first_port=port)
        config = PostgresConfig.development(dsn, schema=pg_schema, connect_timeout=1.0)
        async with await PostgresEventStore.open(config) as store:
            await execute(store, Deposit("acc", 5), codec=bank_codec)


async def test_new_connections_start_from_the_host_that_answered_last(pg_schema: str) -> None:
    async with silent_server() as (port, accepted):
        dsn = multi_host("read-write", first_port=port)
        config = PostgresConfig.development(
            dsn, schema=pg_schema, connect_timeout=1.0, min_connections=1, max_connections=4
        )
        async with await PostgresEventStore.open(config) as store:
            # Four reads at once need four connections.
            await asyncio.gather(*(store.read_all() for _ in range(4)))
            await store.wait_for_append(after=0, max_wait=0.01)  # the listener connects
    assert len(accepted) == 1, "the silent host was tried again"


def test_a_multi_host_dsn_splits_into_one_dsn_per_host_keeping_login_and_options() -> None:
    dsn = "postgresql://app:p@ss@db1:5432,db2/app?target_session_attrs=read-write"
    assert split_hosts(dsn) == [
        "postgresql://app:p@ss@db1:5432/app?target_session_attrs=read-write",
        "postgresql://app:p@ss@db2/app?target_session_attrs=read-write",
    ]


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://app@db1:5432/app",
        "host=db1,db2 user=app",
        "postgresql://app@/app?host=db1&port=5432",
        "postgresql://app@/app?host=db1,db2,db3&port=5432,5433",
    ],
    ids=["one-host", "key-value-form", "one-host-in-the-query", "ports-not-matching-hosts"],
)
def test_a_dsn_that_is_not_a_multi_host_url_is_left_to_the_driver(dsn: str) -> None:
    assert split_hosts(dsn) is None


def query_hosts(attrs: str, first_port: int) -> str:
    """``multi_host``'s two hosts, listed in the query string the way libpq allows."""
    shared = urlsplit(pg.PG_URL)
    return (
        f"postgresql://{shared.username}@{shared.path}?host=127.0.0.1,{shared.hostname}"
        f"&port={first_port},{shared.port}&target_session_attrs={attrs}"
    )


def test_hosts_listed_in_the_query_split_into_one_dsn_per_host_keeping_options() -> None:
    dsn = "postgresql://app:pw@/app?host=db1,db2&port=5432,5433&target_session_attrs=read-write"
    assert split_hosts(dsn) == [
        "postgresql://app:pw@/app?host=db1&port=5432&target_session_attrs=read-write",
        "postgresql://app:pw@/app?host=db2&port=5433&target_session_attrs=read-write",
    ]


@pytest.mark.parametrize(
    ("ports", "expected"),
    [("&port=6432", ["&port=6432", "&port=6432"]), ("", ["", ""])],
    ids=["one-port-for-all", "no-port"],
)
def test_hosts_in_the_query_share_one_port_or_none(ports: str, expected: list[str]) -> None:
    dsns = split_hosts(f"postgresql:///app?host=db1,/run/postgresql{ports}")
    assert dsns == [
        f"postgresql:///app?host=db1{expected[0]}",
        f"postgresql:///app?host=/run/postgresql{expected[1]}",
    ]


def test_messages_name_every_host_listed_in_the_query() -> None:
    dsn = f"postgresql://app:{PASSWORD}@/app?host=db1,db2&port=5432,5433"
    assert describe_target(dsn) == "db1:5432,db2:5433/app"


async def test_hosts_listed_in_the_query_each_get_their_own_connect_timeout(
    pg_schema: str,
) -> None:
    async with silent_server() as (port, _):
        dsn = query_hosts("read-write", first_port=port)
        config = PostgresConfig.development(dsn, schema=pg_schema, connect_timeout=1.0)
        async with await PostgresEventStore.open(config) as store:
            await execute(store, Deposit("acc", 5), codec=bank_codec)
