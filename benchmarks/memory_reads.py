"""Reads on the in-memory store: the first read of events, which builds their
records from the stored rows, and a second read, which finds the records built.

    python benchmarks/memory_reads.py [--events 10000] [--per-append 1] [--repeat 7]

Each repetition fills a fresh store with ``--events`` events of one stream, in
appends of ``--per-append`` events that all carry one ``EventMetadata`` (a
correlation id, as the executor's events do), then times ``read_stream`` of the
whole stream twice. Medians over the repetitions, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from eventcore.backends.memory import InMemoryEventStore
from eventcore.types import AppendRequest, EventMetadata, NewEvent, StreamId


async def _one(events: int, per_append: int) -> tuple[float, float]:
    stream = StreamId("s")
    metadata = EventMetadata("correlation-1", None)
    async with InMemoryEventStore() as store:
        for version in range(0, events, per_append):
            batch = [
                NewEvent(stream, "bench.Happened", b'{"n":1}', metadata)
                for _ in range(min(per_append, events - version))
            ]
            await store.append(AppendRequest.create({stream: version}, batch))
        started = time.perf_counter()
        await store.read_stream(stream)
        first = time.perf_counter() - started
        started = time.perf_counter()
        await store.read_stream(stream)
        again = time.perf_counter() - started
    return first * 1e3, again * 1e3


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--per-append", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    runs = [await _one(args.events, args.per_append) for _ in range(args.repeat)]
    first = statistics.median(r[0] for r in runs)
    again = statistics.median(r[1] for r in runs)
    print(
        f"{args.events:,} events, {args.per_append} per append: first read {first:.2f} ms,", end=" "
    )
    print(f"second read {again:.2f} ms (medians of {args.repeat})")


if __name__ == "__main__":
    asyncio.run(main())
