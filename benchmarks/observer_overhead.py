"""What observing costs per command, on the in-memory store.

    python benchmarks/observer_overhead.py [--commands 20000] [--runs 5]

Runs the same ``Deposit`` commands (one task, 1,000 accounts) through an
:class:`~eventcore.Application` with no observer, a no-op observer (the store is
then wrapped and timed, and every hook dispatched to nothing), PerformanceMetrics,
and Prometheus metrics; prints the median CPU time per command of ``--runs`` runs
and the difference to no observer. Variants take turns within each run, and CPU
time (not wall time) is measured, so that a busy, shared machine skews them alike.
The in-memory store makes a command as cheap as it gets, so this is the worst
case for the relative overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

from eventcore import Application, InMemoryEventStore, Observer
from eventcore.demo.bank import Deposit, bank_codec
from eventcore.performance import PerformanceMetrics

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


async def one_run(observers: list[Observer], commands: int) -> float:
    """Seconds per command over ``commands`` commands on a fresh store."""
    app = Application(InMemoryEventStore(), codec=bank_codec, observers=observers)
    deposits = [Deposit(f"account-{n % 1000}", 1) for n in range(commands)]
    start = time.process_time()
    for deposit in deposits:
        await app.execute(deposit)
    elapsed = time.process_time() - start
    await app.close()
    return elapsed / commands


async def main(commands: int, runs: int) -> None:
    for make in VARIANTS.values():
        await one_run(make(), min(commands, 2000))  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(runs):
        for name, make in VARIANTS.items():
            samples[name].append(await one_run(make(), commands))
    medians = {name: statistics.median(times) for name, times in samples.items()}
    base = medians["none"]
    print(f"{commands} commands, median of {runs} runs, in-memory store")
    print(f"{'observer':<12} {'CPU us/command':>15} {'overhead':>10}")
    for name, seconds in medians.items():
        extra = (seconds - base) * 1e6
        print(f"{name:<12} {seconds * 1e6:>15.1f} {extra:>+8.1f}us ({extra / (base * 1e6):+.0%})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.commands, args.runs))
