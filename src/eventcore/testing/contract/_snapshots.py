"""Contract: snapshots of folded state, never replaced by older ones."""

from __future__ import annotations

import asyncio

import pytest

from eventcore.errors import ValidationError
from eventcore.store import SnapshotStore
from eventcore.testing.contract._support import ContractFixtures, PeerFactory
from eventcore.types import Snapshot, StreamId

A, B = StreamId("a"), StreamId("b")


def snapshot(state: bytes, **versions: int) -> Snapshot:
    return Snapshot("cmd:a|b", tuple((StreamId(s), v) for s, v in versions.items()), state)


class SnapshotStoreContract(ContractFixtures):
    """Every backend that implements :class:`~eventcore.store.SnapshotStore`."""

    @pytest.mark.asyncio
    async def test_a_saved_snapshot_loads_back_exactly(self, store: SnapshotStore) -> None:
        saved = snapshot(b'{"balance": 10}', a=3, b=1)
        assert await store.save_snapshot(saved)
        assert await store.load_snapshot(saved.key) == saved

    @pytest.mark.asyncio
    async def test_a_missing_snapshot_loads_as_none(self, store: SnapshotStore) -> None:
        assert await store.load_snapshot("nothing-here") is None

    @pytest.mark.asyncio
    async def test_a_newer_snapshot_replaces_an_older_one(self, store: SnapshotStore) -> None:
        await store.save_snapshot(snapshot(b"old", a=3, b=1))
        assert await store.save_snapshot(snapshot(b"new", a=4, b=1))
        loaded = await store.load_snapshot("cmd:a|b")
        assert loaded is not None
        assert loaded.state == b"new"

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        "versions",
        [{"a": 2, "b": 1}, {"a": 3, "b": 1}, {"a": 9, "b": 0}, {"a": 9}],
        ids=["older", "same", "one-stream-older", "stream-missing"],
    )
    async def test_a_stale_snapshot_never_overwrites_a_newer_one(
        self, store: SnapshotStore, versions: dict[str, int]
    ) -> None:
        await store.save_snapshot(snapshot(b"kept", a=3, b=1))
        assert not await store.save_snapshot(snapshot(b"stale", **versions))
        loaded = await store.load_snapshot("cmd:a|b")
        assert loaded is not None
        assert loaded.state == b"kept"

    @pytest.mark.asyncio
    async def test_racing_snapshot_writers_leave_the_newest(
        self, store: SnapshotStore, open_peer: PeerFactory
    ) -> None:
        peer = await open_peer()
        handles = [store, peer]
        await asyncio.gather(
            *(
                handles[n % 2].save_snapshot(snapshot(str(n).encode(), a=n, b=1))
                for n in range(1, 21)
            )
        )
        loaded = await store.load_snapshot("cmd:a|b")
        assert loaded is not None
        assert loaded.state == b"20"

    @pytest.mark.asyncio
    @pytest.mark.parametrize("key", ["", None])
    async def test_a_snapshot_key_must_be_a_non_empty_str(
        self, store: SnapshotStore, key: object
    ) -> None:
        with pytest.raises(ValidationError):
            await store.load_snapshot(key)  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            await store.save_snapshot(Snapshot(key, ((A, 1),), b"x"))  # type: ignore[arg-type]
