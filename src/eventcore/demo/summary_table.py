"""The bank's per-account summary as a PostgreSQL table, two ways.

:class:`AccountSummaryTable` is a projection that keeps the table
``account_summary`` (deposits and withdrawals: count and total; last activity)
up to date, event by event. Each row remembers the log position of the last
event applied to it, and the upsert ignores an event at or before that position,
so an event delivered again (after a crash, a restart, a takeover) is not
counted twice.

:func:`materialized_view_sql` is the same summary as a SQL materialized view
over the store's ``events`` table, refreshed on demand with
:func:`refresh_sql`. See ``docs/read-models-in-sql.md``.

Needs the ``postgres`` extra (asyncpg).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from eventcore.codec import Codec
from eventcore.demo.bank import MoneyDeposited, bank_codec
from eventcore.demo.read_model import BANK_EVENT_TYPES
from eventcore.errors import ValidationError
from eventcore.projection import Projection
from eventcore.types import RecordedEvent

if TYPE_CHECKING:
    import asyncpg

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    account           text PRIMARY KEY,
    deposits_count    bigint NOT NULL,
    deposits_total    bigint NOT NULL,
    withdrawals_count bigint NOT NULL,
    withdrawals_total bigint NOT NULL,
    last_activity     timestamptz NOT NULL,
    last_position     bigint NOT NULL
)"""

# The WHERE makes redelivery harmless: a row already past the event keeps its
# values. Events reach a projection in log order, so "past" is "applied".
_UPSERT = """
INSERT INTO {table} AS s VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (account) DO UPDATE SET
    deposits_count    = s.deposits_count + EXCLUDED.deposits_count,
    deposits_total    = s.deposits_total + EXCLUDED.deposits_total,
    withdrawals_count = s.withdrawals_count + EXCLUDED.withdrawals_count,
    withdrawals_total = s.withdrawals_total + EXCLUDED.withdrawals_total,
    last_activity     = EXCLUDED.last_activity,
    last_position     = EXCLUDED.last_position
WHERE s.last_position < EXCLUDED.last_position"""

_VIEW = """
CREATE MATERIALIZED VIEW IF NOT EXISTS {schema}.{view} AS
SELECT stream_id AS account,
       count(*) FILTER (WHERE event_type = 'bank.MoneyDeposited') AS deposits_count,
       coalesce(sum((convert_from(payload, 'UTF8')::jsonb ->> 'amount')::bigint)
                FILTER (WHERE event_type = 'bank.MoneyDeposited'), 0) AS deposits_total,
       count(*) FILTER (WHERE event_type = 'bank.MoneyWithdrawn') AS withdrawals_count,
       coalesce(sum((convert_from(payload, 'UTF8')::jsonb ->> 'amount')::bigint)
                FILTER (WHERE event_type = 'bank.MoneyWithdrawn'), 0) AS withdrawals_total,
       (array_agg(recorded_at ORDER BY position DESC))[1] AS last_activity,
       max(position) AS last_position
FROM {schema}.events
WHERE event_type IN ('bank.MoneyDeposited', 'bank.MoneyWithdrawn')
GROUP BY stream_id;
CREATE UNIQUE INDEX IF NOT EXISTS {view}_account ON {schema}.{view} (account)"""

_REFRESH = "REFRESH MATERIALIZED VIEW CONCURRENTLY {schema}.{view}"


def _identifier(value: str, what: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise ValidationError(
            f"{what} must be a lowercase SQL identifier (letters, digits, _), got {value!r}"
        )
    return value


def materialized_view_sql(schema: str = "public", view: str = "account_summary_view") -> str:
    """The statements creating the view ``schema.view`` over ``schema.events`` (the
    store's schema) and the unique index that lets it refresh concurrently."""
    return _VIEW.format(schema=_identifier(schema, "schema"), view=_identifier(view, "view"))


def refresh_sql(schema: str = "public", view: str = "account_summary_view") -> str:
    """Recompute the view; CONCURRENTLY (readers are not blocked meanwhile) needs
    the unique index :func:`materialized_view_sql` creates."""
    return _REFRESH.format(schema=_identifier(schema, "schema"), view=_identifier(view, "view"))


def _row(event: RecordedEvent, decoded: Any) -> tuple[object, ...]:
    deposit = isinstance(decoded, MoneyDeposited)
    amount = int(decoded.amount)
    return (
        event.stream_id,
        int(deposit),
        amount if deposit else 0,
        int(not deposit),
        0 if deposit else amount,
        event.recorded_at,
        event.global_position,
    )


class AccountSummaryTable(Projection):
    """Keeps ``schema.table`` (default ``public.account_summary``) through
    ``pool``: one row per account. ``await create()`` makes the table."""

    name = "account-summary"
    event_types = BANK_EVENT_TYPES

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        schema: str = "public",
        table: str = "account_summary",
        codec: Codec = bank_codec,
    ) -> None:
        self._pool = pool
        self._codec = codec
        self.table = f"{_identifier(schema, 'schema')}.{_identifier(table, 'table')}"
        self._upsert = _UPSERT.format(table=self.table)

    async def create(self) -> None:
        await self._pool.execute(_TABLE.format(table=self.table))

    async def handle(self, event: RecordedEvent) -> None:
        await self._pool.execute(self._upsert, *_row(event, self._codec.decode(event)))

    async def handle_batch(self, events: Sequence[RecordedEvent]) -> None:
        # One transaction per page: far fewer round trips than one per event.
        rows = [_row(event, self._codec.decode(event)) for event in events]
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(self._upsert, rows)

    async def reset(self) -> None:
        await self._pool.execute(f"TRUNCATE {self.table}")
