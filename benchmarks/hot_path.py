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
    python benchmarks/hot_path.py --url postgresql://postgres@127.0.0.1:5432/test \\
        --tasks 64 --path hit -n 3200

``--profile`` runs once under cProfile instead and splits the CPU by whose code
spent it: eventcore's own (``src/eventcore`` but for the demo domain), the demo
domain's (the commands' ``handle`` and ``apply``), the driver (asyncpg), the event
loop (asyncio) and the rest. A C function (``dict.get``, a msgspec decode) counts
for the code that called it, so "eventcore" includes the builtins eventcore
calls. cProfile slows Python calls down (about 2x), so read it as shares, not
as microseconds.

``--instructions`` counts instead of timing, robust on a shared machine: the
chosen run goes to a child process under ``valgrind --tool=callgrind``, once
with ``-n`` commands and once with twice as many; the difference in
instructions executed, divided by ``-n``, is the count per command (start-up,
imports and the cache's warm-up cancel out).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from _callgrind import instructions as instructions_of

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
    backend: str,
    path: str,
    tasks: int,
    total: int,
    run: int,
    options: dict[str, object],
    profiler: cProfile.Profile | None = None,
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
        if profiler is not None:
            profiler.enable()
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(_worker(store, cache, accounts, per_task) for accounts in plan))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if profiler is not None:
            profiler.disable()
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


def _owner(filename: str) -> str:
    """Whose code a profiled function is, by its file."""
    if "/eventcore/demo/" in filename:
        return "demo domain (handle, apply)"
    if "/eventcore/" in filename:
        return "eventcore"
    if "/asyncpg/" in filename:
        return "asyncpg (driver)"
    if "/asyncio/" in filename or "uvloop" in filename or filename.endswith("selectors.py"):
        return "asyncio (event loop)"
    return "other"


def _is_helper(filename: str) -> bool:
    """Builtins and frozen stdlib helpers (ABC checks): counted for their callers."""
    return filename == "~" or filename.startswith("<frozen")


def _split_by_owner(stats: pstats.Stats) -> Counter[str]:
    """Own time per owner; a helper's time is shared among the owners of the code
    that called it, in proportion to the calls each made."""
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    shares: dict[Any, Counter[str]] = {}

    def owners_of(key: Any, seen: frozenset[Any] = frozenset()) -> Counter[str]:
        if key in shares:
            return shares[key]
        if not _is_helper(key[0]):
            return Counter({_owner(key[0]): 1.0})
        mixed: Counter[str] = Counter()
        callers = table[key][4] if key in table else {}
        calls = sum(times[1] for caller, times in callers.items() if caller not in seen) or 1
        for caller, times in callers.items():
            if caller not in seen:
                for owner, share in owners_of(caller, seen | {key}).items():
                    mixed[owner] += share * times[1] / calls
        shares[key] = mixed or Counter({"other": 1.0})
        return shares[key]

    spent: Counter[str] = Counter()
    for key, (_cc, _nc, own, _cum, _callers) in table.items():
        for owner, share in owners_of(key).items():
            spent[owner] += own * share
    return spent


def profile(backend: str, path: str, tasks: int, total: int, options: dict[str, object]) -> None:
    """One run under cProfile: CPU shares by owner, then the top functions."""
    profiler = cProfile.Profile(time.process_time)  # CPU, not time spent waiting
    asyncio.run(_one_run(backend, path, tasks, total, 0, options, profiler))
    stats = pstats.Stats(profiler)
    owners = _split_by_owner(stats)
    spent = sum(owners.values())
    print(f"{backend} {path}, {tasks} task(s), {total} commands (the measured part only)")
    for owner, seconds in owners.most_common():
        print(f"  {seconds / spent:6.1%}  {owner}")
    stats.sort_stats("tottime").print_stats(25)


def instructions(args: argparse.Namespace, backend: str, path: str, tasks: int) -> None:
    """Instructions per command under callgrind (a run of 2N minus a run of N)."""
    sizes = (args.commands, 2 * args.commands)
    counts = [_count(args, backend, path, tasks, n) for n in sizes]
    # A run makes n // tasks commands per task: divide by what the two runs made.
    made = [n // tasks * tasks for n in sizes]
    per_command = (counts[1] - counts[0]) / (made[1] - made[0])
    print(f"{backend:<9} {path:<5} {tasks:>5} {per_command:>14,.0f} instructions/cmd")


def _count(args: argparse.Namespace, backend: str, path: str, tasks: int, n: int) -> int:
    child = [sys.executable, __file__, "--child", "--backend", backend, "--path", path]
    child += ["--tasks", str(tasks), "-n", str(n)]
    child += [f"--option={o}" for o in args.option]
    return instructions_of(child)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", action="append", choices=("memory", "sqlite", "postgres"))
    parser.add_argument("--url", help="a postgresql:// URL: the postgres backend on that server")
    parser.add_argument("--profile", action="store_true", help="one run under cProfile")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions under callgrind"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("-n", "--commands", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tasks", type=int, action="append")
    parser.add_argument("--path", action="append", choices=("miss", "hit"))
    parser.add_argument(
        "--option", action="append", default=[], help="KEY=JSON, passed to the store"
    )
    args = parser.parse_args()
    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.option)}
    backends = args.backend or ["memory"]
    if args.url:
        backends, options = ["postgres"], {**options, "dsn": args.url}
    if args.child:  # one run under callgrind, for --instructions
        asyncio.run(_one_run(backends[0], args.path[0], args.tasks[0], args.commands, 0, options))
        return
    if args.url:
        args.option.append(f"dsn={json.dumps(args.url)}")  # passed on to --instructions' child
    if not (args.profile or args.instructions):
        print(f"{'backend':<9} {'path':<5} {'tasks':>5} {'CPU us/cmd':>11} {'cmd/s':>9}")
    for backend in backends:
        for path in args.path or ["miss", "hit"]:
            for tasks in args.tasks or [1, 16]:
                if args.profile:
                    profile(backend, path, tasks, args.commands, options)
                    continue
                if args.instructions:
                    instructions(args, backend, path, tasks)
                    continue
                fig = asyncio.run(measure(backend, path, tasks, args.commands, args.runs, options))
                print(
                    f"{fig.backend:<9} {fig.path:<5} {fig.tasks:>5} "
                    f"{fig.cpu_us:>11.1f} {fig.per_second:>9.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
