"""How much of a cached command on the in-memory store goes to the garbage collector.

Runs rounds of single-stream ``Deposit`` commands (64 tasks, a warm
:class:`~eventcore.StateCache`, random accounts) against one
:class:`~eventcore.backends.memory.InMemoryEventStore` that grows round by round,
as the bench's memory scenarios do. For each round it prints the process CPU per
command and, from ``gc.callbacks``, the collections of each generation and the
time they took per command. With ``--no-gc`` the collector is disabled for the
run: the difference is what the collector costs.

    python benchmarks/memory_store_gc.py                 # 8 rounds of 74,000
    python benchmarks/memory_store_gc.py --rounds 4 --no-gc
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from eventcore.backends.memory import InMemoryEventStore
from eventcore.cache import StateCache
from eventcore.demo.bank import Deposit, bank_codec
from eventcore.execute import execute

TASKS = 64


class CollectorClock:
    """Collections per generation, and the seconds they took, from gc.callbacks."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            generation = info["generation"]
            self.seconds[generation] += time.perf_counter() - self._started
            self.collections[generation] += 1

    def reset(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]


async def run(commands: int, rounds: int, accounts: int) -> list[float]:
    store = InMemoryEventStore()
    cache = StateCache()
    names = [f"account-{n}" for n in range(accounts)]
    rng = random.Random(1)
    for name in names:  # open every account: the cache is warm from here on
        await execute(store, Deposit(name, 1), codec=bank_codec, cache=cache)

    async def worker(count: int) -> None:
        for _ in range(count):
            await execute(store, Deposit(rng.choice(names), 1), codec=bank_codec, cache=cache)

    clock = CollectorClock()
    gc.callbacks.append(clock)
    per_command = []
    try:
        for number in range(1, rounds + 1):
            clock.reset()
            started = time.process_time()
            await asyncio.gather(*(worker(commands // TASKS) for _ in range(TASKS)))
            done = commands // TASKS * TASKS
            cpu_us = (time.process_time() - started) / done * 1e6
            per_command.append(cpu_us)
            collected = ", ".join(
                f"gen{g} {clock.collections[g]} ({clock.seconds[g] / done * 1e6:.2f} us/cmd)"
                for g in range(3)
            )
            print(
                f"round {number}: {cpu_us:5.1f} us CPU/command, store "
                f"{len(names) + number * done:,} events; collections: {collected}"
            )
    finally:
        gc.callbacks.remove(clock)
    return per_command


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--commands", type=_at_least(TASKS), default=74_000, help="per round")
    parser.add_argument("--rounds", type=_at_least(1), default=8)
    parser.add_argument("--accounts", type=_at_least(1), default=10_000)
    parser.add_argument("--no-gc", action="store_true", help="disable the collector")
    args = parser.parse_args()
    if args.no_gc:
        gc.disable()
    per_command = asyncio.run(run(args.commands, args.rounds, args.accounts))
    collector = "off" if args.no_gc else "on"
    print(f"median {statistics.median(per_command):.1f} us CPU/command (collector {collector})")


if __name__ == "__main__":
    main()
