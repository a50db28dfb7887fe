"""Walk a 1,000,000-event PostgreSQL log with iter_all and report speed and memory.

    python benchmarks/walk_log.py [--events 1000000] [--dsn postgresql://...]

Fills a scratch schema with COPY-free batched appends (10,000 events per call),
then walks it page by page, reporting events/s and the Python heap's peak
(tracemalloc) during the walk, and drops the schema. The unit-test-sized twin is
tests/test_postgres_log.py::test_walking_a_100k_event_log_holds_one_page_in_memory.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import tracemalloc
import uuid

import asyncpg

from eventcore import StreamId
from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
from eventcore.types import AppendRequest, NewEvent

BATCH = 10_000


async def main(events: int, dsn: str, page_size: int) -> None:
    schema = f"bench_walk_{uuid.uuid4().hex[:8]}"
    config = PostgresConfig.development(dsn, schema=schema)
    try:
        async with await PostgresEventStore.open(config) as store:
            started = time.perf_counter()
            for start in range(0, events, BATCH):
                stream = StreamId(f"walk-{start // BATCH}")
                batch = [
                    NewEvent(stream, "Tick", b'{"n":%d,"note":"%s"}' % (n, b"x" * 180))
                    for n in range(start, min(start + BATCH, events))
                ]
                await store.append(AppendRequest.create({stream: 0}, batch))
            filled = time.perf_counter() - started
            print(f"appended {events:,} events in {filled:.1f} s ({events / filled:,.0f} events/s)")

            tracemalloc.start()
            started = time.perf_counter()
            count = 0
            async for _ in store.iter_all(page_size=page_size):
                count += 1
            walked = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert count == events, (count, events)
            print(
                f"walked {count:,} events in {walked:.1f} s ({count / walked:,.0f} events/s), "
                f"page_size={page_size}, peak Python heap during the walk {peak / 1e6:.1f} MB"
            )
    finally:
        conn = await asyncpg.connect(dsn)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--page-size", type=int, default=1_000)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.dsn, args.page_size))
