"""The append functions take the position counter last (migration 0012).

An append locks ``log_head``'s row to number its events and keeps it locked until
it commits, so every other append waits for whatever it does after taking it.
Here a transaction holds that row while an append runs: the append must reach it
having already written its streams' new versions (a row-exclusive lock on
``streams``, which the version update takes and the earlier FOR UPDATE does not),
and must still finish correctly once the row is free.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from eventcore import StreamId
from eventcore.backends.postgres import PostgresEventStore
from eventcore.backends.postgres._writes import BatchArrays, outcome_of
from eventcore.store import AppendOutcome
from eventcore.types import AppendRequest, AppendResult, NewEvent
from tests import pg

pytestmark = pytest.mark.postgres


def _event(stream: StreamId) -> NewEvent:
    return NewEvent(stream, "Happened", b"{}")


def _batch(kind: str) -> list[AppendRequest]:
    a, b, c = StreamId("a"), StreamId("b"), StreamId("c")
    if kind == "one stream":  # append_to_stream
        return [AppendRequest.create({a: 1}, [_event(a)])]
    if kind.startswith("one command, two streams"):  # append_disjoint; append_one
        return [AppendRequest.create({a: 1, b: 1}, [_event(a), _event(b)])]
    # append_disjoint; append_independent
    return [
        AppendRequest.create({a: 1}, [_event(a)]),
        AppendRequest.create({b: 1, c: 1}, [_event(b), _event(c)]),
    ]


async def _append(store: PostgresEventStore, schema: str, kind: str) -> list[AppendOutcome]:
    """The store's own path, or (for the kinds it no longer sends there) a call of
    append_batch, which processes of an earlier eventcore still make."""
    batch = _batch(kind)
    if not kind.endswith("by append_batch"):
        return await store.append_many(batch)
    conn = await asyncpg.connect(pg.test_config(schema).dsn)
    try:
        parameters = BatchArrays.build(batch, 1 << 20).parameters()
        rows = await conn.fetch(pg.test_statements(schema).append_batch, *parameters)
    finally:
        await conn.close()
    return [outcome_of(row, request) for row, request in zip(rows, batch, strict=True)]


@pytest.mark.parametrize(
    "kind",
    [
        "one stream",
        "one command, two streams",
        "independent commands",
        "one command, two streams, by append_batch",
        "independent commands, by append_batch",
    ],
)
async def test_an_append_waits_for_the_position_counter_only_after_its_other_writes(
    pg_schema: str, kind: str
) -> None:
    async with await pg.fresh_store(pg_schema) as store:
        for name in "abc":
            stream = StreamId(name)
            await store.append(AppendRequest.create({stream: 0}, [_event(stream)]))
        holder = await asyncpg.connect(pg.test_config(pg_schema).dsn)
        try:
            holding = holder.transaction()
            await holding.start()
            await holder.execute(f'SELECT 1 FROM "{pg_schema}".log_head FOR UPDATE')
            append = asyncio.ensure_future(_append(store, pg_schema, kind))
            pid = await pg.backend_waiting_for(holder)
            modes = await holder.fetch(
                "SELECT mode FROM pg_locks WHERE pid = $1 AND relation = $2::regclass",
                pid,
                f'"{pg_schema}".streams',
            )
            await holding.rollback()
            outcomes = await append
        finally:
            await holder.close()
        assert "RowExclusiveLock" in {row["mode"] for row in modes}
        assert all(isinstance(outcome, AppendResult) for outcome in outcomes), outcomes
        events = [event async for event in store.iter_all()]
        assert [event.global_position for event in events] == list(range(1, len(events) + 1))
        assert len(events) == 3 + sum(len(request.events) for request in _batch(kind))
