"""A writer process for the multi-process tailing test in test_sqlite_store.py.

Usage: python sqlite_writer_proc.py DB_PATH WRITER_ID APPENDS SEED

Prints ``ready`` once imported, waits for a line on stdin (so that every writer
starts at the same moment), then makes APPENDS successful appends to a few shared
streams, single- and multi-stream (some with a read-only participant), retrying
each on version conflict with fresh versions. Prints one JSON line of counts.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys

from eventcore.backends.sqlite import SQLiteEventStore
from eventcore.errors import VersionConflict
from eventcore.types import AppendRequest, NewEvent, StreamId

SHARED_STREAMS = [StreamId(f"account-{n}") for n in range(6)]
MAX_ATTEMPTS = 1000


async def write(path: str, writer: int, appends: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    counts = {"appends": 0, "events": 0, "conflicts": 0}
    async with SQLiteEventStore(path, busy_timeout=30.0) as store:
        for seq in range(appends):
            participants = rng.sample(SHARED_STREAMS, rng.choice((1, 1, 2, 3)))
            written = participants[:2]  # a third participant is only read
            for _ in range(MAX_ATTEMPTS):
                expected = {s: await store.stream_version(s) for s in participants}
                events = [
                    NewEvent(
                        stream,
                        "Deposited",
                        json.dumps({"writer": writer, "seq": seq}).encode(),
                    )
                    for stream in written
                    for _ in range(rng.randint(1, 2))
                ]
                try:
                    await store.append(AppendRequest.create(expected, events))
                except VersionConflict:
                    counts["conflicts"] += 1
                    continue
                counts["appends"] += 1
                counts["events"] += len(events)
                break
            else:
                raise RuntimeError(f"append {seq} conflicted {MAX_ATTEMPTS} times")
    return counts


def main() -> None:
    path, writer, appends, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(asyncio.run(write(path, writer, appends, seed))), flush=True)


if __name__ == "__main__":
    main()
