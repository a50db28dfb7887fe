"""Client CPU per command on the executor's hot path.

Runs N single-stream ``Deposit`` commands through :func:`eventcore.execute` and
reports the median over several runs of the process CPU time per command (the
machine is shared, so CPU time is steadier than wall time) and commands per
second of wall time. Two paths:

- ``miss``: no state cache; every command deposits to an account nothing has
  written yet, so each one reads (an empty stream), folds, decides and appends;
- ``hit``: a warm :class:`~eventcore.StateCache` (``Deposit`` opts in with
  ``reuses_state``); each command deposits to an account whose state is cached,
  so it decides without reading.

Each of 1 or 16 tasks works on accounts of its own (no conflicts). Every run
starts with a fresh store. For SQLite and PostgreSQL the CPU is this process's
(the client's), not the server's.

    python benchmarks/hot_path.py                      # memory, 20,000 commands
    python benchmarks/hot_path.py --backend sqlite --backend postgres -n 2000
    python benchmarks/hot_path.py --backend postgres --tasks 64 --path miss \\
        --option 'group_commit={"max_in_flight": 1}'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import dataclass

from eventcore.bench.stores import open_backend
from eventcore.cache import StateCache
from eventcore.demo.bank import Deposit, bank_codec
from eventcore.execute import execute
from eventcore.store import EventStore

ACCOUNTS_PER_TASK = 64


@dataclass(frozen=True)
class Figure:
    backend: str
    path: str
    tasks: int
    cpu_us: float  # median CPU microseconds per command
    per_second: float  # median commands per second (wall)


async def _worker(
    store: EventStore, cache: StateCache | None, accounts: list[str], count: int
) -> None:
    for i in range(count):
        account = accounts[i % len(accounts)]
        await execute(store, Deposit(account, 1), codec=bank_codec, cache=cache)


async def _one_run(
    backend: str, path: str, tasks: int, total: int, run: int, options: dict[str, object]
) -> tuple[float, float]:
    per_task = total // tasks
    async with open_backend(backend, {**options, "cache": False}) as store:
        cache = StateCache() if path == "hit" else None
        if path == "hit":
            plan = [[f"acc-{run}-{t}-{a}" for a in range(ACCOUNTS_PER_TASK)] for t in range(tasks)]
            # Warm the cache: one command per account, not measured.
            await asyncio.gather(
                *(_worker(store, cache, accounts, len(accounts)) for accounts in plan)
            )
        else:
            plan = [[f"new-{run}-{t}-{i}" for i in range(per_task)] for t in range(tasks)]
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(_worker(store, cache, accounts, per_task) for accounts in plan))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = per_task * tasks
    return cpu / done * 1e6, done / wall


async def measure(
    backend: str, path: str, tasks: int, total: int, runs: int, options: dict[str, object]
) -> Figure:
    samples = [await _one_run(backend, path, tasks, total, run, options) for run in range(runs)]
    return Figure(
        backend,
        path,
        tasks,
        statistics.median(s[0] for s in samples),
        statistics.median(s[1] for s in samples),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", action="append", choices=("memory", "sqlite", "postgres"))
    parser.add_argument("-n", "--commands", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tasks", type=int, action="append")
    parser.add_argument("--path", action="append", choices=("miss", "hit"))
    parser.add_argument(
        "--option", action="append", default=[], help="KEY=JSON, passed to the store"
    )
    args = parser.parse_args()
    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.option)}
    print(f"{'backend':<9} {'path':<5} {'tasks':>5} {'CPU us/cmd':>11} {'cmd/s':>9}")
    for backend in args.backend or ["memory"]:
        for path in args.path or ["miss", "hit"]:
            for tasks in args.tasks or [1, 16]:
                fig = asyncio.run(measure(backend, path, tasks, args.commands, args.runs, options))
                print(
                    f"{fig.backend:<9} {fig.path:<5} {fig.tasks:>5} "
                    f"{fig.cpu_us:>11.1f} {fig.per_second:>9.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
