"""Cache coherence with another process writing to the same store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from eventcore import SQLiteEventStore, StateCache, execute
from eventcore.demo.bank import Deposit, Transfer, bank_codec
from eventcore.store import EventStore
from tests import pg

REPO = Path(__file__).resolve().parent.parent

# Another process deposits into an account: its write bypasses this process's cache.
OTHER_PROCESS = """
import asyncio, sys
from eventcore import execute
from eventcore.demo.bank import Deposit, bank_codec

async def main(kind, where):
    if kind == "sqlite":
        from eventcore import SQLiteEventStore
        store = await SQLiteEventStore.open(where)
    else:
        from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
        dsn, schema = where.split("|")
        store = await PostgresEventStore.open(PostgresConfig.development(dsn, schema=schema))
    async with store:
        await execute(store, Deposit("a", 1000), codec=bank_codec)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _deposit_from_another_process(kind: str, where: str) -> None:
    subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS, kind, where], cwd=REPO, check=True, timeout=60
    )


async def _balance(store: EventStore, account: str) -> int:
    total = 0
    for record in await store.read_stream(account):
        event = bank_codec.decode(record)
        total += event.amount if type(event).__name__ == "MoneyDeposited" else -event.amount
    return total


async def _check_coherence(store: EventStore, kind: str, where: str) -> None:
    cache = StateCache()
    await execute(store, Deposit("a", 100), codec=bank_codec, cache=cache)
    await execute(store, Transfer("a", "b", 60), codec=bank_codec, cache=cache)
    _deposit_from_another_process(kind, where)
    # The cache believes 40 is left; another process made it 1,040. The transfer
    # must neither be refused nor be written on top of a stale version.
    result = await execute(store, Transfer("a", "b", 500), codec=bank_codec, cache=cache)
    assert result.attempts == 2
    assert await _balance(store, "a") == 540
    assert [e.stream_version for e in await store.read_stream("a")] == [1, 2, 3, 4]


async def test_a_cached_sqlite_command_sees_another_processes_write(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    async with await SQLiteEventStore.open(path) as store:
        await _check_coherence(store, "sqlite", str(path))


@pytest.mark.postgres
async def test_a_cached_postgres_command_sees_another_processes_write(pg_schema: str) -> None:
    async with await pg.fresh_store(pg_schema) as store:
        await _check_coherence(store, "postgres", f"{pg.PG_URL}|{pg_schema}")
