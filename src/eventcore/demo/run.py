"""The demo: a bank on the embedded SQLite store, under concurrent load.

Opens accounts, fires many transfers at once — they collide on shared accounts,
conflict, retry, and some are refused for lack of funds — then checks that no
money was created or lost and shows the tail of the global log.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from eventcore.backends.sqlite import SQLiteEventStore
from eventcore.cache import StateCache
from eventcore.demo.bank import Deposit, MoneyDeposited, Transfer, bank_codec
from eventcore.errors import BusinessRuleViolation, RetriesExhausted
from eventcore.execute import ExecutionResult, execute
from eventcore.parallel import execute_all
from eventcore.retry import RetryPolicy
from eventcore.store import EventStore
from eventcore.types import new_event_id

OPENING_BALANCE = 1_000
RETRY = RetryPolicy.exponential(max_retries=8, base_delay=0.002)


@dataclass(frozen=True, slots=True)
class DemoOptions:
    database: Path
    accounts: int = 10
    transfers: int = 200
    seed: int | None = None


@dataclass(slots=True)
class Tally:
    committed: int = 0
    refused: int = 0
    exhausted: int = 0
    retries: int = 0
    total: int = 0
    expected_total: int = 0

    def count(self, outcome: ExecutionResult | BaseException) -> None:
        if isinstance(outcome, BusinessRuleViolation):
            self.refused += 1
        elif isinstance(outcome, RetriesExhausted):
            self.exhausted += 1
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            self.committed += 1
            self.retries += outcome.attempts - 1


async def run_demo(options: DemoOptions, say: Callable[[str], None] = print) -> Tally:
    """Run the demo, reporting each step through ``say``; return what happened."""
    rng = random.Random(options.seed)
    run_id = new_event_id().hex[-8:]
    say(f"eventcore demo: bank on SQLite at {options.database} (run {run_id})")
    tally = Tally()
    async with await SQLiteEventStore.open(options.database) as store:
        accounts = [f"demo-{run_id}-account-{i}" for i in range(options.accounts)]
        for account in accounts:
            await execute(store, Deposit(account, OPENING_BALANCE), codec=bank_codec)
        say(f"opened {len(accounts)} accounts with {OPENING_BALANCE} each")

        # Round 1: every transfer at once. They race for shared accounts: the
        # version checks turn each race into a conflict, and the loser retries.
        racing = _random_transfers(rng, accounts, options.transfers, "race")
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(execute(store, t, codec=bank_codec, retry=RETRY) for t in racing),
            return_exceptions=True,
        )
        _report(say, "racing", tally, outcomes, time.perf_counter() - started)

        # Round 2: the parallel executor orders transfers that share an account,
        # and the state cache spares the read before each append.
        ordered = _random_transfers(rng, accounts, options.transfers, "ordered")
        started = time.perf_counter()
        in_order = await execute_all(
            store, ordered, concurrency=16, codec=bank_codec, retry=RETRY, cache=StateCache()
        )
        _report(say, "execute_all + cache", tally, in_order, time.perf_counter() - started)
        tally.total = await _money_in(store, accounts)
        tally.expected_total = OPENING_BALANCE * len(accounts)
        verdict = "conserved" if tally.total == tally.expected_total else "NOT CONSERVED"
        say(f"money in all accounts: {tally.total} (expected {tally.expected_total}): {verdict}")
        await _show_log_tail(store, say)
    if tally.total != tally.expected_total:
        raise SystemExit("money was not conserved")
    return tally


def _random_transfers(
    rng: random.Random, accounts: Sequence[str], count: int, tag: str
) -> list[Transfer]:
    transfers = []
    for i in range(count):
        source, target = rng.sample(list(accounts), 2)
        transfers.append(Transfer(source, target, rng.randint(1, 400), f"{tag}-{i}"))
    return transfers


def _report(
    say: Callable[[str], None],
    label: str,
    tally: Tally,
    outcomes: Sequence[ExecutionResult | BaseException],
    elapsed: float,
) -> None:
    before = (tally.committed, tally.refused, tally.exhausted, tally.retries)
    for outcome in outcomes:
        tally.count(outcome)
    committed, refused, exhausted, retries = (
        now - then
        for now, then in zip(
            (tally.committed, tally.refused, tally.exhausted, tally.retries), before, strict=True
        )
    )
    say(
        f"{label}: {len(outcomes)} transfers in {elapsed:.2f} s "
        f"({len(outcomes) / elapsed:,.0f} commands/s): {committed} committed, "
        f"{refused} refused (insufficient funds), {exhausted} gave up after retries; "
        f"{retries} conflicts retried"
    )


async def _money_in(store: EventStore, accounts: Sequence[str]) -> int:
    total = 0
    for account in accounts:
        async for record in store.iter_stream(account):
            event = bank_codec.decode(record)
            total += event.amount if isinstance(event, MoneyDeposited) else -event.amount
    return total


async def _show_log_tail(store: EventStore, say: Callable[[str], None]) -> None:
    head = await store.head_position()
    say(f"global log: {head} events; the last three:")
    for record in await store.read_all(after=max(0, head - 3)):
        say(
            f"  #{record.global_position} {record.stream_id} v{record.stream_version} "
            f"{record.event_type} {bank_codec.decode(record)}"
        )
