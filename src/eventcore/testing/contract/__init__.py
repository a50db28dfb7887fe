"""The behavioural contract every event-store backend must pass.

The suite is a set of pytest test classes, split by capability like the Protocols in
:mod:`eventcore.store`. A backend's test module subclasses the ones it implements
(or :class:`StoreContract`, which has them all) and overrides two fixtures:

- ``store``: an async fixture yielding an open, *empty* store, closed afterwards;
- ``open_peer``: an async fixture yielding an ``async () -> handle`` callable that
  opens another handle onto the same storage (a second connection; a single-process
  backend returns ``store`` itself). Leases, concurrent appends and tailing readers
  use it, so that multi-process backends are really exercised. It should close the
  handles it opened when the test ends.

For example, in ``tests/test_contract_mystore.py``::

    import pytest_asyncio
    from eventcore.testing.contract import StoreContract
    from mypackage import MyStore

    class TestMyStore(StoreContract):
        @pytest_asyncio.fixture
        async def store(self, tmp_path):
            store = await MyStore.open(tmp_path / "events.db")
            yield store
            await store.close()

        @pytest_asyncio.fixture
        async def open_peer(self, tmp_path, store):  # store: the schema exists
            peers = []
            async def open_peer():
                peers.append(await MyStore.open(tmp_path / "events.db"))
                return peers[-1]
            yield open_peer
            for peer in peers:
                await peer.close()

The tests need ``pytest`` and ``pytest-asyncio``; every async test carries
``@pytest.mark.asyncio``, so they run in both the ``strict`` and ``auto`` modes (in
``strict`` mode, declare the fixtures with ``pytest_asyncio.fixture`` as above).
Decoding payloads into domain events is the codec's contract, not the store's, and
is not tested here. The helpers (:func:`new_event`, :func:`append_request`, ...) are
public for a backend's own extra tests.
"""

from __future__ import annotations

from eventcore.testing.contract._append import AppendContract
from eventcore.testing.contract._checkpoints import CheckpointStoreContract
from eventcore.testing.contract._dead_letters import DeadLetterStoreContract
from eventcore.testing.contract._fencing import FencedLeaseContract
from eventcore.testing.contract._leases import LeaseStoreContract
from eventcore.testing.contract._log import LogReadContract
from eventcore.testing.contract._read import StreamReadContract
from eventcore.testing.contract._snapshots import SnapshotStoreContract
from eventcore.testing.contract._support import (
    ContractFixtures,
    PeerFactory,
    append_new,
    append_one_each,
    append_request,
    collect,
    json_payload,
    new_event,
)


class EventStoreContract(AppendContract, StreamReadContract, LogReadContract):
    """Every :class:`~eventcore.store.EventStore`: appends, stream reads, the global log."""


class StoreContract(
    EventStoreContract,
    CheckpointStoreContract,
    LeaseStoreContract,
    FencedLeaseContract,
    SnapshotStoreContract,
    DeadLetterStoreContract,
):
    """A store with every capability: events, checkpoints, leases (fenced),
    snapshots and dead letters."""


__all__ = [
    "AppendContract",
    "CheckpointStoreContract",
    "ContractFixtures",
    "DeadLetterStoreContract",
    "EventStoreContract",
    "FencedLeaseContract",
    "LeaseStoreContract",
    "LogReadContract",
    "PeerFactory",
    "SnapshotStoreContract",
    "StoreContract",
    "StreamReadContract",
    "append_new",
    "append_one_each",
    "append_request",
    "collect",
    "json_payload",
    "new_event",
]
