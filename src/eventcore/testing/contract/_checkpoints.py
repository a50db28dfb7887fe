"""Contract: named checkpoints."""

from __future__ import annotations

from typing import cast

import pytest

from eventcore.errors import ValidationError
from eventcore.store import CheckpointLister, CheckpointStore
from eventcore.testing.contract._support import ContractFixtures, PeerFactory

INVALID_CHECKPOINT_NAMES: dict[str, object] = {"empty": "", "none": None, "int": 1}
INVALID_CHECKPOINT_POSITIONS: dict[str, object] = {
    "negative": -1,
    "bool": True,
    "float": 1.5,
    "str": "3",
    "none": None,
}


class CheckpointStoreContract(ContractFixtures):
    """Every backend that implements :class:`~eventcore.store.CheckpointStore`."""

    @pytest.mark.asyncio
    async def test_saved_checkpoint_loads_back(self, store: CheckpointStore) -> None:
        await store.save_checkpoint("projector", 42)
        assert await store.load_checkpoint("projector") == 42

    @pytest.mark.asyncio
    async def test_saving_a_checkpoint_again_overwrites_it(self, store: CheckpointStore) -> None:
        await store.save_checkpoint("projector", 42)
        await store.save_checkpoint("projector", 97)
        assert await store.load_checkpoint("projector") == 97

    @pytest.mark.asyncio
    async def test_missing_checkpoint_loads_as_none(self, store: CheckpointStore) -> None:
        await store.save_checkpoint("other", 5)
        assert await store.load_checkpoint("projector") is None

    @pytest.mark.asyncio
    async def test_checkpoint_at_position_zero_is_not_missing(self, store: CheckpointStore) -> None:
        await store.save_checkpoint("projector", 0)
        assert await store.load_checkpoint("projector") == 0

    @pytest.mark.asyncio
    async def test_checkpoints_are_kept_apart_by_name(self, store: CheckpointStore) -> None:
        await store.save_checkpoint("one", 1)
        await store.save_checkpoint("two", 2)
        await store.save_checkpoint("one", 3)
        assert (await store.load_checkpoint("one"), await store.load_checkpoint("two")) == (3, 2)

    @pytest.mark.asyncio
    async def test_large_checkpoint_position_round_trips(self, store: CheckpointStore) -> None:
        await store.save_checkpoint("projector", 2**62 + 1)
        assert await store.load_checkpoint("projector") == 2**62 + 1

    @pytest.mark.asyncio
    async def test_unusual_checkpoint_name_round_trips(self, store: CheckpointStore) -> None:
        name = 'it\'s "ünï" 100%_\\流'
        await store.save_checkpoint(name, 7)
        assert await store.load_checkpoint(name) == 7

    @pytest.mark.asyncio
    async def test_checkpoint_saved_through_one_handle_loads_through_another(
        self, store: CheckpointStore, open_peer: PeerFactory
    ) -> None:
        peer: CheckpointStore = await open_peer()
        await peer.save_checkpoint("projector", 11)
        assert await store.load_checkpoint("projector") == 11

    @pytest.mark.asyncio
    async def test_deleted_checkpoint_loads_as_none_and_others_stay(
        self, store: CheckpointStore
    ) -> None:
        await store.save_checkpoint("projector", 42)
        await store.save_checkpoint("other", 7)
        await store.delete_checkpoint("projector")
        await store.delete_checkpoint("never-saved")  # no error
        assert await store.load_checkpoint("projector") is None
        assert await store.load_checkpoint("other") == 7

    @pytest.mark.asyncio
    async def test_checkpoint_names_lists_saved_ones_in_name_order(
        self, store: CheckpointStore
    ) -> None:
        assert isinstance(store, CheckpointLister)
        assert await store.checkpoint_names() == []
        for name in ("zeta", "alpha", "mid"):
            await store.save_checkpoint(name, 1)
        await store.delete_checkpoint("mid")
        assert await store.checkpoint_names() == ["alpha", "zeta"]

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        "name", list(INVALID_CHECKPOINT_NAMES.values()), ids=list(INVALID_CHECKPOINT_NAMES)
    )
    async def test_invalid_checkpoint_name_is_rejected_by_delete(
        self, store: CheckpointStore, name: object
    ) -> None:
        with pytest.raises(ValidationError):
            await store.delete_checkpoint(cast(str, name))

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        "name", list(INVALID_CHECKPOINT_NAMES.values()), ids=list(INVALID_CHECKPOINT_NAMES)
    )
    async def test_invalid_checkpoint_name_is_rejected_by_save(
        self, store: CheckpointStore, name: object
    ) -> None:
        with pytest.raises(ValidationError):
            await store.save_checkpoint(cast(str, name), 1)

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        "name", list(INVALID_CHECKPOINT_NAMES.values()), ids=list(INVALID_CHECKPOINT_NAMES)
    )
    async def test_invalid_checkpoint_name_is_rejected_by_load(
        self, store: CheckpointStore, name: object
    ) -> None:
        with pytest.raises(ValidationError):
            await store.load_checkpoint(cast(str, name))

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        "position",
        list(INVALID_CHECKPOINT_POSITIONS.values()),
        ids=list(INVALID_CHECKPOINT_POSITIONS),
    )
    async def test_invalid_checkpoint_position_is_rejected(
        self, store: CheckpointStore, position: object
    ) -> None:
        with pytest.raises(ValidationError):
            await store.save_checkpoint("projector", cast(int, position))
        assert await store.load_checkpoint("projector") is None
