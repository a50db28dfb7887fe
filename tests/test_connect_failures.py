"""What a command is told when the pool cannot connect: every host refusing, none
answering, none writable. The hosts are TCP proxies to the shared server that the
tests turn into a hung machine or a closed port, in front of a real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
from eventcore.errors import StoreUnavailable
from tests import pg

pytestmark = pytest.mark.postgres

BUSY = "no database connection free"


class Proxy:
    """Forwards TCP connections to the shared server until told to hang (accept
    and never answer, as a machine that stopped does) or to refuse (a closed port)."""

    def __init__(self) -> None:
        target = urlsplit(pg.PG_URL)
        self._target = (target.hostname or "127.0.0.1", target.port or 5432)
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.hanging = False
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        if self.hanging:
            with contextlib.suppress(ConnectionError):
                await reader.read()
            return
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers.append(up_writer)
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def _drop_connections(self) -> None:
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    def hang(self) -> None:
        self.hanging = True
        self._drop_connections()

    async def refuse(self) -> None:
        assert self._server is not None
        self._server.close()
        self._drop_connections()
        await self._server.wait_closed()

    async def stop(self) -> None:
        if self._server is not None and self._server.is_serving():
            await self.refuse()
        self._drop_connections()


@contextlib.asynccontextmanager
async def proxies(count: int) -> AsyncIterator[list[Proxy]]:
    started = [Proxy() for _ in range(count)]
    try:
        for proxy in started:
            await proxy.start()
        yield started
    finally:
        for proxy in started:
            await proxy.stop()


def dsn_through(*hosts: Proxy, attrs: str = "") -> str:
    shared = urlsplit(pg.PG_URL)
    listed = ",".join(proxy.host for proxy in hosts)
    query = f"?target_session_attrs={attrs}" if attrs else ""
    return f"postgresql://{shared.username}@{listed}{shared.path}{query}"


async def open_through(dsn: str, schema: str, **overrides: Any) -> PostgresEventStore:
    settings: dict[str, Any] = {"min_connections": 1, "max_connections": 1}
    settings.update(overrides)
    return await PostgresEventStore.open(PostgresConfig.development(dsn, schema=schema, **settings))


async def failure_of(read: Any) -> str:
    with pytest.raises(StoreUnavailable) as caught:
        await read
    return str(caught.value)


async def test_a_host_that_stops_answering_is_named_not_a_busy_pool(pg_schema: str) -> None:
    async with proxies(1) as (host,):
        store = await open_through(
            dsn_through(host), pg_schema, connect_timeout=1.0, acquire_timeout=30.0
        )
        async with store:
            host.hang()
            message = await failure_of(store.read_all())
    assert BUSY not in message
    assert f"{host.host}/test did not answer within 1.0 s" in message


async def test_every_host_refusing_is_reported_host_by_host(pg_schema: str) -> None:
    async with proxies(2) as (first, second):
        store = await open_through(dsn_through(first, second, attrs="read-write"), pg_schema)
        async with store:
            await first.refuse()
            await second.refuse()
            message = await failure_of(store.read_all())
    assert "cannot connect to PostgreSQL" in message
    for host in (first, second):
        assert f"{host.host}/test answered ConnectionRefusedError" in message


async def test_commands_queued_behind_connection_attempts_are_told_the_hosts_hang(
    pg_schema: str,
) -> None:
    # The failover case: more callers than connections, every connection lost, and
    # each new one waiting out connect_timeout on a hung host. The callers queued
    # behind those attempts time out while they last: that is not a busy pool.
    async with proxies(1) as (host,):
        store = await open_through(
            dsn_through(host),
            pg_schema,
            max_connections=2,
            connect_timeout=1.0,
            acquire_timeout=0.5,
        )
        async with store:
            host.hang()
            reads = [store.read_all() for _ in range(6)]
            failures = await asyncio.gather(*reads, return_exceptions=True)
    assert all(isinstance(failure, StoreUnavailable) for failure in failures), failures
    messages = [str(failure) for failure in failures]
    assert not [text for text in messages if BUSY in text], messages
    assert all("cannot connect to PostgreSQL" in text for text in messages), messages


async def test_a_pool_whose_connections_are_all_busy_still_says_so(pg_schema: str) -> None:
    config = PostgresConfig.development(
        pg.PG_URL, schema=pg_schema, min_connections=1, max_connections=1, acquire_timeout=0.2
    )
    store = await PostgresEventStore.open(config)
    async with store, store.checkpoint_transaction("holding", 0):
        message = await failure_of(store.read_all())
    assert f"{BUSY} within 0.2 s (max_connections=1)" in message
