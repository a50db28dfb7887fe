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
If a whole batch fails, its requests are retried one by one, so only the faulty
one sees the error; only a failure no request could have caused (the store is
closed, the connection lost, see ``store_wide``) fails the whole batch at once,
and so does any failure after which the batch may have been written
(``StoreUnavailable``, a raw ``OSError`` or ``TimeoutError``: outcome unknown),
whatever ``store_wide`` says, since sending it again could write it twice.
Every caller then gets an exception of its own, chained to the shared cause.

With ``max_in_flight`` above 1, that many batches may be under way at once: the
next batch is built and sent while the one before it commits (PostgreSQL still
commits them one after another, in the order they take the log's lock). Each
batch is sent by a flusher task that commits it itself; while every flusher is
committing, a new append starts another, up to ``max_in_flight``. So a lone
writer costs the same whatever the setting (one task an append), and when a
batch is answered its flusher sends what queued meanwhile before the answered
callers run. What is queued when a flusher looks is split evenly among the
batches that may still go, so the writers take turns and the client's work for
one batch overlaps the server's for another; one batch of everything would hold
every writer until it is answered. An append that touches a stream of a batch
under way waits for that batch to finish, and so does every later append
touching its streams: appends to one stream reach the store in the order they
were made, so batching never reorders them. Cancelled callers and lost
connections keep every invariant of a single batch in flight
(tests/test_group_commit_pipelined.py). ``GroupCommitSettings`` defaults to one
batch in flight; PostgreSQL's store defaults to two (``PostgresConfig``), where
it measured lower open-loop latency, 64 writers as fast or faster, and a lone
writer no slower (docs/benchmarks.md). SQLite writes through one connection, so a
second batch would only queue behind the first.

``close()`` takes no new appends, waits up to ``close_timeout`` for those already
accepted, and fails what is left saying whether it may have been written.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeAlias

from eventcore.errors import (
    EventCoreError,
    StoreClosed,
    StoreError,
    StoreUnavailable,
    ValidationError,
)
from eventcore.store import AppendOutcome
from eventcore.types import AppendRequest, AppendResult

_log = logging.getLogger(__name__)

AppendMany: TypeAlias = Callable[[Sequence[AppendRequest]], Awaitable[list[AppendOutcome]]]
StoreWide: TypeAlias = Callable[[Exception], bool]


@dataclass(frozen=True, slots=True)
class GroupCommitSettings:
    """``max_batch`` appends at most per transaction; ``max_wait`` seconds to wait
    for more before sending a batch that is not full (0: send at once);
    ``max_in_flight`` batches under way at once (1: each waits for the one before);
    ``close_timeout`` seconds that ``close()`` waits for appends already accepted
    before failing them."""

    enabled: bool = True
    max_batch: int = 256
    max_wait: float = 0.0
    close_timeout: float = 30.0
    max_in_flight: int = 1

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_in_flight"):
            count = getattr(self, name)
            if type(count) is not int or count < 1:
                raise ValidationError(f"{name} must be a positive int, got {count!r}")
        for name in ("max_wait", "close_timeout"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value >= 0)
            ):
                raise ValidationError(f"{name} must be a number of seconds >= 0, got {value!r}")


_Waiting: TypeAlias = tuple[AppendRequest, "asyncio.Future[AppendOutcome]"]

# True inside a committer's flusher task. A store refuses new work from the moment
# close() begins, but lets this task through: it is finishing appends accepted before.
_flushing: ContextVar[bool] = ContextVar("eventcore_group_commit_flushing", default=False)


def finishing_accepted_appends() -> bool:
    """Whether the caller is a group committer sending appends it already accepted."""
    return _flushing.get()


