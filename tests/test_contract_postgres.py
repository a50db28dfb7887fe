"""The store contract, run against the PostgreSQL store on the real server, with
its default settings and with the others that change how appends and reads go.

Every handle from ``open_peer`` is a separate PostgresEventStore (its own pool) on
the same schema, as another process would have.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from eventcore.backends import GroupCommitSettings
from eventcore.backends.postgres import PostgresEventStore
from eventcore.testing.contract import PeerFactory, StoreContract
from tests import pg

pytestmark = pytest.mark.postgres


class TestPostgresEventStore(StoreContract):
    options: ClassVar[dict[str, Any]] = {}  # PostgresConfig settings

    @pytest_asyncio.fixture
    async def store(self, pg_schema: str) -> AsyncIterator[PostgresEventStore]:
        async with await pg.fresh_store(pg_schema, **self.options) as store:
            yield store

    @pytest_asyncio.fixture
    async def open_peer(
        self, pg_schema: str, store: PostgresEventStore
    ) -> AsyncIterator[PeerFactory]:
        async with AsyncExitStack() as peers:

            async def open_peer() -> PostgresEventStore:
                peer = await pg.fresh_store(pg_schema, **self.options)
                return await peers.enter_async_context(peer)

            yield open_peer


class TestPostgresEventStoreByCopy(TestPostgresEventStore):
    """Every append of at least one event sent by COPY."""

    options: ClassVar[dict[str, Any]] = {"copy_threshold": 1}


class TestPostgresEventStoreOneAtATime(TestPostgresEventStore):
    """Each read sent on its own and one group-commit batch in flight (the
    defaults group reads and allow two batches)."""

    options: ClassVar[dict[str, Any]] = {
        "group_reads": False,
        "group_commit": GroupCommitSettings(max_in_flight=1),
    }
