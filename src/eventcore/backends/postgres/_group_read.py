"""Group reads: concurrent ``read_streams`` calls share one query.

The read before a command's append is a round trip of its own; at high concurrency
those round trips (and the pool's hand-offs) cost more than the rows. As with
group commit, while a read is in flight the reads that arrive queue up, and the
next query serves all of them: one statement, so each caller still gets a
mutually consistent snapshot of its streams. Each caller's streams are numbered
slots in the query, so two callers may ask for the same stream from different
versions.

A read made while none is in flight is sent at once from its caller's own task,
by the store's plain read (one stream: its single-stream query), so a lone
reader costs what it would without grouping. Queued reads are sent by a task per
query, up to ``max_in_flight`` queries at once (the server reads in parallel).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from eventcore.backends._group_commit import fail_callers
from eventcore.types import RecordedEvent, StreamId

# (stream ids, first versions, limit) -> events per slot, in slot order
FetchSlots: TypeAlias = Callable[
    [Sequence[str], list[int], int | None], Awaitable[dict[int, list[RecordedEvent]]]
]
# (stream ids, first versions, limit) -> events per stream: the store's plain read
ReadNow: TypeAlias = Callable[
    [list[StreamId], list[int], int | None], Awaitable[dict[str, list[RecordedEvent]]]
]


@dataclass(slots=True)
class _Waiting:
    streams: Sequence[str]
    firsts: Sequence[int]
    limit: int | None
    future: asyncio.Future[dict[str, list[RecordedEvent]]]


class GroupReader:
    """Up to ``max_in_flight`` reads run at once; reads that arrive while any is
    in flight are queued and share the next query."""

    def __init__(
        self,
        fetch: FetchSlots,
        read_now: ReadNow,
        max_streams: int = 2000,
        max_in_flight: int = 4,
    ):
        self._fetch = fetch
        self._read_now = read_now
        self._max_streams = max_streams
        self._max_in_flight = max_in_flight
        self._waiting: list[_Waiting] = []
        self._in_flight = 0  # reads sent alone and queries under way
        self._send_scheduled = False
        self._serving: set[asyncio.Task[None]] = set()
        self.queries = 0  # how many shared queries were sent (for tests and metrics)
        self.alone = 0  # how many reads were sent alone, from their callers' tasks

    async def read(
        self, streams: list[StreamId], firsts: list[int], limit: int | None
    ) -> dict[str, list[RecordedEvent]]:
        if not self._in_flight and not self._waiting:
            self._in_flight += 1
            self.alone += 1
            try:
                return await self._read_now(streams, firsts, limit)
            finally:
                self._in_flight -= 1
                self._schedule_send()
        waiting = _Waiting(streams, firsts, limit, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        self._schedule_send()
        return await waiting.future

    def _schedule_send(self) -> None:
        """Send what is queued at the end of this turn of the event loop, once the
        readers already running have queued too, if a query may go."""
        if self._waiting and not self._send_scheduled and self._in_flight < self._max_in_flight:
            self._send_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_waiting)

    def _send_waiting(self) -> None:
        self._send_scheduled = False
        loop = asyncio.get_running_loop()
        while self._waiting and self._in_flight < self._max_in_flight:
            batch = self._take_batch()
            if not batch:
                break  # every queued caller had been cancelled
            self._in_flight += 1
            task = loop.create_task(self._serve_and_free(batch))
            self._serving.add(task)  # keep a reference until it is done
            task.add_done_callback(self._serving.discard)

    async def _serve_and_free(self, batch: list[_Waiting]) -> None:
        try:
            await self._serve(batch)
        finally:
            self._in_flight -= 1
            self._schedule_send()

    def _take_batch(self) -> list[_Waiting]:
        """The oldest read, and every queued read with the same limit, up to
        ``max_streams`` streams in all; callers that were cancelled are dropped."""
        self._waiting = [waiting for waiting in self._waiting if not waiting.future.done()]
        if not self._waiting:
            return []
        limit = self._waiting[0].limit
        batch: list[_Waiting] = []
        rest: list[_Waiting] = []
        streams = 0
        for waiting in self._waiting:
            fits = not batch or streams + len(waiting.streams) <= self._max_streams
            if waiting.limit == limit and fits:
                batch.append(waiting)
                streams += len(waiting.streams)
            else:
                rest.append(waiting)
        self._waiting = rest
        return batch

    async def _serve(self, batch: list[_Waiting]) -> None:
        streams: list[str] = [s for waiting in batch for s in waiting.streams]
        firsts = [v for waiting in batch for v in waiting.firsts]
        self.queries += 1
        try:
            slots = await self._fetch(streams, firsts, batch[0].limit)
        except asyncio.CancelledError:
            for waiting in batch:
                waiting.future.cancel()
            raise
        except Exception as exc:
            fail_callers([waiting.future for waiting in batch], exc, "read")
            return
        slot = 1  # unnest ... WITH ORDINALITY counts from 1
        for waiting in batch:
            result: dict[str, list[RecordedEvent]] = {}
            for stream in waiting.streams:
                result[stream] = slots.get(slot, [])
                slot += 1
            if not waiting.future.done():
                waiting.future.set_result(result)
