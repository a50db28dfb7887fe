"""Contract: dead letters, the events a projection skipped."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import cast

import pytest

from eventcore.errors import ValidationError
from eventcore.store import DeadLetter, DeadLetterStore
from eventcore.testing.contract._support import ContractFixtures, PeerFactory

_WHEN = datetime(2026, 12, 1, 12, 30, 15, 123456, tzinfo=UTC)


def dead_letter(projection: str = "balances", position: int = 3, error: str = "boom") -> DeadLetter:
    """A dead letter as a projection runner records it."""
    return DeadLetter(
        projection,
        position,
        uuid.UUID(int=position),
        f"account-{position}",
        "bank.Deposited",
        error,
        _WHEN,
    )


class DeadLetterStoreContract(ContractFixtures):
    """Every backend that implements :class:`~eventcore.store.DeadLetterStore`."""

    @pytest.mark.asyncio
    async def test_recorded_dead_letter_lists_back_unchanged(self, store: DeadLetterStore) -> None:
        letter = dead_letter(error='ValueError: it\'s "ünï" 100%_\\流')
        await store.record_dead_letter(letter)
        assert await store.dead_letters("balances") == [letter]

    @pytest.mark.asyncio
    async def test_dead_letters_list_in_position_order_per_projection(
        self, store: DeadLetterStore
    ) -> None:
        for position in (9, 2, 5):
            await store.record_dead_letter(dead_letter(position=position))
        await store.record_dead_letter(dead_letter("other", 4))
        listed = await store.dead_letters("balances")
        assert [letter.position for letter in listed] == [2, 5, 9]
        assert [letter.position for letter in await store.dead_letters("other")] == [4]
        assert await store.dead_letters("never-ran") == []

    @pytest.mark.asyncio
    async def test_recording_a_position_again_keeps_one_letter_the_newer(
        self, store: DeadLetterStore
    ) -> None:
        await store.record_dead_letter(dead_letter(error="first"))
        await store.record_dead_letter(dead_letter(error="second"))
        assert [letter.error for letter in await store.dead_letters("balances")] == ["second"]

    @pytest.mark.asyncio
    async def test_clearing_dead_letters_touches_only_that_projection(
        self, store: DeadLetterStore
    ) -> None:
        await store.record_dead_letter(dead_letter(position=1))
        await store.record_dead_letter(dead_letter("other", 1))
        await store.clear_dead_letters("balances")
        await store.clear_dead_letters("never-ran")  # no error
        assert await store.dead_letters("balances") == []
        assert len(await store.dead_letters("other")) == 1

    @pytest.mark.asyncio
    async def test_failed_at_keeps_its_instant_in_utc(self, store: DeadLetterStore) -> None:
        elsewhere = _WHEN.astimezone(timezone(timedelta(hours=2)))
        await store.record_dead_letter(
            DeadLetter("balances", 1, uuid.UUID(int=1), "s", "T", "e", elsewhere)
        )
        (letter,) = await store.dead_letters("balances")
        assert letter.failed_at == _WHEN

    @pytest.mark.asyncio
    async def test_dead_letter_recorded_through_one_handle_lists_through_another(
        self, store: DeadLetterStore, open_peer: PeerFactory
    ) -> None:
        peer: DeadLetterStore = await open_peer()
        await peer.record_dead_letter(dead_letter())
        assert len(await store.dead_letters("balances")) == 1

    @pytest.mark.asyncio
    async def test_record_refuses_anything_but_a_dead_letter(self, store: DeadLetterStore) -> None:
        with pytest.raises(ValidationError, match="DeadLetter"):
            await store.record_dead_letter(cast(DeadLetter, {"projection": "balances"}))

    @pytest.mark.asyncio
    @pytest.mark.parametrize("name", ["", None, 1], ids=["empty", "none", "int"])
    async def test_invalid_projection_name_is_rejected(
        self, store: DeadLetterStore, name: object
    ) -> None:
        with pytest.raises(ValidationError):
            await store.dead_letters(cast(str, name))
        with pytest.raises(ValidationError):
            await store.clear_dead_letters(cast(str, name))
