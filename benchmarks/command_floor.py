"""The floor under a cached command: its essential work, written out straight.

What a cached single-stream ``Deposit`` on the in-memory store cannot do without,
with the library's own building blocks but none of its machinery: make the
command, look its cached state up, ``handle`` it, encode the event and decode it
back (the codec's round-trip check), make an event id and a correlation id,
check the stream's version, write the event's ten column values and its id,
fold the event onto the state and cache the result. No argument checks, turns,
plan, steps, store request or result objects, and no validation of what
``handle`` returned.

It is a yardstick for :func:`eventcore.execute` on a warm cache (``python
benchmarks/hot_path.py --path hit``), not something to use: the difference
between the two is what the library's guarantees and structure cost a command.

    python benchmarks/command_floor.py                  # CPU per command, medians
    python benchmarks/command_floor.py --instructions   # under callgrind

``--instructions`` runs the script twice under ``valgrind --tool=callgrind``,
with ``-n`` commands and with twice as many, and divides the difference by
``-n`` (start-up and imports cancel out), as ``hot_path.py --instructions`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime
from typing import Any

from _callgrind import instructions

from eventcore.demo.bank import Balances, Deposit, MoneyDeposited, bank_codec
from eventcore.types import new_correlation_id, new_event_id, trusted_stream_id

TASKS = 64
ACCOUNTS_PER_TASK = 64


class Floor:
    """The state cache, the stream versions and the log's columns, as plain data."""

    def __init__(self) -> None:
        self.states: dict[tuple[type, str], tuple[Balances, int]] = {}
        self.positions: dict[str, list[int]] = {}
        self.columns: list[list[Any]] = [[] for _ in range(10)]
        self.ids: dict[int, int] = {}
        self.registration = bank_codec._by_class[MoneyDeposited]

    def open(self, account: str) -> None:
        self.states[(Deposit, account)] = (Balances(), 0)
        self.positions[account] = []

    async def deposit(self, account: str) -> tuple[int, dict[str, int]]:
        command = Deposit(account, 1)
        key = (Deposit, account)
        state, version = self.states[key]
        [(stream, event)] = command.handle(state)
        payload = self.registration.encode(event)
        read_back = self.registration.decode(payload)
        event_id = new_event_id().int
        correlation = new_correlation_id()
        positions = self.positions[stream]
        if len(positions) != version:
            raise RuntimeError(f"version conflict on {stream!r}")
        position = len(self.ids) + 1
        positions.append(position)
        row = (event_id, 0, version + 1, "bank.MoneyDeposited", payload, correlation)
        for column, value in zip(
            self.columns, (*row, None, None, datetime.now(UTC), None), strict=True
        ):
            column.append(value)
        self.ids[event_id] = position
        folded = command.apply(state, trusted_stream_id(stream), read_back)
        self.states[key] = (folded, version + 1)
        return position, {stream: version + 1}


async def _worker(floor: Floor, accounts: list[str], count: int) -> None:
    for i in range(count):
        await floor.deposit(accounts[i % len(accounts)])


async def one_run(commands: int) -> float:
    """CPU microseconds per command of ``commands`` deposits over 64 tasks."""
    floor = Floor()
    plan = [[f"acc-{t}-{a}" for a in range(ACCOUNTS_PER_TASK)] for t in range(TASKS)]
    for accounts in plan:
        for account in accounts:
            floor.open(account)
    per_task = max(1, commands // TASKS)
    cpu = time.process_time()
    await asyncio.gather(*(_worker(floor, accounts, per_task) for accounts in plan))
    return (time.process_time() - cpu) / (per_task * TASKS) * 1e6


def _count(commands: int) -> int:
    return instructions([sys.executable, __file__, "--child", "-n", str(commands)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--commands", type=int, default=64_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.commands < TASKS or args.runs < 1:
        parser.error(f"-n must be at least {TASKS} (one command per task) and --runs at least 1")
    if args.child:
        asyncio.run(one_run(args.commands))
        return
    if args.instructions:
        small, large = _count(args.commands), _count(2 * args.commands)
        # A run makes n // TASKS commands per task: divide by what the two runs made.
        made = (2 * args.commands // TASKS - args.commands // TASKS) * TASKS
        print(f"floor: {(large - small) / made:,.0f} instructions per command")
        return
    runs = [asyncio.run(one_run(args.commands)) for _ in range(args.runs)]
    print(f"floor: {statistics.median(runs):.1f} CPU us per command (median of {args.runs})")


if __name__ == "__main__":
    main()
