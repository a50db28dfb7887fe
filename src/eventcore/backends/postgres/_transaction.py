"""A projection's transaction on one pooled PostgreSQL connection, and fencing.

The read model's changes, the fence check and the checkpoint share one
transaction on one connection: they commit together or not at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventcore.errors import LeaseLost, ValidationError
from eventcore.store import Fence

if TYPE_CHECKING:
    import asyncpg
    import asyncpg.pool

    Connection = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]


class PostgresTransaction:
    """Implements :class:`~eventcore.store.ProjectionTransaction` for PostgreSQL:
    numbered parameters (``$1``, ``$2``), rows as tuples."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._open = True

    async def execute(self, sql: str, *params: object) -> None:
        await self._connection().execute(_check_sql(sql), *params)

    async def fetch(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        rows = await self._connection().fetch(_check_sql(sql), *params)
        return [tuple(row) for row in rows]

    def close(self) -> None:
        self._open = False

    def _connection(self) -> Connection:
        if not self._open:
            raise ValidationError(
                "this projection transaction is over (committed or rolled back); use it "
                "only inside its handler"
            )
        return self._conn


async def check_fence(conn: Connection, lease_fence_sql: str, fence: Fence) -> None:
    """Inside a transaction: raise LeaseLost unless the lease still has ``fence``'s
    token; the row stays share-locked until the transaction ends."""
    token = await conn.fetchval(lease_fence_sql, fence.lease)
    current = None if token is None else int(token)
    if current != fence.token:
        raise LeaseLost(fence.lease, fence.token, current)


def _check_sql(sql: object) -> str:
    if not isinstance(sql, str) or not sql.strip():
        raise ValidationError(f"sql must be a non-empty str, got {sql!r}")
    return sql
