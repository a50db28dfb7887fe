"""Big batch appends on PostgreSQL: the COPY path against the array path and plain COPY.

    python benchmarks/copy_appends.py [--sizes 100,250,500,1000,2000] [--repeat 15]
                                      [--commands 1] [--dsn postgresql://...]

For each batch size, four ways of storing the same rows run interleaved (the
order rotates every repetition, so drift on a shared machine biases none):

- ``copy bare``: asyncpg ``copy_records_to_table`` of the rows, positions and
  versions made by the client, into a table with the events table's columns and
  no constraint or index: the floor of any way of storing them;
- ``copy shaped``: the same into a table made ``LIKE events INCLUDING ALL``: the
  events table's constraints and its four indexes, which every append maintains;
- ``eventcore COPY``: ``append_many`` with ``copy_threshold=1``;
- ``eventcore arrays``: ``append_many`` with ``copy_threshold=None``.

One operation is one batch of ``--commands`` requests (each to a fresh stream at
version 0) holding the size's events between them, timed from the encoded events
to the committed rows. Medians over the repetitions, events/s, and ratios to both
plain COPYs of the same repetitions. Scratch schemas are dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

import asyncpg

from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
from eventcore.codec import encode_metadata
from eventcore.types import EMPTY_METADATA, AppendRequest, NewEvent, StreamId

_EVENT_TYPE = "bank.MoneyDeposited"
_PAYLOAD = b'{"amount":1,"reference":""}'  # as the bench's append scenario
_COLUMNS = ("position", "event_id", "stream_id", "stream_version", "event_type")
_COLUMNS += ("payload", "metadata")
_VARIANTS = ("copy bare", "copy shaped", "eventcore COPY", "eventcore arrays")

Batch = list[AppendRequest]
Run = Callable[[Batch], Awaitable[None]]


@dataclass
class Scratch:
    """The two stores and the raw connection, with the plain COPY's own counter."""

    copying: PostgresEventStore
    arrays: PostgresEventStore
    raw: asyncpg.Connection
    schema: str
    position: int = 0

    def runs(self) -> dict[str, Run]:
        return {
            "copy bare": lambda batch: self.plain_copy("bare", batch),
            "copy shaped": lambda batch: self.plain_copy("shaped", batch),
            "eventcore COPY": lambda batch: _append(self.copying, batch),
            "eventcore arrays": lambda batch: _append(self.arrays, batch),
        }

    async def plain_copy(self, table: str, batch: Batch) -> None:
        metadata = encode_metadata(EMPTY_METADATA)
        records = []
        for request in batch:
            for version, event in enumerate(request.events, 1):
                self.position += 1
                records.append(
                    (
                        self.position,
                        event.event_id,
                        event.stream_id,
                        version,
                        event.event_type,
                        event.payload,
                        metadata,
                    )
                )
        await self.raw.copy_records_to_table(
            table, schema_name=self.schema, columns=_COLUMNS, records=records
        )


async def _append(store: PostgresEventStore, batch: Batch) -> None:
    outcomes = await store.append_many(batch)
    assert all(not isinstance(o, Exception) for o in outcomes), outcomes


def _batches(size: int, commands: int, names: Iterator[StreamId]) -> Callable[[], Batch]:
    each = [size // commands + (1 if n < size % commands else 0) for n in range(commands)]

    def batch() -> Batch:
        requests = []
        for count in each:
            stream = next(names)
            events = [NewEvent(stream, _EVENT_TYPE, _PAYLOAD) for _ in range(count)]
            requests.append(AppendRequest.create({stream: 0}, events))
        return requests

    return batch


async def _measure(
    scratch: Scratch, sizes: Sequence[int], commands: int, repeat: int, warmup: int
) -> dict[int, dict[str, list[float]]]:
    runs = scratch.runs()
    names = (StreamId(f"copy-{n}") for n in itertools.count())
    times: dict[int, dict[str, list[float]]] = {s: {v: [] for v in _VARIANTS} for s in sizes}
    for rep in range(warmup + repeat):
        for size in sizes:
            make = _batches(size, commands, names)
            shift = rep % len(_VARIANTS)
            for name in _VARIANTS[shift:] + _VARIANTS[:shift]:
                batch = make()  # built outside the timing: encoding is the caller's
                started = time.perf_counter()
                await runs[name](batch)
                if rep >= warmup:
                    times[size][name].append(time.perf_counter() - started)
    return times


def _report(times: dict[int, dict[str, list[float]]], commands: int, repeat: int) -> None:
    print(f"{repeat} interleaved repetitions, medians; {commands} request(s) per batch")
    header = ("events", "variant", "ms", "events/s", "vs bare", "vs shaped")
    print("{:>7}  {:<17} {:>7} {:>10} {:>8} {:>9}".format(*header))
    for size, by_variant in times.items():
        medians = {name: statistics.median(values) for name, values in by_variant.items()}
        for name, median in medians.items():
            print(
                f"{size:>7}  {name:<17} {median * 1000:7.2f} {size / median:10,.0f} "
                f"{medians['copy bare'] / median:8.2f} {medians['copy shaped'] / median:9.2f}"
            )
    # A ratio of medians can pair a lucky run with an unlucky one; the median of
    # the ratios within each repetition compares runs that shared the machine.
    print("\nmedian of per-repetition ratios (speed of eventcore COPY / speed of ...)")
    print(
        "{:>7}  {:>9} {:>11} {:>16}".format(
            "events", "copy bare", "copy shaped", "eventcore arrays"
        )
    )
    for size, by_variant in times.items():
        ratios = [
            statistics.median(
                other / copy
                for other, copy in zip(by_variant[name], by_variant["eventcore COPY"], strict=True)
            )
            for name in ("copy bare", "copy shaped", "eventcore arrays")
        ]
        print("{:>7}  {:9.2f} {:11.2f} {:16.2f}".format(size, *ratios))


async def main(dsn: str, sizes: Sequence[int], commands: int, repeat: int, warmup: int) -> None:
    tag = uuid.uuid4().hex[:8]
    schemas = [f"bench_copy_{tag}", f"bench_arrays_{tag}"]
    raw = await asyncpg.connect(dsn)
    try:
        async with (
            await PostgresEventStore.open(
                PostgresConfig.development(dsn, schema=schemas[0], copy_threshold=1)
            ) as copying,
            await PostgresEventStore.open(
                PostgresConfig.development(dsn, schema=schemas[1], copy_threshold=None)
            ) as arrays,
        ):
            s = f'"{schemas[0]}"'
            await raw.execute(
                f"CREATE TABLE {s}.bare (position bigint, event_id uuid, stream_id text, "
                "stream_version bigint, event_type text, payload bytea, metadata bytea, "
                "recorded_at timestamptz NOT NULL DEFAULT now())"
            )
            await raw.execute(f"CREATE TABLE {s}.shaped (LIKE {s}.events INCLUDING ALL)")
            scratch = Scratch(copying, arrays, raw, schemas[0])
            times = await _measure(scratch, sizes, commands, repeat, warmup)
        _report(times, commands, repeat)
    finally:
        for schema in schemas:
            await raw.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await raw.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,250,500,1000,2000")
    parser.add_argument("--commands", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    chosen = [int(s) for s in args.sizes.split(",")]
    asyncio.run(main(args.dsn, chosen, args.commands, args.repeat, args.warmup))
