"""Contract: fencing tokens on leases, and checkpoints saved under a fence.

A leader that was paused past its lease (a long GC pause, a stopped process) must
not be able to write once another holder has taken the lease: its fenced writes
raise :class:`~eventcore.errors.LeaseLost` and write nothing.
"""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
import pytest_asyncio

from eventcore.errors import LeaseLost, ValidationError
from eventcore.store import Fence, FencedLeaseStore
from eventcore.testing.contract._leases import LONG_TTL, PAST_SHORT_TTL, SHORT_TTL
from eventcore.testing.contract._support import ContractFixtures, PeerFactory

Contenders = tuple[FencedLeaseStore, FencedLeaseStore]


class FencedLeaseContract(ContractFixtures):
    """Every backend that implements :class:`~eventcore.store.FencedLeaseStore`;
    the two contenders are two handles, as two processes would have."""

    @pytest_asyncio.fixture
    async def fenced(self, store: object, open_peer: PeerFactory) -> Contenders:
        return cast(FencedLeaseStore, await open_peer()), cast(FencedLeaseStore, await open_peer())

    @pytest.mark.asyncio
    async def test_renewal_by_the_holder_keeps_its_fence_token(self, fenced: Contenders) -> None:
        first, second = fenced
        token = await first.acquire_fenced_lease("leader", "A", LONG_TTL)
        assert token is not None
        assert await second.acquire_fenced_lease("leader", "A", LONG_TTL) == token

    @pytest.mark.asyncio
    async def test_fenced_acquire_is_refused_while_another_holds_the_lease(
        self, fenced: Contenders
    ) -> None:
        first, second = fenced
        assert await first.acquire_fenced_lease("leader", "A", LONG_TTL) is not None
        assert await second.acquire_fenced_lease("leader", "B", LONG_TTL) is None
        assert await second.acquire_lease("leader", "B", LONG_TTL) is False

    @pytest.mark.asyncio
    async def test_token_grows_when_the_lease_changes_hands_after_release(
        self, fenced: Contenders
    ) -> None:
        first, second = fenced
        tokens = []
        for holder, store in (("A", first), ("B", second), ("A", first), ("A", first)):
            token = await store.acquire_fenced_lease("leader", holder, LONG_TTL)
            assert token is not None
            tokens.append(token)
            await store.release_lease("leader", holder)
        assert tokens[0] < tokens[1] < tokens[2] <= tokens[3]

    @pytest.mark.asyncio
    async def test_token_grows_when_the_lease_is_taken_after_expiry(
        self, fenced: Contenders
    ) -> None:
        first, second = fenced
        old = await first.acquire_fenced_lease("leader", "A", SHORT_TTL)
        await asyncio.sleep(PAST_SHORT_TTL)
        new = await second.acquire_fenced_lease("leader", "B", LONG_TTL)
        assert old is not None
        assert new is not None
        assert new > old

    @pytest.mark.asyncio
    async def test_bool_acquire_and_fenced_acquire_share_one_lease(
        self, fenced: Contenders
    ) -> None:
        first, second = fenced
        assert await first.acquire_lease("leader", "A", LONG_TTL)
        assert await second.acquire_fenced_lease("leader", "B", LONG_TTL) is None
        assert await first.acquire_fenced_lease("leader", "A", LONG_TTL) is not None

    @pytest.mark.asyncio
    async def test_fenced_checkpoint_saves_while_the_fence_holds(self, fenced: Contenders) -> None:
        first, second = fenced
        token = await first.acquire_fenced_lease("leader", "A", LONG_TTL)
        assert token is not None
        await first.save_checkpoint("proj", 7, fence=Fence("leader", token))
        assert await second.load_checkpoint("proj") == 7

    @pytest.mark.asyncio
    async def test_former_holders_fenced_checkpoint_raises_lease_lost_and_writes_nothing(
        self, fenced: Contenders
    ) -> None:
        first, second = fenced
        old = await first.acquire_fenced_lease("leader", "A", SHORT_TTL)
        assert old is not None
        await first.save_checkpoint("proj", 3, fence=Fence("leader", old))
        await asyncio.sleep(PAST_SHORT_TTL)  # A is paused past its lease
        new = await second.acquire_fenced_lease("leader", "B", LONG_TTL)
        assert new is not None
        with pytest.raises(LeaseLost) as caught:
            await first.save_checkpoint("proj", 9, fence=Fence("leader", old))
        assert (caught.value.lease, caught.value.token, caught.value.current) == (
            "leader",
            old,
            new,
        )
        assert await second.load_checkpoint("proj") == 3
        await second.save_checkpoint("proj", 9, fence=Fence("leader", new))
        assert await first.load_checkpoint("proj") == 9

    @pytest.mark.asyncio
    async def test_fence_of_a_released_and_retaken_lease_is_refused(
        self, fenced: Contenders
    ) -> None:
        first, second = fenced
        old = await first.acquire_fenced_lease("leader", "A", LONG_TTL)
        assert old is not None
        await first.release_lease("leader", "A")
        assert await second.acquire_fenced_lease("leader", "B", LONG_TTL) is not None
        with pytest.raises(LeaseLost):
            await first.save_checkpoint("proj", 1, fence=Fence("leader", old))
        assert await second.load_checkpoint("proj") is None

    @pytest.mark.asyncio
    async def test_fence_of_a_lease_never_taken_is_refused(self, fenced: Contenders) -> None:
        first, _ = fenced
        with pytest.raises(LeaseLost):
            await first.save_checkpoint("proj", 1, fence=Fence("nobody-took-this", 1))
        assert await first.load_checkpoint("proj") is None

    @pytest.mark.asyncio
    async def test_a_fence_that_is_not_a_fence_is_refused(self, fenced: Contenders) -> None:
        first, _ = fenced
        with pytest.raises(ValidationError, match="fence"):
            await first.save_checkpoint("proj", 1, fence=("leader", 1))  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="fence token"):
            Fence("leader", -1)
