"""Run many concurrent transfers and check the invariants that must survive them.

Shared by the concurrency tests of every backend.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass

from eventcore import (
    BusinessRuleViolation,
    ExecutionResult,
    RetriesExhausted,
    RetryPolicy,
    execute,
)
from eventcore.cache import StateCache
from eventcore.demo.bank import Deposit, MoneyDeposited, MoneyWithdrawn, Transfer, bank_codec
from eventcore.store import EventStore

OPENING_BALANCE = 100


@dataclass
class TransferOutcomes:
    committed: list[tuple[Transfer, ExecutionResult]]
    refused: list[Transfer]
    exhausted: list[Transfer]

    @property
    def retries(self) -> int:
        return sum(result.attempts - 1 for _, result in self.committed)


async def open_accounts(store: EventStore, count: int) -> list[str]:
    accounts = [f"account-{i}" for i in range(count)]
    for account in accounts:
        await execute(store, Deposit(account, OPENING_BALANCE), codec=bank_codec)
    return accounts


async def run_transfers(
    store: EventStore,
    accounts: list[str],
    count: int,
    seed: int,
    retry: RetryPolicy,
    cache: StateCache | None = None,
) -> TransferOutcomes:
    rng = random.Random(seed)
    transfers = []
    for i in range(count):
        source, target = rng.sample(accounts, 2)
        transfers.append(Transfer(source, target, rng.randint(1, 60), reference=f"t{i}"))
    results = await asyncio.gather(
        *(execute(store, t, codec=bank_codec, retry=retry, cache=cache) for t in transfers),
        return_exceptions=True,
    )
    outcomes = TransferOutcomes([], [], [])
    for transfer, result in zip(transfers, results, strict=True):
        if isinstance(result, ExecutionResult):
            outcomes.committed.append((transfer, result))
        elif isinstance(result, BusinessRuleViolation):
            outcomes.refused.append(transfer)
        elif isinstance(result, RetriesExhausted):
            outcomes.exhausted.append(transfer)
        else:
            raise AssertionError(f"{transfer} failed unexpectedly: {result!r}")
    return outcomes


async def check_bank_invariants(
    store: EventStore, accounts: list[str], outcomes: TransferOutcomes
) -> None:
    log = await store.read_all()
    positions = [e.global_position for e in log]
    assert positions == list(range(1, len(log) + 1)), "positions must be gapless, increasing"
    assert len({e.event_id for e in log}) == len(log), "an event id was written twice"

    balances: Counter[str] = Counter()
    for account in accounts:
        events = await store.read_stream(account)
        versions = [e.stream_version for e in events]
        assert versions == list(range(1, len(events) + 1)), f"{account}: {versions}"
        for record in events:
            event = bank_codec.decode(record)
            sign = 1 if isinstance(event, MoneyDeposited) else -1
            balances[account] += sign * event.amount
            assert balances[account] >= 0, f"{account} went overdrawn at v{record.stream_version}"
    assert sum(balances.values()) == OPENING_BALANCE * len(accounts), "money not conserved"

    # Exactly the committed transfers were written, each exactly once.
    written = Counter(
        (type(bank_codec.decode(e)).__name__, bank_codec.decode(e).reference)
        for e in log
        if bank_codec.decode(e).reference
    )
    committed_refs = {t.reference for t, _ in outcomes.committed}
    assert set(written) == {
        (kind.__name__, ref) for ref in committed_refs for kind in (MoneyDeposited, MoneyWithdrawn)
    }
    assert all(n == 1 for n in written.values()), "a transfer was written twice"
    for transfer, result in outcomes.committed:
        assert result.events_written == 2
        assert set(result.stream_versions) == {transfer.source, transfer.target}
