"""Group commit: appends that wait at the same moment share one transaction.

A commit costs a round trip and a disk flush, whatever it carries (measured in
docs/adr/0004-postgres-store.md), and the log's commit order serialises appends anyway. So while one
batch is being committed, the appends that arrive queue up, and the next batch
takes all of them (up to ``max_batch``) in one ``append_many`` call. An idle store
sends a lone append at once: batching adds no latency when there is nothing to
wait for; ``max_wait`` can trade a little latency for bigger batches.

Each request is checked on its own inside the batch (``append_many`` returns a
conflict in its place), so one command's conflict never fails its neighbours, and
requests touching the same stream behave exactly as if sent one after another.
If a whole batch fails (a duplicate event id aborts the transaction, say), its
requests are retried one by one, so only the faulty one sees the error.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from eventcore.errors import EventCoreError, StoreError, ValidationError
from eventcore.store import AppendOutcome
from eventcore.types import AppendRequest, AppendResult

_log = logging.getLogger(__name__)

AppendMany: TypeAlias = Callable[[Sequence[AppendRequest]], Awaitable[list[AppendOutcome]]]


@dataclass(frozen=True, slots=True)
class GroupCommitSettings:
    """``max_batch`` appends at most per transaction; ``max_wait`` seconds to wait
    for more before sending a batch that is not full (0: send at once)."""

    enabled: bool = True
    max_batch: int = 256
    max_wait: float = 0.0

    def __post_init__(self) -> None:
        if type(self.max_batch) is not int or self.max_batch < 1:
            raise ValidationError(f"max_batch must be a positive int, got {self.max_batch!r}")
        if (
            isinstance(self.max_wait, bool)
            or not isinstance(self.max_wait, int | float)
            or not (math.isfinite(self.max_wait) and self.max_wait >= 0)
        ):
            raise ValidationError(
                f"max_wait must be a number of seconds >= 0, got {self.max_wait!r}"
            )


_Waiting: TypeAlias = tuple[AppendRequest, "asyncio.Future[AppendOutcome]"]


class GroupCommitter:
    def __init__(self, append_many: AppendMany, settings: GroupCommitSettings) -> None:
        self._append_many = append_many
        self._settings = settings
        self._waiting: list[_Waiting] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0  # how many append_many calls were made (for tests and metrics)
        # Called with each batch's size (observers: see eventcore.observe_store);
        # they must not raise.
        self.batch_listeners: list[Callable[[int], None]] = []

    async def append(self, request: AppendRequest) -> AppendResult:
        future: asyncio.Future[AppendOutcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, future))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        outcome = await future
        if isinstance(outcome, EventCoreError):
            raise outcome
        return outcome

    async def _flush(self) -> None:
        try:
            while self._waiting:
                if self._settings.max_wait and len(self._waiting) < self._settings.max_batch:
                    await asyncio.sleep(self._settings.max_wait)
                # A caller cancelled before its append was sent (a timeout, say)
                # must not be written behind its back: drop it.
                self._waiting = [w for w in self._waiting if not w[1].done()]
                batch = self._waiting[: self._settings.max_batch]
                del self._waiting[: len(batch)]
                if batch:
                    await self._commit(batch)
        except asyncio.CancelledError:
            for _, future in self._waiting:
                future.cancel()
            self._waiting.clear()
            raise
        finally:
            self._flusher = None

    async def _commit(self, batch: list[_Waiting]) -> None:
        self.batches += 1
        for listener in self.batch_listeners:
            listener(len(batch))
        try:
            outcomes = await self._append_many([request for request, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except EventCoreError as exc:
            # A StoreError means the connection or server failed: nobody got through.
            # Anything else that fails a whole batch is one request's fault.
            if len(batch) > 1 and not isinstance(exc, StoreError):
                _log.debug("batch of %d appends failed (%r): retrying one by one", len(batch), exc)
                await self._commit_one_by_one(batch)
            else:
                _log_batch_failure(batch, exc)
                _fail_all(batch, exc)
        except Exception as exc:
            _log_batch_failure(batch, exc)
            _fail_all(batch, exc)
        else:
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)

    async def _commit_one_by_one(self, batch: list[_Waiting]) -> None:
        try:
            for one in batch:
                if not one[1].done():
                    await self._commit([one])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()  # a no-op for those already answered
            raise


def _log_batch_failure(batch: list[_Waiting], exc: Exception) -> None:
    # A store error or a bug is worth a warning; a refused request (say a duplicate
    # event id) is its caller's to handle, and only a debug line here.
    refused = isinstance(exc, EventCoreError) and not isinstance(exc, StoreError)
    level = logging.DEBUG if refused else logging.WARNING
    streams = sorted({stream for request, _ in batch for stream, _ in request.expected})
    _log.log(level, "group commit of %d append(s) on %s failed: %r", len(batch), streams[:10], exc)


def _fail_all(batch: list[_Waiting], exc: Exception) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)


DEFAULT_GROUP_COMMIT = GroupCommitSettings()
