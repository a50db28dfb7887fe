"""Commit-to-delivery latency of follow() on each store.

    python benchmarks/delivery_latency.py [--events 300] [--store memory sqlite postgres]

One writer appends one event at a time, ``--gap`` seconds apart; one follower
(``follow()`` with its default ``poll_interval``) waits at the end of the log.
The latency of an event is the time from its append returning (committed) to
the follower yielding it, in the same process, so one clock measures both. On
SQLite and PostgreSQL the writer uses a second store on the same database, as
another process would, so the follower is woken by the database (SQLite's data
version, PostgreSQL's NOTIFY) rather than by its own store's appends. Prints
the median and p99 per store.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import asyncpg

from eventcore import StreamId, follow
from eventcore.backends.memory import InMemoryEventStore
from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
from eventcore.backends.sqlite import SQLiteEventStore
from eventcore.store import EventStore
from eventcore.types import AppendRequest, NewEvent

DSN = "postgresql://postgres@127.0.0.1:5432/test"


async def _stores(kind: str, stack: AsyncExitStack, tmp: Path) -> tuple[EventStore, EventStore]:
    """(writer, reader) on one database."""
    if kind == "memory":
        store = InMemoryEventStore()
        return store, store
    if kind == "sqlite":
        path = tmp / "latency.sqlite"
        writer = await stack.enter_async_context(await SQLiteEventStore.open(path))
        reader = await stack.enter_async_context(await SQLiteEventStore.open(path))
        return writer, reader
    schema = f"bench_latency_{uuid.uuid4().hex[:8]}"
    stack.push_async_callback(_drop_schema, schema)
    config = PostgresConfig.development(DSN, schema=schema)
    pg_writer = await stack.enter_async_context(await PostgresEventStore.open(config))
    pg_reader = await stack.enter_async_context(await PostgresEventStore.open(config))
    return pg_writer, pg_reader


async def _drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def measure(kind: str, events: int, gap: float) -> list[float]:
    committed: dict[int, float] = {}
    latencies: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with AsyncExitStack() as stack:
            writer, reader = await _stores(kind, stack, Path(tmp))

            async def receive() -> None:
                async for event in follow(reader):
                    delivered = time.perf_counter()
                    # The wake-up can beat the append's return: count that as 0.
                    latencies.append(
                        max(delivered - committed.get(event.global_position, delivered), 0.0)
                    )
                    if len(latencies) == events:
                        return

            follower = asyncio.create_task(receive())
            stream = StreamId("latency")
            for version in range(events):
                event = NewEvent(stream, "Pinged", b"{}")
                result = await writer.append(AppendRequest.create({stream: version}, [event]))
                committed[result.positions[0]] = time.perf_counter()
                await asyncio.sleep(gap)
            await asyncio.wait_for(follower, 30)
    return latencies


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


async def main(kinds: list[str], events: int, gap: float) -> None:
    for kind in kinds:
        ms = [s * 1000 for s in await measure(kind, events, gap)]
        print(
            f"{kind:8} {events} events: median {statistics.median(ms):.2f} ms,"
            f" p99 {_p99(ms):.2f} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.01, help="seconds between appends")
    parser.add_argument("--store", nargs="+", default=["memory", "sqlite", "postgres"])
    args = parser.parse_args()
    asyncio.run(main(args.store, args.events, args.gap))
