"""The bank's per-account summary in PostgreSQL, end to end against the real server:
the projection's table (idempotent under restart and redelivery) and the
materialized view over the events table, which must agree with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from eventcore.application import Application
from eventcore.backends.postgres import PostgresEventStore
from eventcore.demo.bank import Deposit, MoneyDeposited, Transfer, bank_codec
from eventcore.demo.summary_table import (
    AccountSummaryTable,
    materialized_view_sql,
    refresh_sql,
)
from eventcore.errors import ValidationError
from eventcore.projection import ProjectionRunner, RunnerOptions, rebuild_projection
from tests import pg

pytestmark = pytest.mark.postgres

FAST = RunnerOptions(poll_interval=0.02, page_size=4)  # several pages per run
COLUMNS = (
    "account, deposits_count, deposits_total, withdrawals_count, withdrawals_total, "
    "last_activity, last_position"
)


@dataclass(slots=True)
class Bank:
    schema: str
    store: PostgresEventStore
    app: Application
    pool: asyncpg.Pool
    table: AccountSummaryTable

    async def rows(self, relation: str) -> list[tuple[object, ...]]:
        records = await self.pool.fetch(f"SELECT {COLUMNS} FROM {relation} ORDER BY account")
        return [tuple(record) for record in records]

    async def expected(self) -> list[tuple[object, ...]]:
        """The summary folded in Python from the whole log."""
        rows: dict[str, list[object]] = {}
        async for event in self.store.iter_all():
            row = rows.setdefault(event.stream_id, [event.stream_id, 0, 0, 0, 0, None, 0])
            decoded = bank_codec.decode(event)
            at = 1 if isinstance(decoded, MoneyDeposited) else 3
            row[at] = int(row[at]) + 1  # type: ignore[call-overload]
            row[at + 1] = int(row[at + 1]) + decoded.amount  # type: ignore[call-overload]
            row[5], row[6] = event.recorded_at, event.global_position
        return [tuple(rows[account]) for account in sorted(rows)]

    async def run_once(self, projection: AccountSummaryTable | None = None) -> None:
        async with ProjectionRunner(self.store, projection or self.table, options=FAST) as runner:
            await runner.caught_up()


@pytest.fixture
async def bank(pg_schema: str) -> AsyncIterator[Bank]:
    store = await pg.fresh_store(pg_schema)
    pool = await asyncpg.create_pool(pg.PG_URL, min_size=1, max_size=2)
    try:
        table = AccountSummaryTable(pool, schema=pg_schema)
        await table.create()
        yield Bank(pg_schema, store, Application(store, codec=bank_codec), pool, table)
    finally:
        await pool.close()
        await store.close()


async def _traffic(app: Application, round_: str) -> None:
    for account in ("alice", "bob", "carol"):
        await app.execute(Deposit(account, 100))
    await app.execute(Transfer("alice", "bob", 30, f"{round_}-1"))
    await app.execute(Transfer("bob", "carol", 55, f"{round_}-2"))
    await app.execute(Transfer("carol", "alice", 5, f"{round_}-3"))


async def test_the_table_follows_the_log_as_more_events_arrive(bank: Bank) -> None:
    await _traffic(bank.app, "first")
    async with ProjectionRunner(bank.store, bank.table, options=FAST) as runner:
        await runner.caught_up()
        assert await bank.rows(bank.table.table) == await bank.expected()

        await _traffic(bank.app, "second")
        await runner.caught_up()
        rows = await bank.rows(bank.table.table)

    assert rows == await bank.expected()
    alice = rows[0]
    assert alice[:5] == ("alice", 4, 210, 2, 60)  # 2 x 100 and 2 x 5 in, 2 x 30 out
    assert alice[6] == await bank.store.head_position()  # carol -> alice comes last


async def test_stop_and_restart_do_not_count_twice(bank: Bank) -> None:
    await _traffic(bank.app, "first")
    await bank.run_once()
    await _traffic(bank.app, "second")

    await bank.run_once()  # a new runner: from the checkpoint on

    assert await bank.rows(bank.table.table) == await bank.expected()


async def test_redelivery_of_the_whole_log_changes_nothing(bank: Bank) -> None:
    await _traffic(bank.app, "first")
    await bank.run_once()
    before = await bank.rows(bank.table.table)

    # A crash before any checkpoint: everything is delivered again, one by one
    # and in pages.
    await bank.store.save_checkpoint(bank.table.name, 0)
    await bank.run_once()
    events = [event async for event in bank.store.iter_all()]
    for event in events:
        await bank.table.handle(event)
    await bank.table.handle_batch(events)

    assert await bank.rows(bank.table.table) == before == await bank.expected()


async def test_rebuild_empties_the_table_and_replays_the_log(bank: Bank) -> None:
    await _traffic(bank.app, "first")
    await bank.pool.execute(
        f"INSERT INTO {bank.table.table} VALUES ('ghost', 1, 1, 0, 0, now(), 999)"
    )

    await rebuild_projection(bank.store, bank.table, options=FAST)

    assert await bank.rows(bank.table.table) == await bank.expected()


async def test_the_materialized_view_agrees_with_the_projection_table(bank: Bank) -> None:
    view = f"{bank.schema}.account_summary_view"
    await bank.pool.execute(materialized_view_sql(bank.schema))  # empty log: no rows yet
    assert await bank.rows(view) == []

    for round_ in ("first", "second"):
        await _traffic(bank.app, round_)
        await bank.run_once()
        await bank.pool.execute(refresh_sql(bank.schema))

        assert await bank.rows(view) == await bank.rows(bank.table.table)
    assert await bank.rows(view) == await bank.expected()


async def test_creating_the_view_twice_is_harmless(bank: Bank) -> None:
    await bank.pool.execute(materialized_view_sql(bank.schema, "twice"))
    await bank.pool.execute(materialized_view_sql(bank.schema, "twice"))
    await bank.pool.execute(refresh_sql(bank.schema, "twice"))


@pytest.mark.parametrize("name", ["Upper", "semi;colon", "", "x" * 64, "1st"])
def test_a_name_that_is_not_a_plain_identifier_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="SQL identifier"):
        materialized_view_sql("public", name)


def test_the_docs_show_the_sql_the_package_runs() -> None:
    from pathlib import Path

    from eventcore.demo import summary_table

    page = Path(__file__).resolve().parent.parent / "docs" / "read-models-in-sql.md"
    text = " ".join(page.read_text().split())
    for sql in (
        materialized_view_sql("public"),
        refresh_sql("public"),
        summary_table._UPSERT.format(table="account_summary"),
        summary_table._TABLE.format(table="account_summary").replace(" IF NOT EXISTS", ""),
    ):
        assert " ".join(sql.split()) in text
