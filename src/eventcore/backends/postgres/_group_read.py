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
    """Up to ``max_in_flight`` queries run at once (the server reads in parallel);
    reads that arrive while all are busy are queued and share the next one."""

    def __init__(self, fetch: FetchSlots, max_streams: int = 2000, max_in_flight: int = 4):
        self._fetch = fetch
        self._max_streams = max_streams
        self._waiting: list[_Waiting] = []
        self._flusher: asyncio.Task[None] | None = None
        self._free = asyncio.Semaphore(max_in_flight)
        self._serving: set[asyncio.Task[None]] = set()
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
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                await self._free.acquire()
                if not self._waiting:
                    self._free.release()
                    break
                task = loop.create_task(self._serve_and_free(self._take_batch()))
                self._serving.add(task)  # keep a reference until it is done
                task.add_done_callback(self._serving.discard)
        except asyncio.CancelledError:
            for waiting in self._waiting:
                waiting.future.cancel()
            self._waiting.clear()
            raise
        finally:
            self._flusher = None

    async def _serve_and_free(self, batch: list[_Waiting]) -> None:
        try:
            await self._serve(batch)
        finally:
            self._free.release()

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
