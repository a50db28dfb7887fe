"""The store contract, run against the SQLite store.

Every handle from ``open_peer`` is a separate ``SQLiteEventStore`` on the same file,
with its own connections and threads, as a second process would have.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import pytest_asyncio

from eventcore.backends.sqlite import SQLiteEventStore
from eventcore.testing.contract import PeerFactory, StoreContract


class TestSQLiteEventStore(StoreContract):
    @pytest.fixture
    def db_path(self, tmp_path: Path) -> Path:
        return tmp_path / "events.sqlite"

    @pytest_asyncio.fixture
    async def store(self, db_path: Path) -> AsyncIterator[SQLiteEventStore]:
        async with await SQLiteEventStore.open(db_path) as store:
            yield store

    @pytest_asyncio.fixture
    async def open_peer(self, db_path: Path, store: SQLiteEventStore) -> AsyncIterator[PeerFactory]:
        # Depends on `store` so the file and its schema exist before any peer opens.
        async with AsyncExitStack() as peers:

            async def open_peer() -> SQLiteEventStore:
                return await peers.enter_async_context(await SQLiteEventStore.open(db_path))

            yield open_peer
