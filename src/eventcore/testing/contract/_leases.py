"""Contract: expiring leases (leader election), exercised through two handles."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
import pytest_asyncio

from eventcore.errors import ValidationError
from eventcore.store import LeaseStore
from eventcore.testing.contract._support import ContractFixtures, PeerFactory

LONG_TTL = 60.0
SHORT_TTL = 0.2
# Sleeps past SHORT_TTL with room to spare for a coarse clock.
PAST_SHORT_TTL = 0.35

INVALID_LEASE_ARGS: dict[str, tuple[object, object, object]] = {
    "empty-name": ("", "h", 1.0),
    "non-str-name": (1, "h", 1.0),
    "empty-holder": ("leader", "", 1.0),
    "none-holder": ("leader", None, 1.0),
    "zero-ttl": ("leader", "h", 0),
    "negative-ttl": ("leader", "h", -1.0),
    "bool-ttl": ("leader", "h", True),
    "str-ttl": ("leader", "h", "1"),
}


class LeaseStoreContract(ContractFixtures):
    """Every backend that implements :class:`~eventcore.store.LeaseStore`.

    The two contenders use two handles from ``open_peer``, so a backend shared by
    several processes is exercised the way it is used.
    """

    @pytest_asyncio.fixture
    async def contenders(
        self, store: object, open_peer: PeerFactory
    ) -> tuple[LeaseStore, LeaseStore]:
        """Two handles onto the storage of ``store`` (which has created it)."""
        return await open_peer(), await open_peer()

    @pytest.mark.asyncio
    async def test_first_contender_acquires_a_free_lease(
        self, contenders: tuple[LeaseStore, LeaseStore]
    ) -> None:
        first, _ = contenders
        assert await first.acquire_lease("leader", "A", LONG_TTL) is True

    @pytest.mark.asyncio
    async def test_second_contender_is_refused_while_the_lease_is_held(
        self, contenders: tuple[LeaseStore, LeaseStore]
    ) -> None:
        first, second = contenders
        assert await first.acquire_lease("leader", "A", LONG_TTL)
        assert await second.acquire_lease("leader", "B", LONG_TTL) is False
        assert await second.lease_holder("leader") == "A"

    @pytest.mark.asyncio
    async def test_holder_reacquiring_its_lease_succeeds(
        self, contenders: tuple[LeaseStore, LeaseStore]
    ) -> None:
        first, second = contenders
        assert await first.acquire_lease("leader", "A", LONG_TTL)
        assert await second.acquire_lease("leader", "A", LONG_TTL) is True
        assert await first.lease_holder("leader") == "A"

    @pytest.mark.asyncio
    async def test_reacquiring_renews_the_lease_past_its_first_expiry(
        self, contenders: tuple[LeaseStore, LeaseStore]
    ) -> None:
        first, second = contenders
        assert await first.acquire_lease("leader", "A", SHORT_TTL)
        assert await first.acquire_lease("leader", "A", LONG_TTL)
        await asyncio.sleep(PAST_SHORT_TTL)
        assert await second.acquire_lease("leader", "B", LONG_TTL) is False
        assert await second.lease_holder("leader") == "A"

    @pytest.mark.asyncio
    async def test_second_contender_acquires_after_release(
        self, contenders: tuple[LeaseStore, LeaseStore]
    ) -> None:
        first, second = contenders
        assert await first.acquire_lease("leader", "A", LONG_TTL)
        await first.release_lease("leader", "A")
        assert await second.acquire_lease("leader", "B", LONG_TTL) is True
        assert await first.lease_holder("leader") == "B"

    @pytest.mark.asyncio
    async def test_release_by_another_holder_leaves_the_lease_held(
        self, contenders: tuple[LeaseStore, LeaseStore]
    ) -> None:
        first, second = contenders
        assert await first.acquire_lease("leader", "A", LONG_TTL)
        await second.release_lease("leader", "B")
        assert await second.acquire_lease("leader", "B", LONG_TTL) is False
        assert await second.lease_holder("leader") == "A"

    @pytest.mark.asyncio
    async def test_second_contender_acquires_after_the_ttl_lapses(
        self, contenders: tuple[LeaseStore, LeaseStore]
    ) -> None:
        first, second = contenders
        assert await first.acquire_lease("leader", "A", SHORT_TTL)
        await asyncio.sleep(PAST_SHORT_TTL)
        assert await second.acquire_lease("leader", "B", LONG_TTL) is True
        assert await first.lease_holder("leader") == "B"

    @pytest.mark.asyncio
    async def test_lease_holder_reports_the_holder(
        self, contenders: tuple[LeaseStore, LeaseStore]
    ) -> None:
        first, second = contenders
        await first.acquire_lease("leader", "A", LONG_TTL)
        assert await second.lease_holder("leader") == "A"

    @pytest.mark.asyncio
    async def test_lease_holder_of_a_free_lease_is_none(
        self, contenders: tuple[LeaseStore, LeaseStore]
    ) -> None:
        first, _ = contenders
        await first.acquire_lease("other", "A", LONG_TTL)
        assert await first.lease_holder("leader") is None

    @pytest.mark.asyncio
    async def test_lease_holder_is_none_after_release(
        self, contenders: tuple[LeaseStore, LeaseStore]
    ) -> None:
        first, second = contenders
        await first.acquire_lease("leader", "A", LONG_TTL)
        await first.release_lease("leader", "A")
        assert await second.lease_holder("leader") is None

    @pytest.mark.asyncio
    async def test_lease_holder_is_none_after_the_ttl_lapses(
        self, contenders: tuple[LeaseStore, LeaseStore]
    ) -> None:
        first, second = contenders
        await first.acquire_lease("leader", "A", SHORT_TTL)
        await asyncio.sleep(PAST_SHORT_TTL)
        assert await second.lease_holder("leader") is None

    @pytest.mark.asyncio
    async def test_leases_are_kept_apart_by_name(
        self, contenders: tuple[LeaseStore, LeaseStore]
    ) -> None:
        first, second = contenders
        assert await first.acquire_lease("leader-1", "A", LONG_TTL)
        assert await second.acquire_lease("leader-2", "B", LONG_TTL) is True
        assert (await first.lease_holder("leader-1"), await first.lease_holder("leader-2")) == (
            "A",
            "B",
        )

    @pytest.mark.asyncio
    async def test_concurrent_contenders_for_a_free_lease_have_exactly_one_winner(
        self, contenders: tuple[LeaseStore, LeaseStore]
    ) -> None:
        holders = [f"holder-{i}" for i in range(10)]
        outcomes = await asyncio.gather(
            *(contenders[i % 2].acquire_lease("leader", h, LONG_TTL) for i, h in enumerate(holders))
        )
        winners = [h for h, won in zip(holders, outcomes, strict=True) if won]
        assert len(winners) == 1, outcomes
        assert await contenders[0].lease_holder("leader") == winners[0]

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        ("name", "holder", "ttl"), list(INVALID_LEASE_ARGS.values()), ids=list(INVALID_LEASE_ARGS)
    )
    async def test_invalid_lease_arguments_are_rejected_by_acquire(
        self,
        contenders: tuple[LeaseStore, LeaseStore],
        name: object,
        holder: object,
        ttl: object,
    ) -> None:
        first, _ = contenders
        with pytest.raises(ValidationError):
            await first.acquire_lease(cast(str, name), cast(str, holder), cast(float, ttl))

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        ("name", "holder"), [("", "A"), ("leader", "")], ids=["name", "holder"]
    )
    async def test_invalid_lease_arguments_are_rejected_by_release(
        self, contenders: tuple[LeaseStore, LeaseStore], name: str, holder: str
    ) -> None:
        first, _ = contenders
        with pytest.raises(ValidationError):
            await first.release_lease(name, holder)

    @pytest.mark.asyncio
    async def test_invalid_lease_name_is_rejected_by_lease_holder(
        self, contenders: tuple[LeaseStore, LeaseStore]
    ) -> None:
        first, _ = contenders
        with pytest.raises(ValidationError):
            await first.lease_holder("")
