"""What observing costs per command.

    python benchmarks/observer_overhead.py [--commands 20000] [--runs 5]
        [--url memory:|sqlite:///path|postgresql://...] [--tasks 1]
        [--variant none --variant prometheus ...] [--instructions]

Runs the same ``Deposit`` commands (1,000 accounts) through an
:class:`~eventcore.Application` with no observer, a no-op observer (which
listens to nothing, so the application neither wraps its store nor reports),
PerformanceMetrics, and Prometheus metrics; prints the median CPU time per command
of ``--runs`` runs, its difference to no observer, and commands/s (wall clock)
with its ratio to no observer, how far one variant's runs spread, and the
median ratio of runs paired round by round (see ``_report``). Variants take
turns within each run, starting with a different one each run, and CPU time is
measured beside wall time, so that a busy, shared machine skews them alike. The
in-memory store makes a command as cheap as it gets, so it is the worst case for
the relative overhead.
With ``--url`` the commands run against that store instead (a fresh SQLite file
or PostgreSQL schema per run), ``--tasks`` at a time.

``--instructions`` counts instead of timing: each variant runs in a child
process under ``valgrind --tool=callgrind``, once with ``--commands`` commands
and once with twice as many, and the difference in instructions executed,
divided by ``--commands``, is printed per command. Start-up, store set-up and
warm-up cancel out, and the count hardly depends on what else the machine is
doing, which timing on a shared machine does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
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
    from eventcore.backends.postgres import PostgresConfig, PostgresEventStore

    schema = f"overhead_{uuid.uuid4().hex[:12]}"
    # Under callgrind, on a busy machine, connecting and waiting for the pool can
    # take far longer than the defaults allow: waiting is not what is measured.
    patient = {"acquire_timeout": 600.0, "connect_timeout": 600.0, "command_timeout": 600.0}
    config = PostgresConfig(dsn=url, schema=schema, **patient)
    return await PostgresEventStore.open(config), schema


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


async def timed(names: list[str], commands: int, runs: int, url: str, tasks: int) -> None:
    for name in names:
        await one_run(VARIANTS[name](), min(commands, 2000), url, tasks)  # warm-up
    cpu: dict[str, list[float]] = {name: [] for name in names}
    rate: dict[str, list[float]] = {name: [] for name in names}
    for run in range(runs):
        turn = run % len(names)  # no variant always runs first (or last)
        for name in names[turn:] + names[:turn]:
            per_command, per_second = await one_run(VARIANTS[name](), commands, url, tasks)
            cpu[name].append(per_command)
            rate[name].append(per_second)
    print(f"{commands} commands, {tasks} task(s), median of {runs} runs, {_where(url)}")
    _report(names, cpu, rate)


def _report(names: list[str], cpu: dict[str, list[float]], rate: dict[str, list[float]]) -> None:
    """Medians, their ratio to the first variant, and how far runs of one variant
    spread: a difference smaller than the spread is run-to-run noise.

    ``spread`` is (max - min) / median of a variant's commands/s over its runs;
    ``paired`` is the median of the ratios of each run to the baseline's run in
    the same round (rounds are adjacent in time, so a load that drifts over the
    whole measurement skews a pair less than it skews the medians), with the
    lowest and highest of those ratios.
    """
    base = names[0]
    base_cpu = statistics.median(cpu[base])
    base_rate = statistics.median(rate[base])
    print(
        f"{'observer':<12} {'CPU us/command':>15} {'overhead':>16} {'commands/s':>11}"
        f" {'ratio':>6} {'spread':>7} {'paired (min-max)':>19}"
    )
    for name in names:
        seconds = statistics.median(cpu[name])
        extra = (seconds - base_cpu) * 1e6
        per_second = statistics.median(rate[name])
        spread = (max(rate[name]) - min(rate[name])) / per_second
        pairs = [mine / theirs for mine, theirs in zip(rate[name], rate[base], strict=True)]
        paired = f"{statistics.median(pairs):.2f} ({min(pairs):.2f}-{max(pairs):.2f})"
        print(
            f"{name:<12} {seconds * 1e6:>15.1f} {extra:>+8.1f}us ({extra / (base_cpu * 1e6):+.0%})"
            f" {per_second:>11.0f} {per_second / base_rate:>6.2f} {spread:>7.0%} {paired:>19}"
        )


def _where(url: str) -> str:
    return "in-memory store" if url == "memory:" else url.split("://")[0]


def instructions(names: list[str], commands: int, url: str, tasks: int) -> None:
    """Instructions per command of each variant, counted by callgrind."""
    counts = {}
    for name in names:
        small = _count(name, commands, url, tasks)
        large = _count(name, 2 * commands, url, tasks)
        counts[name] = (large - small) / commands
    base = counts[names[0]]
    print(f"instructions per command (callgrind), {commands} vs {2 * commands} commands,")
    print(f"{tasks} task(s), {_where(url)}")
    print(f"{'observer':<12} {'instructions':>13} {'overhead':>9}")
    for name, count in counts.items():
        print(f"{name:<12} {count:>13,.0f} {count / base - 1:>+9.1%}")


def _count(name: str, commands: int, url: str, tasks: int) -> int:
    child = [sys.executable, __file__, "--child", name, "--commands", str(commands)]
    child += ["--url", url, "--tasks", str(tasks)]
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    # A fixed hash seed: set and dict iteration, and so the work done, repeat exactly.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(valgrind + child, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(child)} failed under callgrind:\n{done.stderr[-3000:]}")
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in callgrind's output:\n{done.stderr}")
    return int(found.group(1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--url", default="memory:", help="memory:, sqlite: or a postgresql:// URL")
    parser.add_argument("--tasks", type=int, default=1, help="commands in flight at once")
    parser.add_argument(
        "--variant",
        action="append",
        choices=list(VARIANTS),
        help="observers to compare (repeat; default all); the first is the baseline",
    )
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions under callgrind"
    )
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = args.variant or list(VARIANTS)
    if args.child:  # one run under callgrind, for --instructions
        asyncio.run(one_run(VARIANTS[args.child](), args.commands, args.url, args.tasks))
    elif args.instructions:
        instructions(names, args.commands, args.url, args.tasks)
    else:
        asyncio.run(timed(names, args.commands, args.runs, args.url, args.tasks))
