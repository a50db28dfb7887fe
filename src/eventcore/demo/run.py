"""The demo: a bank on the embedded SQLite store, under concurrent load.

Opens accounts, fires many transfers at once — they collide on shared accounts,
conflict, retry, and some are refused for lack of funds — then checks that no
money was created or lost and shows the tail of the global log.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path

from eventcore.backends.sqlite import SQLiteEventStore
from eventcore.demo.bank import Deposit, MoneyDeposited, Transfer, bank_codec
from eventcore.errors import BusinessRuleViolation, RetriesExhausted
from eventcore.execute import execute
from eventcore.retry import RetryPolicy
from eventcore.types import new_event_id

OPENING_BALANCE = 1_000


@dataclass(frozen=True, slots=True)
class DemoOptions:
    database: Path
    accounts: int = 10
    transfers: int = 200
    seed: int | None = None


async def run_demo(options: DemoOptions, out: list[str] | None = None) -> dict[str, int]:
    """Run the demo and return its tallies; lines are printed (or collected in ``out``)."""

    def say(line: str) -> None:
        if out is None:
            print(line, flush=True)
        else:
            out.append(line)

    rng = random.Random(options.seed)
    run_id = new_event_id().hex[-8:]
    say(f"eventcore demo: bank on SQLite at {options.database} (run {run_id})")
    async with await SQLiteEventStore.open(options.database) as store:
        accounts = [f"demo-{run_id}-account-{i}" for i in range(options.accounts)]
        for account in accounts:
            await execute(store, Deposit(account, OPENING_BALANCE), codec=bank_codec)
        say(f"opened {len(accounts)} accounts with {OPENING_BALANCE} each")

        transfers = []
        for i in range(options.transfers):
            source, target = rng.sample(accounts, 2)
            transfers.append(Transfer(source, target, rng.randint(1, 400), f"t{i}"))
        retry = RetryPolicy.exponential(max_retries=8, base_delay=0.002)
        started = time.perf_counter()
        results = await asyncio.gather(
            *(execute(store, t, codec=bank_codec, retry=retry) for t in transfers),
            return_exceptions=True,
        )
        elapsed = time.perf_counter() - started

        tally = {"committed": 0, "refused": 0, "exhausted": 0, "retries": 0}
        for result in results:
            if isinstance(result, BusinessRuleViolation):
                tally["refused"] += 1
            elif isinstance(result, RetriesExhausted):
                tally["exhausted"] += 1
            elif isinstance(result, BaseException):
                raise result
            else:
                tally["committed"] += 1
                tally["retries"] += result.attempts - 1
        say(
            f"{len(transfers)} concurrent transfers in {elapsed:.2f} s "
            f"({len(transfers) / elapsed:,.0f} commands/s): {tally['committed']} committed, "
            f"{tally['refused']} refused (insufficient funds), "
            f"{tally['exhausted']} gave up after retries; {tally['retries']} conflicts retried"
        )

        total = 0
        for account in accounts:
            async for record in store.iter_stream(account):
                event = bank_codec.decode(record)
                total += event.amount if isinstance(event, MoneyDeposited) else -event.amount
        expected = OPENING_BALANCE * len(accounts)
        verdict = "conserved" if total == expected else "NOT CONSERVED"
        say(f"money in all accounts: {total} (expected {expected}): {verdict}")
        tally["total"] = total
        tally["expected_total"] = expected

        head = await store.head_position()
        say(f"global log: {head} events; the last three:")
        for record in await store.read_all(after=max(0, head - 3)):
            event = bank_codec.decode(record)
            say(
                f"  #{record.global_position} {record.stream_id} "
                f"v{record.stream_version} {record.event_type} {event}"
            )
        if total != expected:
            raise SystemExit("money was not conserved")
        return tally