def lost_connection(exc: Exception) -> bool:
    """The default ``store_wide`` test: the store is closed, or an OSError or
    TimeoutError (connection refused, reset, no answer) is among the causes
    (``raise ... from``) of the failure."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, StoreClosed | OSError | TimeoutError):
            return True
        seen = seen.__cause__
    return False


class GroupCommitter:
    """Queues appends and sends them in batches through ``append_many``.

    ``store_wide(exc)`` says whether a failed ``append_many`` failed for a reason no
    request of the batch could have caused, so that sending them one by one would
    only fail again; anything else is charged to one request by retrying each alone.
    """

    def __init__(
        self,
        append_many: AppendMany,
        settings: GroupCommitSettings,
        *,
        store_name: str = "the event store",
        store_wide: StoreWide = lost_connection,
    ) -> None:
        self._append_many = append_many
        self._settings = settings
        self._store_name = store_name
        self._store_wide = store_wide
        self._waiting: list[_Waiting] = []
        self._in_flight: list[list[_Waiting]] = []  # the batches under way
        # The tasks sending batches: at most max_in_flight, each committing one
        # batch at a time (see _flush).
        self._flushers: set[asyncio.Task[None]] = set()
        self._closing = False
        self.batches = 0  # how many append_many calls were made (for tests and metrics)
        self.batched_appends = 0  # the appends they carried (mean batch: this / batches)
        # Called with each batch's size (observers: see eventcore.observe_store);
        # they must not raise.
        self.batch_listeners: list[Callable[[int], None]] = []

    async def append(self, request: AppendRequest) -> AppendResult:
        if self._closing:
            raise StoreClosed(self._store_name)
        future: asyncio.Future[AppendOutcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, future))
        self._start_flusher_if_all_busy()
        outcome = await future
        if isinstance(outcome, EventCoreError):
            raise outcome
        return outcome

    def _start_flusher_if_all_busy(self) -> None:
        """Start one more flusher if every one is committing (or there is none)
        and fewer than ``max_in_flight`` are running."""
        running = len(self._flushers)
        if running <= len(self._in_flight) and running < self._settings.max_in_flight:
            self._flushers.add(asyncio.get_running_loop().create_task(self._flush()))

    async def close(self) -> None:
        """Take no new appends; wait up to ``close_timeout`` for the accepted ones
        to be committed, then fail those still waiting."""
        self._closing = True
        timeout = self._settings.close_timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # A flusher may start another while it works: wait until none is left.
        while self._flushers and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._flushers), timeout=left)
        if not self._flushers:
            return
        self._give_up(timeout)
        flushers = set(self._flushers)
        for flusher in flushers:
            flusher.cancel()
        await asyncio.wait(flushers, timeout=timeout)
        # One cancelled before it ever ran never reached its finally to leave.
        self._flushers -= {flusher for flusher in flushers if flusher.done()}

    def _give_up(self, timeout: float) -> None:
        waited = f"{self._store_name} was closed after waiting close_timeout={timeout} s"
        _fail_each(
            [waiting for batch in self._in_flight for waiting in batch],
            StoreUnavailable(
                f"{waited} for this append to commit; it may or may not have been "
                "written: read its streams to find out"
            ),
        )
        _fail_each(
            self._waiting,
            StoreUnavailable(
                f"{waited} for earlier appends; this one was not written: retry it on an open store"
            ),
        )
        self._waiting.clear()

    async def _flush(self) -> None:
        """Send batches until nothing is left that this flusher may send.

        Each flusher commits its batch itself, not in a task of its own: a lone
        append then costs one task, whatever ``max_in_flight`` says. And when a
        batch is answered, its flusher is back in this loop in that same turn of
        the event loop, and sends the appends that queued meanwhile before the
        answered callers run: their work overlaps the next commit, and under a
        closed loop the callers settle into groups taking turns. (Committed by a
        task of its own, the flusher woke only after those callers had run and
        queued again: one big batch, the client and the server idle in turn.)
        While a flusher commits, ``append`` starts another if ``max_in_flight``
        allows, and so does a flusher that leaves appends queued behind its
        batch."""
        _flushing.set(True)  # in this task's own context
        try:
            while self._waiting:
                batch = await self._next_batch()
                if not batch:
                    # All that is queued waits on streams of batches under way, and
                    # their flushers take it when they are done (or it was cancelled).
                    return
                if self._waiting:
                    self._start_flusher_if_all_busy()
                await self._commit(batch)
        except asyncio.CancelledError:
            for _, future in self._waiting:
                future.cancel()  # a no-op for those already answered
            self._waiting.clear()
            raise
        finally:
            # At once, not in a done callback a turn later: an append made in
            # between would count this flusher as about to take it.
            self._flushers.discard(asyncio.current_task())

    async def _next_batch(self) -> list[_Waiting]:
        """Take the next batch off the queue: in arrival order, up to ``max_batch``
        (and, while more than one batch may be sent, up to an even share of the
        queue among them), leaving behind every append that touches a stream of a
        batch under way or of an append left behind (so one stream's appends keep
        their order)."""
        if (
            self._settings.max_wait
            and not self._closing
            and len(self._waiting) < self._settings.max_batch
        ):
            await asyncio.sleep(self._settings.max_wait)
        busy = {
            stream
            for batch in self._in_flight
            for request, _ in batch
            for stream, _ in request.expected
        }
        limit = self._settings.max_batch
        free = self._settings.max_in_flight - len(self._in_flight)
        if free > 1:
            # What is queued is split evenly among the batches that may go now. One
            # batch of everything would hold every writer, and the next batch
            # could only form once it is answered: the client idle while the
            # server commits, then the server idle while the client works. Split,
            # the writers take turns and the two overlap (docs/benchmarks.md).
            limit = min(limit, -(-len(self._waiting) // free))
        batch: list[_Waiting] = []
        left: list[_Waiting] = []
        for waiting in self._waiting:
            if waiting[1].done():
                # A caller cancelled before its append was sent (a timeout, say)
                # must not be written behind its back: drop it.
                continue
            streams = [stream for stream, _ in waiting[0].expected]
            if len(batch) < limit and busy.isdisjoint(streams):
                batch.append(waiting)
            else:
                left.append(waiting)
                busy.update(streams)
        self._waiting = left
        if batch:
            self._in_flight.append(batch)  # before any await: the next batch sees it
        return batch

    async def _commit(self, batch: list[_Waiting]) -> None:
        try:
            failure = await self._send(batch)
            if failure is None:
                return
            if len(batch) == 1 or _outcome_unknown(failure) or self._store_wide(failure):
                _log_batch_failure(batch, failure)
                _fail_each(batch, failure)
            else:
                _log.debug(
                    "batch of %d appends failed (%r): retrying one by one", len(batch), failure
                )
                await self._commit_one_by_one(batch)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()  # a no-op for those already answered
            raise
        finally:
            self._in_flight = [other for other in self._in_flight if other is not batch]

    async def _commit_one_by_one(self, batch: list[_Waiting]) -> None:
        for index, one in enumerate(batch):
            if one[1].done():
                continue
            failure = await self._send([one])
            if failure is None:
                continue
            if _outcome_unknown(failure) or self._store_wide(failure):
                _fail_each(batch[index:], failure)  # the rest would only fail too
                return
            _fail_each([one], failure)

    async def _send(self, batch: list[_Waiting]) -> Exception | None:
        """One ``append_many`` call; answers every caller and returns None, or
        returns what it raised."""
        self.batches += 1
        self.batched_appends += len(batch)
        for listener in self.batch_listeners:
            listener(len(batch))
        try:
            outcomes = await self._append_many([request for request, _ in batch])
            if len(outcomes) != len(batch):
                raise StoreError(
                    f"append_many returned {len(outcomes)} outcomes for {len(batch)} "
                    "requests; this is a bug in the store"
                )
        except Exception as exc:
            return exc
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)
        return None


def _outcome_unknown(exc: Exception) -> bool:
    """Whether a failed ``append_many`` may have committed all the same (the
    connection dropped after the server committed, say): its callers are told
    StoreUnavailable (see ``_own_copy``), and the batch is never sent again."""
    return isinstance(exc, StoreUnavailable | OSError | TimeoutError)


def _log_batch_failure(batch: Sequence[_Waiting], exc: Exception) -> None:
    # A store error or a bug is worth a warning; a refused request (say a duplicate
    # event id) is its caller's to handle, and only a debug line here.
    refused = isinstance(exc, EventCoreError) and not isinstance(exc, StoreError)
    level = logging.DEBUG if refused else logging.WARNING
    streams = sorted({stream for request, _ in batch for stream, _ in request.expected})
    _log.log(level, "group commit of %d append(s) on %s failed: %r", len(batch), streams[:10], exc)


def _fail_each(batch: Sequence[_Waiting], cause: Exception) -> None:
    fail_callers([future for _, future in batch], cause)


def fail_callers(
    futures: Sequence[asyncio.Future[Any]], cause: Exception, operation: str = "append"
) -> None:
    """Fail every caller still waiting on ``futures``: with ``cause`` itself if it
    is an eventcore error and they are alone, else each with an exception of its
    own, chained to it (one object raised in many tasks would gather all their
    tracebacks). ``operation`` names what failed in the message of a driver
    exception that escaped the backend's mapping."""
    waiting = [future for future in futures if not future.done()]
    for future in waiting:
        if len(waiting) == 1 and isinstance(cause, EventCoreError):
            future.set_exception(cause)
        else:
            future.set_exception(_own_copy(cause, operation))


def _own_copy(cause: Exception, operation: str) -> EventCoreError:
    fresh: EventCoreError
    if isinstance(cause, EventCoreError):
        # Same class, message and attributes, built without calling __init__ (whose
        # signature differs by class), as unpickling would.
        fresh = type(cause).__new__(type(cause))
        fresh.args = cause.args
        fresh.__dict__.update(vars(cause))
    else:  # a driver exception that escaped the backend's mapping: never leaked raw
        kind = StoreUnavailable if isinstance(cause, OSError | TimeoutError) else StoreError
        fresh = kind(f"the store failed to {operation}: {type(cause).__name__}: {cause}")
    fresh.__cause__ = cause
    fresh.__suppress_context__ = True
    return fresh
