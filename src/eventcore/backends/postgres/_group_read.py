"""Group reads: concurrent ``read_streams`` calls share one query.

The read before a command's append is a round trip of its own; at high concurrency
those round trips (and the pool's hand-offs) cost more than the rows. As with
group commit, while one query is in flight the reads that arrive queue up, and
the next query serves all of them: one statement, so each caller still gets a
mutually consistent snapshot of its streams. An idle store sends a lone read at
once. Each caller's streams are numbered slots in the query, so two callers may
ask for the same stream from different versions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from eventcore.types import RecordedEvent

# (stream ids, first versions, limit) -> events per slot, in slot order
FetchSlots: TypeAlias = Callable[
    [list[str], list[int], int | None], Awaitable[dict[int, list[RecordedEvent]]]
]


@dataclass(slots=True)
class _Waiting:
    streams: Sequence[str]
    firsts: Sequence[int]
    limit: int | None
    future: asyncio.Future[dict[str, list[RecordedEvent]]]


class GroupReader:
    def __init__(self, fetch: FetchSlots, max_streams: int = 2000) -> None:
        self._fetch = fetch
        self._max_streams = max_streams
        self._waiting: list[_Waiting] = []
        self._flusher: asyncio.Task[None] | None = None
        self.queries = 0  # how many queries were sent (for tests and metrics)

    async def read(
        self, streams: Sequence[str], firsts: Sequence[int], limit: int | None
    ) -> dict[str, list[RecordedEvent]]:
        loop = asyncio.get_running_loop()
        waiting = _Waiting(streams, firsts, limit, loop.create_future())
        self._waiting.append(waiting)
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return await waiting.future

    async def _flush(self) -> None:
        try:
            while self._waiting:
                await self._serve(self._take_batch())
        except asyncio.CancelledError:
            for waiting in self._waiting:
                waiting.future.cancel()
            self._waiting.clear()
            raise
        finally:
            self._flusher = None

    def _take_batch(self) -> list[_Waiting]:
        """The oldest read, and every queued read with the same limit, up to
        ``max_streams`` streams in all."""
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
        streams = [s for waiting in batch for s in waiting.streams]
        firsts = [v for waiting in batch for v in waiting.firsts]
        self.queries += 1
        try:
            slots = await self._fetch(streams, firsts, batch[0].limit)
        except asyncio.CancelledError:
            for waiting in batch:
                waiting.future.cancel()
            raise
        except Exception as exc:
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
            return
        slot = 1  # unnest ... WITH ORDINALITY counts from 1
        for waiting in batch:
            result: dict[str, list[RecordedEvent]] = {}
            for stream in waiting.streams:
                result[stream] = slots.get(slot, [])
                slot += 1
            if not waiting.future.done():
                waiting.future.set_result(result)
