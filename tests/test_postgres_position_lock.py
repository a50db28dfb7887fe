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
from eventcore.types import AppendRequest, AppendResult, NewEvent
from tests import pg

pytestmark = pytest.mark.postgres


def _event(stream: StreamId) -> NewEvent:
    return NewEvent(stream, "Happened", b"{}")


def _batch(kind: str) -> list[AppendRequest]:
    a, b, c = StreamId("a"), StreamId("b"), StreamId("c")
    if kind == "one stream":  # append_to_stream
        return [AppendRequest.create({a: 1}, [_event(a)])]
    if kind == "one command, two streams":  # append_batch -> append_one
        return [AppendRequest.create({a: 1, b: 1}, [_event(a), _event(b)])]
    # append_batch -> append_independent
    return [
        AppendRequest.create({a: 1}, [_event(a)]),
        AppendRequest.create({b: 1, c: 1}, [_event(b), _event(c)]),
    ]


@pytest.mark.parametrize("kind", ["one stream", "one command, two streams", "independent commands"])
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
            append = asyncio.ensure_future(store.append_many(_batch(kind)))
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
