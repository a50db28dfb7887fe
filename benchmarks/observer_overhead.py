"""What observing costs per command, on the in-memory store.

    python benchmarks/observer_overhead.py [--commands 20000] [--runs 5]
        [--url memory:|sqlite:///path|postgresql://...] [--tasks 1]

Runs the same ``Deposit`` commands (one task, 1,000 accounts) through an
:class:`~eventcore.Application` with no observer, a no-op observer (the store is
then wrapped and timed, and every hook dispatched to nothing), PerformanceMetrics,
and Prometheus metrics; prints the median CPU time per command of ``--runs`` runs
and the difference to no observer. Variants take turns within each run, and CPU
time (not wall time) is measured, so that a busy, shared machine skews them alike.
The in-memory store makes a command as cheap as it gets, so this is the worst
case for the relative overhead. With ``--url`` the commands run against that
store instead (a fresh SQLite file or PostgreSQL schema per run), ``--tasks`` at a
time, and commands/s (wall clock) is printed beside the CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from eventcore import Application, InMemoryEventStore, Observer, open_store
from eventcore.demo.bank import Deposit, bank_codec
from eventcore.performance import PerformanceMetrics
from eventcore.store import EventStore

VARIANTS: dict[str, Callable[[], list[Observer]]] = {
    "none": list,
    "noop": lambda: [Observer()],
    "performance": lambda: [PerformanceMetrics()],
}
try:
    from eventcore.prometheus import PrometheusObserver

    VARIANTS["prometheus"] = lambda: [PrometheusObserver()]
except ImportError:  # the metrics extra is not installed
    pass


async def _store(url: str) -> tuple[EventStore, str | None]:
    """A fresh store for one run, and the PostgreSQL schema to drop after it."""
    if url == "memory:":
        return InMemoryEventStore(), None
    if url.startswith("sqlite"):
        return await open_store(Path(tempfile.mkdtemp()) / "overhead.sqlite"), None
    schema = f"overhead_{uuid.uuid4().hex[:12]}"
    return await open_store(f"{url}?schema={schema}"), schema


async def _drop(url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def one_run(
    observers: list[Observer], commands: int, url: str, tasks: int
) -> tuple[float, float]:
    """CPU seconds per command, and commands per second, on a fresh store."""
    store, schema = await _store(url)
    app = Application(store, codec=bank_codec, observers=observers)
    deposits = [Deposit(f"account-{n % 1000}", 1) for n in range(commands)]
    queue = iter(deposits)

    async def worker() -> None:
        for deposit in queue:
            await app.execute(deposit)

    start, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    cpu, elapsed = time.process_time() - start, time.perf_counter() - wall
    await app.close()
    if schema is not None:
        await _drop(url, schema)
    return cpu / commands, commands / elapsed


async def main(commands: int, runs: int, url: str, tasks: int) -> None:
    for make in VARIANTS.values():
        await one_run(make(), min(commands, 2000), url, tasks)  # warm-up
    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    rate: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(runs):
        for name, make in VARIANTS.items():
            per_command, per_second = await one_run(make(), commands, url, tasks)
            cpu[name].append(per_command)
            rate[name].append(per_second)
    medians = {name: statistics.median(times) for name, times in cpu.items()}
    base = medians["none"]
    base_rate = statistics.median(rate["none"])
    where = "in-memory store" if url == "memory:" else url.split("://")[0]
    print(f"{commands} commands, {tasks} task(s), median of {runs} runs, {where}")
    print(
        f"{'observer':<12} {'CPU us/command':>15} {'overhead':>16} {'commands/s':>11} {'ratio':>6}"
    )
    for name, seconds in medians.items():
        extra = (seconds - base) * 1e6
        per_second = statistics.median(rate[name])
        print(
            f"{name:<12} {seconds * 1e6:>15.1f} {extra:>+8.1f}us ({extra / (base * 1e6):+.0%})"
            f" {per_second:>11.0f} {per_second / base_rate:>6.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--url", default="memory:", help="memory:, sqlite: or a postgresql:// URL")
    parser.add_argument("--tasks", type=int, default=1, help="commands in flight at once")
    args = parser.parse_args()
    asyncio.run(main(args.commands, args.runs, args.url, args.tasks))
