"""Big batches by COPY: the events of a batch of at least ``copy_threshold``
events travel by binary COPY instead of as array parameters.

Within one transaction the rows are streamed into the session's staging table,
then ``append_staged`` (``migrations/0006_copy_appends.sql``) checks, numbers and
inserts them with one set-based ``INSERT ... SELECT``, exactly as ``append_batch``
does with arrays. The server still numbers only the rows it inserts itself. The
COPY runs before any lock is taken; the position counter's row stays locked one
round trip longer than on the array path, until the client's COMMIT arrives.
See docs/adr/0008-copy-appends.md.

The staging table is a temporary table of the session, created on first use and
kept (``ON COMMIT DELETE ROWS`` empties it at every commit, in place, without the
catalog churn of a table created and dropped per batch). ``CREATE ... IF NOT
EXISTS`` runs in every COPY transaction, so the table exists on whichever server
session the transaction lands: behind a transaction-pooling PgBouncer too.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from eventcore.backends.postgres._sql import Statements
from eventcore.backends.postgres._writes import BatchArrays

if TYPE_CHECKING:
    import asyncpg
    import asyncpg.pool

    Connection = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]

STAGING_TABLE: Final = "eventcore_staged_events"
_STAGING_COLUMNS: Final = (
    "ord",
    "cmd",
    "event_id",
    "stream_id",
    "event_type",
    "payload",
    "metadata",
)
# NOT NULL: COPY refuses a missing value before append_staged sees the rows.
_CREATE_STAGING: Final = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING_TABLE} ("
    "ord int NOT NULL, cmd int NOT NULL, event_id uuid NOT NULL, stream_id text NOT NULL, "
    "event_type text NOT NULL, payload bytea NOT NULL, metadata bytea NOT NULL"
    ") ON COMMIT DELETE ROWS"
)


def uses_copy(event_count: int, copy_threshold: int | None) -> bool:
    """Whether a batch of ``event_count`` events goes by COPY."""
    return copy_threshold is not None and event_count >= copy_threshold


async def append_rows(
    conn: Connection, sql: Statements, arrays: BatchArrays, copy_threshold: int | None
) -> list[Any]:
    """The ``append_outcome`` rows of one batch, one per command in order, by COPY
    when the batch is big enough, else by one call of ``append_to_stream`` (one
    command on one stream), of ``append_streams`` (commands on one stream each,
    none shared), of ``append_disjoint`` (commands on any streams, none shared) or
    of ``append_batch``."""
    if not uses_copy(len(arrays.event_ids), copy_threshold):
        one_stream = arrays.one_stream_parameters()
        if one_stream is not None:
            return await conn.fetch(sql.append_to_stream, *one_stream)
        streams = arrays.streams_parameters()
        if streams is not None:
            return await conn.fetch(sql.append_streams, *streams)
        disjoint = arrays.disjoint_parameters()
        if disjoint is not None:
            return await conn.fetch(sql.append_disjoint, *disjoint)
        return await conn.fetch(sql.append_batch, *arrays.parameters())
    async with conn.transaction():
        await conn.execute(_CREATE_STAGING)
        await conn.copy_records_to_table(
            STAGING_TABLE, schema_name="pg_temp", columns=_STAGING_COLUMNS, records=_rows(arrays)
        )
        return await conn.fetch(
            sql.append_staged,
            arrays.expect_end,
            arrays.expect_cmd,
            arrays.expect_streams,
            arrays.expect_versions,
            arrays.event_end,
        )


def _rows(arrays: BatchArrays) -> Iterator[tuple[Any, ...]]:
    # The columns BatchArrays.build made for the array path, zipped (in C) into
    # rows: both paths write the very same encoded values.
    return zip(
        itertools.count(1),
        arrays.event_cmd,
        arrays.event_ids,
        arrays.event_streams,
        arrays.event_types,
        arrays.payloads,
        arrays.metadata,
        strict=False,  # count() is endless; the six columns have equal lengths
    )
