"""Reads on a hot standby: follower delivery latency, and what stale command reads
cost in retries.

    python benchmarks/replica_reads.py [--events 300] [--gap 0.01] [--part latency commands stale]
    python benchmarks/replica_reads.py --primary URL --standby URL   # an existing pair

Without ``--primary``/``--standby`` it starts a primary and a streaming standby of
its own (tests/pg_replica.py: initdb, pg_basebackup -R, ports from 55432 up), so
run it from a checkout, with the PostgreSQL server binaries installed.

``latency``: one writer appends one event at a time on the primary, ``--gap``
seconds apart; a follower (``follow()``, default ``poll_interval``) yields it.
The latency is from the append returning (committed) to the follower yielding
the event, one clock for both. Followers compared in the same run:

- ``primary``: reads the primary, woken by its NOTIFY (the baseline);
- ``replica``: ``read_dsn`` set: NOTIFY heard on the primary, then the standby's
  log head polled until it has replayed the commit (what the store does);
- ``replica-poll-50ms`` / ``replica-poll-500ms``: a reader of the standby alone
  (no NOTIFY there), polling at that interval: the alternative design;
- ``replica-poll-1ms``: the same, polling every millisecond: close to the
  replication lag itself, the floor for any wake-up on the standby.

``commands``: ``Deposit`` commands with their reads on the primary and then on
the standby (``command_reads_on_replica=True``), in three workloads: ``serial``
(one task, every command on the same account: a client following its own
writes), ``spread`` (16 tasks, 2,000 accounts), ``hot`` (16 tasks, 4 accounts).
Reports commands/s and retries per command (attempts - 1).

``stale``: how often a read of a stream on the standby, made right after the
append to it returned, misses that append (300 appends to one stream, each
followed at once by ``stream_version``): a client reading its own writes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Collection, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import asyncpg

from eventcore import RetriesExhausted, RetryPolicy, StreamId, execute, follow
from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
from eventcore.demo.bank import Deposit, bank_codec
from eventcore.errors import StoreError
from eventcore.types import AppendRequest, NewEvent, RecordedEvent

FOLLOWERS = ("primary", "replica", "replica-poll-1ms", "replica-poll-50ms", "replica-poll-500ms")
POLL_INTERVALS = {"replica-poll-1ms": 0.001, "replica-poll-50ms": 0.05}
WORKLOADS = {"serial": (1, 1, 300), "spread": (16, 2000, 1000), "hot": (16, 4, 600)}
PATIENT = RetryPolicy.exponential(max_retries=20, base_delay=0.002)


class StandbyOnly:
    """A reader of the standby alone: no wake-up, so follow() polls."""

    def __init__(self, store: PostgresEventStore) -> None:
        self._store = store

    async def head_position(self) -> int:
        return await self._store.head_position()

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        stream_prefix: str | None = None,
        stream_pattern: str | None = None,
        event_types: Collection[str] | None = None,
        stop: int | None = None,
    ) -> list[RecordedEvent]:
        return await self._store.read_all(after=after, limit=limit)


@contextmanager
def pair_urls(primary: str | None, standby: str | None) -> Iterator[tuple[str, str]]:
    if primary and standby:
        yield primary, standby
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's tests/
    from tests import pg_replica

    os.environ.setdefault("EVENTCORE_TEST_SERVER_RESTARTS", "1")
    pairs = pg_replica.replicated_pair_or_skip()
    pair = next(pairs)
    try:
        yield pair.primary.url, pair.standby.url
    finally:
        pairs.close()


async def _wait_replayed(primary: PostgresEventStore, reader: PostgresEventStore) -> None:
    """Until the standby has the schema (made on the primary) and its log."""
    target = await primary.head_position()
    while True:
        try:
            if await reader.head_position() >= target:
                return
        except StoreError:  # the schema has not reached the standby yet
            pass
        await asyncio.sleep(0.01)


async def _open(
    stack: AsyncExitStack, dsn: str, schema: str, **settings: Any
) -> PostgresEventStore:
    config = PostgresConfig.development(dsn, schema=schema, **settings)
    store = await PostgresEventStore.open(config)
    return await stack.enter_async_context(store)


async def _drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def measure_latency(urls: tuple[str, str], kind: str, events: int, gap: float) -> list[float]:
    primary_url, standby_url = urls
    schema = f"bench_replica_{uuid.uuid4().hex[:8]}"
    async with AsyncExitStack() as stack:
        stack.push_async_callback(_drop_schema, primary_url, schema)
        writer = await _open(stack, primary_url, schema)
        if kind == "primary":
            store = await _open(stack, primary_url, schema)
        else:
            store = await _open(stack, primary_url, schema, read_dsn=standby_url)
        await _wait_replayed(writer, store)
        reader: Any = store if kind in ("primary", "replica") else StandbyOnly(store)
        interval = POLL_INTERVALS.get(kind, 0.5)
        return await _deliveries(writer, reader, interval, events, gap)


async def _deliveries(
    writer: PostgresEventStore, reader: Any, interval: float, events: int, gap: float
) -> list[float]:
    committed: dict[int, float] = {}
    latencies: list[float] = []

    async def receive() -> None:
        async for event in follow(reader, poll_interval=interval):
            delivered = time.perf_counter()
            latencies.append(max(delivered - committed.get(event.global_position, delivered), 0))
            if len(latencies) == events:
                return

    follower = asyncio.create_task(receive())
    stream = StreamId("latency")
    for version in range(events):
        request = AppendRequest.create({stream: version}, [NewEvent(stream, "Pinged", b"{}")])
        result = await writer.append(request)
        committed[result.positions[0]] = time.perf_counter()
        await asyncio.sleep(gap)
    await asyncio.wait_for(follower, 60)
    return latencies


async def measure_commands(
    urls: tuple[str, str], workload: str, on_replica: bool
) -> tuple[float, list[int], int]:
    """(commands/s, attempts of each command that succeeded, commands given up)."""
    tasks, accounts, total = WORKLOADS[workload]
    primary_url, standby_url = urls
    schema = f"bench_replica_{uuid.uuid4().hex[:8]}"
    settings: dict[str, Any] = {"read_dsn": standby_url, "command_reads_on_replica": on_replica}
    async with AsyncExitStack() as stack:
        stack.push_async_callback(_drop_schema, primary_url, schema)
        writer = await _open(stack, primary_url, schema)
        store = await _open(stack, primary_url, schema, **settings)
        await _wait_replayed(writer, store)
        queue = [f"acc-{random.randrange(accounts)}" for _ in range(total)]
        attempts: list[int] = []
        exhausted = 0

        async def worker() -> None:
            nonlocal exhausted
            while queue:
                command = Deposit(queue.pop(), 1)
                try:
                    result = await execute(store, command, codec=bank_codec, retry=PATIENT)
                except RetriesExhausted:
                    exhausted += 1
                else:
                    attempts.append(result.attempts)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(tasks)))
        return total / (time.perf_counter() - started), attempts, exhausted


async def measure_staleness(urls: tuple[str, str], appends: int = 300) -> tuple[int, float]:
    """(reads that missed the append just made, median read time in ms)."""
    primary_url, standby_url = urls
    schema = f"bench_replica_{uuid.uuid4().hex[:8]}"
    settings: dict[str, Any] = {"read_dsn": standby_url, "command_reads_on_replica": True}
    async with AsyncExitStack() as stack:
        stack.push_async_callback(_drop_schema, primary_url, schema)
        writer = await _open(stack, primary_url, schema)
        store = await _open(stack, primary_url, schema, **settings)
        await _wait_replayed(writer, store)
        stream = StreamId("own-writes")
        stale, reads = 0, []
        for version in range(appends):
            request = AppendRequest.create({stream: version}, [NewEvent(stream, "Pinged", b"{}")])
            await store.append(request)
            started = time.perf_counter()
            stale += await store.stream_version(stream) != version + 1
            reads.append((time.perf_counter() - started) * 1000)
        return stale, statistics.median(reads)


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


async def main(args: argparse.Namespace) -> None:
    print("machine shared with other jobs: compare rows of one run, not absolute times")
    with pair_urls(args.primary, args.standby) as urls:
        if "latency" in args.part:
            for kind in FOLLOWERS:
                ms = [s * 1000 for s in await measure_latency(urls, kind, args.events, args.gap)]
                print(
                    f"latency {kind:19} {len(ms)} events: median {statistics.median(ms):.2f} ms,"
                    f" p99 {_p99(ms):.2f} ms"
                )
        if "commands" in args.part:
            for workload in WORKLOADS:
                for on_replica in (False, True):
                    rate, attempts, exhausted = await measure_commands(urls, workload, on_replica)
                    retries = sum(a - 1 for a in attempts) / max(len(attempts), 1)
                    where = "replica" if on_replica else "primary"
                    print(
                        f"commands {workload:6} reads on {where:7}: {rate:7.0f} commands/s,"
                        f" {retries:.2f} retries/command, max attempts {max(attempts)},"
                        f" gave up {exhausted}"
                    )
        if "stale" in args.part:
            stale, read_ms = await measure_staleness(urls)
            print(
                f"stale: {stale} of 300 reads on the replica right after the append missed it"
                f" (median read {read_ms:.2f} ms)"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.01, help="seconds between appends")
    parser.add_argument("--part", nargs="+", default=["latency", "commands", "stale"])
    parser.add_argument("--primary", help="primary URL (with --standby: an existing pair)")
    parser.add_argument("--standby", help="the standby's URL")
    asyncio.run(main(parser.parse_args()))
