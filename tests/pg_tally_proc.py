"""A writer process for the mixed one-stream / two-stream PostgreSQL test
(test_postgres_one_stream.py).

Usage: python -m tests.pg_tally_proc DSN SCHEMA WRITER_ID COMMANDS SEED STREAMS GROUP_COMMIT

Prints ``ready`` once connected, waits for a line on stdin (so all writers start
together), runs COMMANDS tally commands through the real executor (8 at a time),
about two thirds on one stream (``append_to_stream``) and the rest on two
(``append_batch``), over tally-0..STREAMS-1, with group commit on or off, and
prints one JSON line: the tags of the commands it committed, how many ran out
of retries, and how many retries it took.

Every event records how many events its stream had when the command decided it.
If any append ever passed its version check on a stale stream, some event's
count would differ from its stream version minus one.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from eventcore import Codec, Command, RetriesExhausted, RetryPolicy, StreamId, execute
from eventcore.backends import GroupCommitSettings
from eventcore.backends.postgres import PostgresConfig, PostgresEventStore

CONCURRENCY = 8
tally_codec = Codec()


@tally_codec.register("tally.Counted")
@dataclass(frozen=True, slots=True)
class Counted:
    tag: str
    seen: int  # events on the stream when the command decided this one


Counts = Mapping[StreamId, int]


@dataclass(frozen=True, slots=True)
class Tally(Command[Counts, Counted]):
    tag: str
    names: tuple[str, ...]

    def streams(self) -> list[str]:
        return list(self.names)

    def initial_state(self) -> Counts:
        return MappingProxyType({})

    def apply(self, state: Counts, stream_id: StreamId, event: Counted) -> Counts:
        return MappingProxyType({**state, stream_id: state.get(stream_id, 0) + 1})

    def handle(self, state: Counts) -> list[tuple[str, Counted]]:
        return [(name, Counted(self.tag, state.get(StreamId(name), 0))) for name in self.names]


async def run(
    dsn: str, schema: str, writer: int, count: int, seed: int, streams: int, grouped: bool
) -> None:
    rng = random.Random(seed)
    config = PostgresConfig.development(
        dsn,
        schema=schema,
        max_connections=CONCURRENCY,
        group_commit=GroupCommitSettings(enabled=grouped),
    )
    retry = RetryPolicy.exponential(max_retries=30, base_delay=0.001)
    committed: list[str] = []
    exhausted = 0
    retries = 0
    async with await PostgresEventStore.open(config, migrate=False) as store:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(n: int) -> None:
            nonlocal exhausted, retries
            width = 2 if rng.random() < 1 / 3 else 1
            names = tuple(f"tally-{i}" for i in rng.sample(range(streams), width))
            command = Tally(f"w{writer}-{n}", names)
            async with gate:
                try:
                    result = await execute(store, command, codec=tally_codec, retry=retry)
                except RetriesExhausted:
                    exhausted += 1
                else:
                    retries += result.attempts - 1
                    committed.append(command.tag)

        await asyncio.gather(*(one(n) for n in range(count)))
    print(json.dumps({"committed": committed, "exhausted": exhausted, "retries": retries}))


if __name__ == "__main__":
    dsn, schema, writer, count, seed, streams, grouped = sys.argv[1:8]
    asyncio.run(run(dsn, schema, int(writer), int(count), int(seed), int(streams), grouped == "on"))
