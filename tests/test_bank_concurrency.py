"""200 concurrent transfers among 10 accounts, on every backend."""

from __future__ import annotations

from eventcore import InMemoryEventStore, RetryPolicy
from eventcore.store import EventStore
from eventcore.testing.faults import FaultInjectingStore
from tests.bank_checks import check_bank_invariants, open_accounts, run_transfers

RETRY = RetryPolicy.exponential(max_retries=8, base_delay=0.002)


async def test_concurrent_transfers_keep_every_invariant(any_store: EventStore) -> None:
    # Over the in-memory store nothing awaits for real; a zero latency makes the
    # commands interleave between their read and their append, as real I/O would.
    store = (
        FaultInjectingStore(any_store, latency=0)
        if isinstance(any_store, InMemoryEventStore)
        else any_store
    )
    accounts = await open_accounts(store, 10)
    outcomes = await run_transfers(store, accounts, count=200, seed=11, retry=RETRY)

    total = len(outcomes.committed) + len(outcomes.refused) + len(outcomes.exhausted)
    assert total == 200
    assert outcomes.retries > 0, "the test must actually provoke version conflicts"
    assert outcomes.committed, "some transfers must commit"
    await check_bank_invariants(store, accounts, outcomes)
