"""A writer process for the multi-process PostgreSQL test (test_postgres_log.py).

Usage: python -m tests.pg_transfer_proc DSN SCHEMA WRITER_ID TRANSFERS SEED ACCOUNTS

Prints ``ready`` once connected, waits for a line on stdin (so all writers start
together), runs TRANSFERS bank transfers among account-0..ACCOUNTS-1 through the
real executor (8 at a time), and prints one JSON line: the references of the
transfers it committed, and counts of refused, exhausted and retried ones.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys

from eventcore import BusinessRuleViolation, RetriesExhausted, RetryPolicy, execute
from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
from eventcore.demo.bank import Transfer, bank_codec

CONCURRENCY = 8


async def run(dsn: str, schema: str, writer: int, count: int, seed: int, accounts: int) -> None:
    rng = random.Random(seed)
    config = PostgresConfig.development(dsn, schema=schema, max_connections=CONCURRENCY)
    retry = RetryPolicy.exponential(max_retries=10, base_delay=0.002)
    outcome: dict[str, list[str] | int] = {"committed": [], "refused": 0, "exhausted": 0}
    retries = 0
    async with await PostgresEventStore.open(config, migrate=False) as store:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(n: int) -> None:
            nonlocal retries
            source, target = rng.sample(range(accounts), 2)
            transfer = Transfer(
                f"account-{source}", f"account-{target}", rng.randint(1, 80), f"w{writer}-{n}"
            )
            async with gate:
                try:
                    result = await execute(store, transfer, codec=bank_codec, retry=retry)
                except BusinessRuleViolation:
                    outcome["refused"] += 1  # type: ignore[operator]
                except RetriesExhausted:
                    outcome["exhausted"] += 1  # type: ignore[operator]
                else:
                    retries += result.attempts - 1
                    outcome["committed"].append(transfer.reference)  # type: ignore[union-attr]

        await asyncio.gather(*(one(n) for n in range(count)))
    outcome["retries"] = retries
    print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    dsn, schema, writer, count, seed, accounts = sys.argv[1:7]
    asyncio.run(run(dsn, schema, int(writer), int(count), int(seed), int(accounts)))
