"""One-stream appends on PostgreSQL, server functions called bare.

    python benchmarks/append_functions.py [--calls 1000] [--rounds 5]
                                          [--streams 10000] [--dsn postgresql://...]

Three ways of storing one event, each run ``--calls`` times in a row from one
asyncpg connection (no pool, no eventcore client code), the three interleaved
``--rounds`` times:

- ``insert``: a one-row INSERT into a table with a bigserial key: the baseline;
- ``append_batch``: the store's general function, for one command on one stream;
- ``append_to_stream``: the function the store calls for exactly that case.

Each event goes to a random stream of ``--streams`` at the version the stream is
at (no conflicts). Prints calls/s per round, the medians, and each median as a
ratio to the insert's. The scratch schema is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg

from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
from eventcore.backends.postgres._sql import Statements

_PAYLOAD = b'{"amount":100,"reference":""}'
_METADATA = b"{}"


async def main(dsn: str, calls: int, rounds: int, stream_count: int) -> None:
    schema = f"bench_fn_{uuid.uuid4().hex[:8]}"
    async with await PostgresEventStore.open(PostgresConfig(dsn=dsn, schema=schema)):
        pass  # migrated
    sql = Statements.for_schema(f'"{schema}"')
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            f'CREATE TABLE "{schema}".bare '
            "(id bigserial PRIMARY KEY, stream_id text, payload bytea)"
        )
        streams = [f"account-{n}" for n in range(stream_count)]
        versions: dict[str, int] = {}
        rng = random.Random(1)

        async def insert() -> None:
            await conn.execute(
                f'INSERT INTO "{schema}".bare (stream_id, payload) VALUES ($1, $2)',
                rng.choice(streams),
                _PAYLOAD,
            )

        async def batch() -> None:
            stream = rng.choice(streams)
            version = versions.get(stream, 0)
            rows = await conn.fetch(
                sql.append_batch,
                [1], [1], [stream], [version], [1], [1],
                [uuid.uuid4()], [stream], ["Deposited"], [_PAYLOAD], [_METADATA],
            )  # fmt: skip
            assert rows[0]["first_position"] is not None, rows
            versions[stream] = version + 1

        async def one_stream() -> None:
            stream = rng.choice(streams)
            version = versions.get(stream, 0)
            rows = await conn.fetch(
                sql.append_to_stream,
                stream, version, [uuid.uuid4()], ["Deposited"], [_PAYLOAD], [_METADATA],
            )  # fmt: skip
            assert rows[0]["first_position"] is not None, rows
            versions[stream] = version + 1

        ways: dict[str, Callable[[], Awaitable[None]]] = {
            "insert": insert,
            "append_batch": batch,
            "append_to_stream": one_stream,
        }
        rates: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(rounds):
            for name, call in ways.items():
                started = time.perf_counter()
                for _ in range(calls):
                    await call()
                rates[name].append(calls / (time.perf_counter() - started))
        baseline = statistics.median(rates["insert"])
        for name, measured in rates.items():
            median = statistics.median(measured)
            runs = ", ".join(f"{rate:,.0f}" for rate in measured)
            print(f"{name:17} {median:8,.0f} calls/s  {median / baseline:4.2f}x insert  ({runs})")
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    options = parser.parse_args()
    asyncio.run(main(options.dsn, options.calls, options.rounds, options.streams))
