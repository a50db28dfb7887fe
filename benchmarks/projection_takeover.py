"""Time a projection's failover: kill -9 the leading runner, time the takeover.

    python benchmarks/projection_takeover.py [--store sqlite|postgres] [--runs 5]

Runs the scenario of tests/test_projection_failover.py (three runner processes
with the default RunnerOptions, events appended meanwhile, the leader killed with
SIGKILL) ``--runs`` times and reports the time from the kill to the first event
the new leader handled: each run, then the median.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.*

from tests.failover_harness import PostgresSide, Side, SQLiteSide, run_failover
from tests.pg import PG_URL, drop_schema


async def one_run(store: str) -> float:
    if store == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            side: Side = SQLiteSide(Path(tmp) / "events.sqlite")
            return (await run_failover(side)).takeover_seconds
    schema = f"bench_takeover_{uuid.uuid4().hex[:8]}"
    try:
        return (await run_failover(PostgresSide(PG_URL, schema))).takeover_seconds
    finally:
        await drop_schema(schema)


async def main(store: str, runs: int) -> None:
    times = []
    for n in range(runs):
        times.append(await one_run(store))
        print(f"{store} run {n + 1}/{runs}: takeover {times[-1]:.2f} s", flush=True)
    print(f"{store}: median takeover {statistics.median(times):.2f} s over {runs} runs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.store, args.runs))
