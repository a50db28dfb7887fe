"""The store's append functions on PostgreSQL, called bare.

    python benchmarks/append_functions.py [--calls 1000] [--rounds 5]
                                          [--streams 10000] [--dsn postgresql://...]
    python benchmarks/append_functions.py --batch 32 [--calls 100] [--rounds 5]

Three ways of storing one event, each run ``--calls`` times in a row from one
asyncpg connection (no pool, no eventcore client code), the three interleaved
``--rounds`` times:

- ``insert``: a one-row INSERT into a table with a bigserial key: the baseline;
- ``append_batch``: the store's general function, for one command on one stream;
- ``append_to_stream``: the function the store calls for exactly that case.

Each event goes to a random stream of ``--streams`` at the version the stream is
at (no conflicts). Prints calls/s per round, the medians, and each median as a
ratio to the insert's.

With ``--batch N``, ``append_batch`` with N commands a call instead, as group
commit sends them, three ways interleaved: N one-stream commands, N two-stream
commands that share no stream (both set-based in one go), the same through
``append_disjoint`` (the function the store calls for them), and the same with two
commands sharing one stream (cut into two runs of independent commands). Prints
milliseconds per call. The scratch schema is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from asyncpg import Connection

from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
from eventcore.backends.postgres._sql import Statements

_PAYLOAD = b'{"amount":100,"reference":""}'
_METADATA = b"{}"


async def main(
    dsn: str, calls: int, rounds: int, stream_count: int, batch_size: int | None
) -> None:
    schema = f"bench_fn_{uuid.uuid4().hex[:8]}"
    async with await PostgresEventStore.open(PostgresConfig(dsn=dsn, schema=schema)):
        pass  # migrated
    sql = Statements.for_schema(f'"{schema}"')
    conn = await asyncpg.connect(dsn)
    try:
        if batch_size is not None:
            await batches(conn, sql, batch_size, calls, rounds, stream_count)
            return
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


def _batch_parameters(
    chosen: list[str], size: int, width: int, versions: dict[str, int]
) -> tuple[list[Any], dict[str, int]]:
    """``append_batch``'s arrays for ``size`` commands of ``width`` streams each
    (one event per stream), expecting the versions each leaves for the next;
    and how many events each stream gets."""
    expect_end, expect_cmd, expect_streams, expect_versions = [], [], [], []
    event_end, event_cmd, ids, event_streams = [], [], [], []
    written: dict[str, int] = {}
    for command in range(1, size + 1):
        mine = sorted(set(chosen[(command - 1) * width : command * width]))
        for stream in mine:
            expect_cmd.append(command)
            expect_streams.append(stream)
            expect_versions.append(versions.get(stream, 0) + written.get(stream, 0))
            event_cmd.append(command)
            ids.append(uuid.uuid4())
            event_streams.append(stream)
        for stream in mine:
            written[stream] = written.get(stream, 0) + 1
        expect_end.append(len(expect_streams))
        event_end.append(len(ids))
    count = len(ids)
    parameters: list[Any] = [
        expect_end, expect_cmd, expect_streams, expect_versions, event_end, event_cmd,
        ids, event_streams, ["Deposited"] * count, [_PAYLOAD] * count, [_METADATA] * count,
    ]  # fmt: skip
    return parameters, written


async def batches(
    conn: Connection, sql: Statements, size: int, calls: int, rounds: int, stream_count: int
) -> None:
    streams = [f"account-{n}" for n in range(stream_count)]
    versions: dict[str, int] = {}
    rng = random.Random(2)

    async def call(width: int, shared: bool, disjoint: bool) -> None:
        chosen = rng.sample(streams, width * size)
        if shared:
            chosen[width] = chosen[0]  # the second command expects the first's stream
        parameters, written = _batch_parameters(chosen, size, width, versions)
        if disjoint:
            # append_disjoint's arrays: each event names its expectation (here the
            # events are the expectations, one each, in order)
            expect_end, _, expect_streams, expect_versions, _, _, ids, _, *rest = parameters
            indexes = list(range(1, len(ids) + 1))
            rows = await conn.fetch(
                sql.append_disjoint,
                expect_end, expect_streams, expect_versions, indexes, ids, *rest,
            )  # fmt: skip
        else:
            rows = await conn.fetch(sql.append_batch, *parameters)
        assert all(row["first_position"] is not None for row in rows), rows
        for stream, added in written.items():
            versions[stream] = versions.get(stream, 0) + added

    ways: dict[str, tuple[int, bool, bool]] = {
        f"{size} one-stream commands": (1, False, False),
        f"{size} two-stream, independent": (2, False, False),
        f"{size} two-stream, append_disjoint": (2, False, True),
        f"{size} two-stream, one shared": (2, True, False),
    }
    for _ in range(calls):  # every stream opened, the plans warm
        await call(1, False, False)
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, way in ways.items():
            started = time.perf_counter()
            for _ in range(calls):
                await call(*way)
            times[name].append((time.perf_counter() - started) / calls * 1000)
    for name, measured in times.items():
        runs = ", ".join(f"{ms:.2f}" for ms in measured)
        print(f"{name:34} {statistics.median(measured):6.2f} ms a call  ({runs})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, help="calls a round (1000; 100 with --batch)")
    parser.add_argument("--batch", type=int, help="commands a call of append_batch")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    options = parser.parse_args()
    calls = options.calls or (100 if options.batch else 1000)
    asyncio.run(main(options.dsn, calls, options.rounds, options.streams, options.batch))
