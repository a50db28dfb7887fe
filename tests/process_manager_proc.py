"""A process running the order saga, for the crash test in test_process_manager.py.

Usage: python process_manager_proc.py DATABASE_URL MODE [COMMANDS]

``crash``: run the saga with checkpoints put off (a huge interval and count), and
once COMMANDS commands have committed print ``executed COMMANDS`` and freeze the
event loop, so the runner cannot save a checkpoint before the test kills the
process (SIGKILL). The window between "commands executed" and "checkpoint
saved" is thus held open for as long as the test needs.

``finish``: run the saga until it has caught up with a head that no longer moves
(its own commands append events it reacts to), then print one JSON line:
``{"applied": n, "already_applied": m, "refused": r}`` counted from this run's
command reports.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from eventcore import Application, Observer
from eventcore.observe import CommandReport
from eventcore.projection import RunnerOptions, process_manager_runner
from tests.shop import OrderSaga, shop_codec

NO_CHECKPOINT = RunnerOptions(
    checkpoint_every=10**9, checkpoint_interval=3600.0, poll_interval=0.05, lease_ttl=2.0
)


class FreezeAfter(Observer):
    def __init__(self, commands: int) -> None:
        self.left = commands

    def command_executed(self, report: CommandReport) -> None:
        if report.outcome != "success":
            return
        self.left -= 1
        if self.left == 0:
            print(f"executed {report.command_type}", flush=True)
            time.sleep(3600)  # blocks the loop: no checkpoint, no lease renewal


class Tally(Observer):
    def __init__(self) -> None:
        self.counts = {"applied": 0, "already_applied": 0, "refused": 0}

    def command_executed(self, report: CommandReport) -> None:
        if report.command_type == "_RecordRefusal":
            self.counts["refused"] += 1
        elif report.outcome == "success":
            self.counts["applied" if report.events else "already_applied"] += 1


async def main(url: str, mode: str, commands: int) -> None:
    observer: Observer = FreezeAfter(commands) if mode == "crash" else Tally()
    async with await Application.open(url, codec=shop_codec, observers=[observer]) as app:
        runner = process_manager_runner(app, OrderSaga(), options=NO_CHECKPOINT)
        async with runner:
            while True:
                head = await app.store.head_position()
                await runner.caught_up(head)
                if await app.store.head_position() == head:
                    break
    if isinstance(observer, Tally):
        print(json.dumps(observer.counts), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0))
