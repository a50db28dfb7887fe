"""An exactly-once runner that pauses inside its transaction, for
test_paused_leader.py.

Usage: python -m tests.paused_leader_proc KIND WHERE PAUSE_AT WRITE_FIRST LEASE_TTL

KIND is ``sqlite`` (WHERE: the file) or ``postgres`` (WHERE: the schema). The
runner (holder ``A``) runs the ledger projection; when it handles the event at
position PAUSE_AT it prints ``pending`` and blocks reading a line from stdin (the
test stops the process meanwhile), after writing that event's row if WRITE_FIRST
is ``1``. Once it has gone on and stood by again (its commit refused), it prints
``standby`` and stops. Warnings go to stderr.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from eventcore.backends.postgres import PostgresEventStore
from eventcore.backends.sqlite import SQLiteEventStore
from eventcore.projection import ExactlyOnceRunner, ProjectionState, RunnerOptions
from eventcore.store import ProjectionTransaction
from eventcore.types import RecordedEvent
from tests import pg
from tests.ledger import Dialect, Ledger


class PausingLedger(Ledger):
    def __init__(self, dialect: Dialect, pause_at: int, write_first: bool) -> None:
        super().__init__(dialect)
        self.pause_at = pause_at
        self.write_first = write_first
        self.resumed = asyncio.Event()

    async def handle(self, event: RecordedEvent, tx: ProjectionTransaction) -> None:
        pausing = event.global_position == self.pause_at and not self.resumed.is_set()
        if pausing and self.write_first:
            await super().handle(event, tx)
        if pausing:
            print("pending", flush=True)
            sys.stdin.readline()  # blocks the whole loop: no renewal, as in a real pause
            self.resumed.set()
        if not (pausing and self.write_first):
            await super().handle(event, tx)


async def open_store(kind: str, where: str) -> SQLiteEventStore | PostgresEventStore:
    if kind == "sqlite":
        return await SQLiteEventStore.open(where)
    return await pg.fresh_store(where)


async def main(kind: str, where: str, pause_at: int, write_first: bool, ttl: float) -> None:
    store = await open_store(kind, where)
    projection = PausingLedger(Dialect(kind, where), pause_at, write_first)
    options = RunnerOptions(page_size=100, poll_interval=0.05, lease_ttl=ttl)
    runner = ExactlyOnceRunner(store, projection, options=options, holder="A")
    try:
        runner.start()
        await projection.resumed.wait()
        await runner.wait_for_state(ProjectionState.STANDBY, ProjectionState.FAILED)
        print(runner.state.value, flush=True)
        await runner.stop()
    finally:
        await store.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    kind, where, pause_at, write_first, ttl = sys.argv[1:]
    asyncio.run(main(kind, where, int(pause_at), write_first == "1", float(ttl)))
