"""The store contract, run against the PostgreSQL store on the real server.

Every handle from ``open_peer`` is a separate PostgresEventStore (its own pool) on
the same schema, as another process would have.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
import pytest_asyncio

from eventcore.backends.postgres import PostgresEventStore
from eventcore.testing.contract import PeerFactory, StoreContract
from tests import pg

pytestmark = pytest.mark.postgres


class TestPostgresEventStore(StoreContract):
    @pytest_asyncio.fixture
    async def store(self, pg_schema: str) -> AsyncIterator[PostgresEventStore]:
        async with await pg.fresh_store(pg_schema) as store:
            yield store

    @pytest_asyncio.fixture
    async def open_peer(
        self, pg_schema: str, store: PostgresEventStore
    ) -> AsyncIterator[PeerFactory]:
        async with AsyncExitStack() as peers:

            async def open_peer() -> PostgresEventStore:
                return await peers.enter_async_context(await pg.fresh_store(pg_schema))

            yield open_peer


class TestPostgresEventStoreByCopy(TestPostgresEventStore):
    """The same contract with every append of at least one event sent by COPY."""

    @pytest_asyncio.fixture
    async def store(self, pg_schema: str) -> AsyncIterator[PostgresEventStore]:
        async with await pg.fresh_store(pg_schema, copy_threshold=1) as store:
            yield store

    @pytest_asyncio.fixture
    async def open_peer(
        self, pg_schema: str, store: PostgresEventStore
    ) -> AsyncIterator[PeerFactory]:
        async with AsyncExitStack() as peers:

            async def open_peer() -> PostgresEventStore:
                peer = await pg.fresh_store(pg_schema, copy_threshold=1)
                return await peers.enter_async_context(peer)

            yield open_peer
