"""A leader paused past its lease (SIGSTOP, then SIGCONT) cannot commit.

Runner A, in a process of its own, stops inside its transaction; runner B takes
the lease once A's lapses and projects every event; A is let go: its fenced
commit is refused (LeaseLost) and rolled back, and the read model holds every
event exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventcore.projection import ExactlyOnceRunner, RunnerOptions
from eventcore.store import ProjectionStore
from tests.ledger import Dialect, Ledger, ledger_database
from tests.test_exactly_once import append_events

REPO = Path(__file__).resolve().parent.parent
LEASE_TTL = 1.0
BOUND = 60.0  # seconds: a step that waits longer has hung


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[ProjectionStore, Dialect]]:
    async for opened in ledger_database(request.param, tmp_path):
        yield opened


async def read_line(stream: asyncio.StreamReader) -> str:
    return (await asyncio.wait_for(stream.readline(), BOUND)).decode().strip()


async def test_a_leader_paused_past_its_lease_cannot_commit(
    db: tuple[ProjectionStore, Dialect],
) -> None:
    store, dialect = db
    await append_events(store, 10)
    # SQLite: pause before the first write (a writer holding the file's write lock
    # would stop every other writer too); PostgreSQL: with a row written.
    write_first = "1" if dialect.kind == "postgres" else "0"
    leader = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.paused_leader_proc",
        dialect.kind,
        dialect.where,
        "1",
        write_first,
        str(LEASE_TTL),
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert leader.stdin is not None
    assert leader.stdout is not None
    assert leader.stderr is not None
    try:
        assert await read_line(leader.stdout) == "pending"
        os.kill(leader.pid, signal.SIGSTOP)
        leader.stdin.write(b"go\n")  # read once it runs again
        await leader.stdin.drain()

        options = RunnerOptions(poll_interval=0.05, lease_ttl=LEASE_TTL)
        async with ExactlyOnceRunner(store, Ledger(dialect), options=options, holder="B") as b:
            await asyncio.wait_for(b.caught_up(10), BOUND)
            assert await dialect.positions() == list(range(1, 11))
            os.kill(leader.pid, signal.SIGCONT)
            await append_events(store, 5)
            assert await read_line(leader.stdout) == "standby"
            await asyncio.wait_for(b.caught_up(15), BOUND)
        errors = (await asyncio.wait_for(leader.stderr.read(), BOUND)).decode()
        assert await asyncio.wait_for(leader.wait(), BOUND) == 0, errors
    finally:
        if leader.returncode is None:
            os.kill(leader.pid, signal.SIGCONT)
            leader.kill()
            await leader.wait()
    assert "lease 'ledger' changed hands" in errors  # A's commit raised LeaseLost
    assert await dialect.positions() == list(range(1, 16))
    assert await store.load_checkpoint("ledger") == 15
