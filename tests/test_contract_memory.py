"""The store contract, run against the in-memory store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from eventcore.backends.memory import InMemoryEventStore
from eventcore.testing.contract import PeerFactory, StoreContract


class TestInMemoryEventStore(StoreContract):
    @pytest_asyncio.fixture
    async def store(self) -> AsyncIterator[InMemoryEventStore]:
        async with InMemoryEventStore() as store:
            yield store

    @pytest_asyncio.fixture
    async def open_peer(self, store: InMemoryEventStore) -> AsyncIterator[PeerFactory]:
        # The storage lives in the one object: every handle is the store itself.
        async def open_peer() -> InMemoryEventStore:
            return store

        yield open_peer
