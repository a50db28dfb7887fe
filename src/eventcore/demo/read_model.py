"""The bank's read model: balances per account, transfers, last activity.

A :class:`~eventcore.projection.Projection` keeps it in memory from the global
log while the demo runs. ``eventcore projections rebuild demo-bank --projection
eventcore.demo.read_model:BankReadModel`` replays it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from eventcore.codec import Codec
from eventcore.demo.bank import MoneyDeposited, bank_codec
from eventcore.projection import Projection
from eventcore.types import RecordedEvent

BANK_EVENT_TYPES = frozenset({"bank.MoneyDeposited", "bank.MoneyWithdrawn"})


@dataclass(slots=True)
class AccountView:
    """One account as the read model sees it. ``position`` is the last event
    applied: an event at or before it is a redelivery, and is ignored."""

    balance: int = 0
    transfers: int = 0  # transfers in and out (a deposit of one's own is not one)
    last_activity: datetime | None = None
    position: int = 0


@dataclass(slots=True)
class BankView:
    accounts: dict[str, AccountView] = field(default_factory=dict)
    transfers: int = 0  # counted once, by the withdrawal side


class BankReadModel(Projection):
    """Balances, transfers and last activity of every account whose stream id
    starts with ``stream_prefix`` (all of them by default)."""

    name = "demo-bank"
    event_types = BANK_EVENT_TYPES

    def __init__(self, codec: Codec = bank_codec, *, stream_prefix: str | None = None) -> None:
        self._codec = codec
        self.stream_prefix = stream_prefix
        self.view = BankView()

    @property
    def balances(self) -> Mapping[str, int]:
        return {account: view.balance for account, view in self.view.accounts.items()}

    async def handle(self, event: RecordedEvent) -> None:
        account = self.view.accounts.setdefault(event.stream_id, AccountView())
        if event.global_position <= account.position:
            return  # delivered again after a restart: already applied
        decoded = self._codec.decode(event)
        is_deposit = isinstance(decoded, MoneyDeposited)
        account.balance += decoded.amount if is_deposit else -decoded.amount
        if decoded.reference:  # the demo's transfers carry one; opening deposits do not
            account.transfers += 1
            if not is_deposit:
                self.view.transfers += 1
        account.last_activity = event.recorded_at
        account.position = event.global_position

    async def reset(self) -> None:
        self.view = BankView()
