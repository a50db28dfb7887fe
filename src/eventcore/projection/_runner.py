"""The projection runner: catch up from the checkpoint, follow live, hold a lease.

One :class:`ProjectionRunner` runs one projection. Several runners (one per
projection) run side by side and independently: one failing stops only itself.
Several runners of the *same* projection, in any number of processes, take
turns: the one holding the lease ``projection:<name>`` works, the others stand by
and take over within a lease's time after it dies.

The log is read with :class:`~eventcore._tail.LogScanner` (pages, the scanned
position, waiting at the end) and store outages ride on
:class:`~eventcore._tail.OutageRetry`: the same pieces :func:`eventcore.follow`
is made of.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from eventcore._tail import LogScanner, OutageRetry
from eventcore.errors import ProjectionFailed, ValidationError
from eventcore.observe import Observer, as_observer
from eventcore.projection._projection import Projection, check_projection, has_own_batch_handler
from eventcore.projection._status import ProjectionState, ProjectionStatus, projection_status
from eventcore.store import (
    MAX_DEAD_LETTER_ERROR,
    DeadLetter,
    LogFilter,
    ProjectionStore,
    ReplicaReads,
    check_lease_args,
)
from eventcore.types import RecordedEvent

if TYPE_CHECKING:  # the exactly-once module builds on this one
    from eventcore.projection._exactly_once import TransactionalProjection

_log = logging.getLogger("eventcore.projection")

Progress = Callable[[int, int], None]
"""``progress(position, head)``: called after each page while catching up."""


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """How a runner reads, checkpoints and holds its lease.

    ``page_size`` events are held in memory at most. The checkpoint is saved after
    ``checkpoint_every`` events or ``checkpoint_interval`` seconds, whichever comes
    first, whenever the runner catches up, and when it stops; a crash redelivers at
    most what came after it. ``poll_interval``: the longest wait at the end of the
    log (every shipped store wakes the runner sooner, when the log grows).
    ``lease_ttl``: a dead runner's lease lapses after this many seconds; the holder
    renews it every third of it. ``max_retry_time``: how long an unreachable store
    is waited for before the runner fails.
    """

    page_size: int = 1000
    # Each checkpoint is a committed write: every 100 events made a PostgreSQL
    # rebuild four times slower than with 10,000 (measured). The 1 s interval
    # still bounds redelivery in time; 1,000 bounds it in count at high rates.
    checkpoint_every: int = 1000
    checkpoint_interval: float = 1.0
    poll_interval: float = 0.5
    # The lease bounds failover: renewed every second, a killed leader's lease lapses
    # 2-3 s after the kill, and a standby asks every 0.6 s, so takeover takes 2-3.6 s
    # (measured: docs/projections.md). Shorter would let a renewal that a busy
    # database holds up for a second cost the leader its lease (it then re-acquires).
    lease_ttl: float = 3.0
    max_retry_time: float = 60.0

    def __post_init__(self) -> None:
        for name in ("page_size", "checkpoint_every"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValidationError(f"{name} must be a positive int, got {value!r}")
        for name in ("checkpoint_interval", "poll_interval", "max_retry_time"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValidationError(f"{name} must be a positive number of seconds, got {value!r}")
        check_lease_args("-", "-", self.lease_ttl)


def default_holder() -> str:
    """A lease holder id unique to this runner: host, process, and a random tail."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\x00", "\\x00")
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text[:MAX_DEAD_LETTER_ERROR]


class _LeaseLost(Exception):
    """Internal: the renewer found the lease gone; processing stops at once."""


class ProjectionRunner:
    """Runs ``projection`` over ``store``: ``start()`` / ``await stop()``, or
    ``async with``. ``await caught_up()`` returns once it has handled the log up to
    the head as it was when called; ``await status()`` tells where it is.

    ``rebuild=True`` empties the projection first (its ``reset()``, checkpoint
    deleted, dead letters cleared) once this runner holds the lease, then replays
    the log from the start. ``progress(position, head)`` hears each page while
    catching up. ``observer`` hears ``projection_advanced`` and
    ``projection_failed``.
    """

    def __init__(
        self,
        store: ProjectionStore,
        projection: Projection,
        *,
        options: RunnerOptions | None = None,
        holder: str | None = None,
        observer: Observer | None = None,
        progress: Progress | None = None,
        rebuild: bool = False,
    ) -> None:
        if not isinstance(store, ProjectionStore):
            raise ValidationError(
                f"a projection runner needs a store with reads, checkpoints, leases and dead "
                f"letters (eventcore.store.ProjectionStore), got {store!r}"
            )
        self._filter: LogFilter = check_projection(projection)
        self._options = options if options is not None else RunnerOptions()
        if not isinstance(self._options, RunnerOptions):
            raise ValidationError(f"options must be RunnerOptions, got {options!r}")
        self._holder = default_holder() if holder is None else holder
        check_lease_args(projection.name, self._holder)
        self._store = store
        self._projection = projection
        self._observer = as_observer(observer)
        self._progress = progress
        self._rebuild_pending = rebuild
        self._state = ProjectionState.STOPPED
        self._error: BaseException | None = None
        self._position = 0
        self._saved: int | None = None
        self._unsaved = 0
        self._saved_at = 0.0
        self._lease_lost = False
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- what callers see ------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._projection.name

    @property
    def holder(self) -> str:
        return self._holder

    @property
    def state(self) -> ProjectionState:
        return self._state

    @property
    def position(self) -> int:
        return self._position

    @property
    def error(self) -> BaseException | None:
        return self._error

    async def status(self) -> ProjectionStatus:
        return await projection_status(
            self._store,
            self.name,
            state=self._state,
            position=self._position,
            last_error=None if self._error is None else _error_text(self._error),
        )

    def start(self) -> None:
        """Start running in a task of the current event loop (once)."""
        if self._task is None or self._task.done():
            self._error = None
            self._stopping = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name=f"projection {self.name}")

    async def run(self) -> None:
        """Run until stopped (or cancelled); raise ProjectionFailed if it fails."""
        self.start()
        assert self._task is not None
        try:
            await asyncio.shield(self._task)
        except asyncio.CancelledError:
            await self.stop()
            raise
        self._raise_if_failed()

    async def stop(self) -> None:
        """Stop at once, saving the checkpoint of what was handled, releasing the lease."""
        task = self._task
        if task is None:
            return
        # Cooperative first: a store call cut off by cancellation can leave its
        # connection unusable, so the runner stops between events and waits.
        self._stopping.set()
        done, _ = await asyncio.wait({task}, timeout=self._options.lease_ttl)
        if not done:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def caught_up(self, position: int | None = None) -> int:
        """Wait until the runner is live and has handled the log up to ``position``
        (default: the log's head as it is now); return where it is. Raises
        ProjectionFailed if the runner fails or stops first."""
        head = await self._store.head_position() if position is None else position
        while not (self._state is ProjectionState.LIVE and self._position >= head):
            self._raise_if_failed()
            if self._task is None or self._task.done():
                raise ProjectionFailed(
                    self.name, self._position, f"stopped before catching up with head {head}"
                )
            await self._changed.wait()
        return self._position

    async def wait_for_state(self, *states: ProjectionState) -> ProjectionState:
        """Wait until the runner is in one of ``states``; return it."""
        while self._state not in states:
            await self._changed.wait()
        return self._state

    async def __aenter__(self) -> ProjectionRunner:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _raise_if_failed(self) -> None:
        error = self._error
        if error is None:
            return
        if isinstance(error, ProjectionFailed):
            raise ProjectionFailed(error.name, error.position, error.reason) from error
        raise ProjectionFailed(self.name, self._position, _error_text(error)) from error

    def _notify(self, state: ProjectionState | None = None) -> None:
        if state is not None:
            self._state = state
        self._changed.set()
        self._changed = asyncio.Event()

    # -- the lease: stand by, hold, lose ---------------------------------------------

    async def _run(self) -> None:
        outage = OutageRetry(self._options.max_retry_time, _log)
        ttl = self._options.lease_ttl
        try:
            while True:
                held = await outage.run(self._acquire, self._position)
                if not held:
                    self._notify(ProjectionState.STANDBY)
                    await self._unless_stopping(asyncio.sleep(min(ttl / 5, 1.0)))
                    continue
                _log.info("projection %r: lease taken by %s", self.name, self._holder)
                await self._hold(outage)
                if self._stopping.is_set():
                    self._notify(ProjectionState.STOPPED)
                    return
        except asyncio.CancelledError:
            self._notify(ProjectionState.STOPPED)
            raise
        except Exception as exc:
            self._fail(exc)
        finally:
            await self._release()  # a no-op unless this runner holds it

    async def _acquire(self) -> bool:
        return await self._store.acquire_lease(self.name, self._holder, self._options.lease_ttl)

    async def _release(self) -> None:
        try:
            await self._store.release_lease(self.name, self._holder)
        except Exception as exc:  # the lease lapses by itself
            _log.warning("projection %r: could not release its lease: %s", self.name, exc)

    def _fail(self, exc: Exception) -> None:
        self._error = exc
        _log.error("projection %r failed at position %d: %s", self.name, self._position, exc)
        if self._observer is not None:
            self._observer.projection_failed(self.name, self._position, exc)
        self._notify(ProjectionState.FAILED)

    async def _hold(self, outage: OutageRetry) -> None:
        """Work while renewing the lease; return when the lease is lost."""
        self._lease_lost = False
        work = asyncio.create_task(self._work(outage))
        renew = asyncio.create_task(self._renew())
        try:
            await asyncio.wait({work, renew}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            work.cancel()
            renew.cancel()
            await asyncio.gather(work, renew, return_exceptions=True)
        if not work.cancelled() and work.exception() is not None:
            raise work.exception()  # type: ignore[misc]
        if self._stopping.is_set():
            return
        _log.warning(
            "projection %r: %s lost its lease at position %d; standing by",
            self.name,
            self._holder,
            self._position,
        )

    async def _renew(self) -> None:
        """Renew well before expiry; return (lease lost) if a renewal fails."""
        ttl = self._options.lease_ttl
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                held = await asyncio.wait_for(self._acquire(), ttl / 3)
            except Exception as exc:
                # Not knowing is losing: a holder that cannot renew may have lost it.
                _log.warning("projection %r: lease renewal failed: %s", self.name, exc)
                held = False
            if not held:
                self._lease_lost = True
                return

    # -- the work: catch up, follow ----------------------------------------------------

    async def _work(self, outage: OutageRetry) -> None:
        start = await outage.run(self._start_position, self._position)
        self._position = start
        self._saved, self._unsaved, self._saved_at = start, 0, time.monotonic()
        options = self._options
        scanner = LogScanner(
            self._store,
            after=start,
            page_size=options.page_size,
            poll_interval=options.poll_interval,
            stream_prefix=self._filter.stream_prefix,
            stream_pattern=self._filter.stream_pattern,
            event_types=self._filter.event_types,
        )
        self._notify(ProjectionState.CATCHING_UP)
        try:
            while not self._stopping.is_set():
                page = await outage.run(scanner.next_page, scanner.scanned)
                if page:
                    await self._handle_page(page, outage)
                if self._stopping.is_set():
                    break  # mid-page: the position is the last event handled
                self._position = scanner.scanned
                await self._report(scanner.caught_up)
                await self._checkpoint(outage, force=scanner.caught_up)
                if scanner.caught_up:
                    self._notify(ProjectionState.LIVE)
                    await self._unless_stopping(outage.run(scanner.wait, scanner.scanned))
        except BaseException:  # stopped or failed: keep what was handled
            if not self._lease_lost:
                await self._final_checkpoint()
            raise
        await self._final_checkpoint()

    async def _unless_stopping(self, wait: Coroutine[Any, Any, object]) -> None:
        """Wait for ``wait`` (a sleep, or a wait for appends), cut short by stop()."""
        if self._stopping.is_set():
            wait.close()
            return
        waiting = asyncio.ensure_future(wait)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiting, stopping):
                task.cancel()
            await asyncio.gather(waiting, stopping, return_exceptions=True)
        if not waiting.cancelled() and waiting.exception() is not None:
            raise waiting.exception()  # type: ignore[misc]

    async def _start_position(self) -> int:
        name = self.name
        if self._rebuild_pending:
            _log.info("projection %r: rebuilding from the start of the log", name)
            await self._projection.reset()
            await self._store.delete_checkpoint(name)
            await self._store.clear_dead_letters(name)
            self._rebuild_pending = False
            return 0
        checkpoint = await self._store.load_checkpoint(name)
        if checkpoint is None:
            return 0
        head = await self._store.head_position()
        if checkpoint > head:
            await self._wait_for_checkpoint(checkpoint, head)
        return checkpoint

    async def _wait_for_checkpoint(self, checkpoint: int, head: int) -> None:
        """A checkpoint past the head: a replica that has not replayed it yet (it
        was saved on the primary) is waited for; a checkpoint past the primary's
        head cannot be right."""
        store = self._store
        if isinstance(store, ReplicaReads):
            head = await store.primary_head_position()
            if checkpoint <= head:
                wait = self._options.max_retry_time
                _log.info(
                    "projection %r: waiting up to %s s for the replica to replay "
                    "the log up to its checkpoint %d",
                    self.name,
                    wait,
                    checkpoint,
                )
                replayed = await store.wait_for_replica(checkpoint, wait)
                if replayed >= checkpoint:
                    return
                raise ProjectionFailed(
                    self.name,
                    checkpoint,
                    f"the replica it reads has replayed the log only up to {replayed} after "
                    f"{wait} s, behind its checkpoint {checkpoint} (the primary's head is "
                    f"{head}): check the replica's replication",
                )
        raise ProjectionFailed(
            self.name,
            checkpoint,
            f"its checkpoint {checkpoint} is past the log's head {head}: the checkpoint "
            "belongs to another store, or the log was replaced. Rebuild the projection "
            "(rebuild=True) or delete the checkpoint",
        )

    async def _report(self, caught_up: bool) -> None:
        watching = self._observer is not None and self._observer.listens_to("projection_advanced")
        if not watching and self._progress is None:
            return
        head = self._position if caught_up else await self._store.head_position()
        if self._observer is not None:
            self._observer.projection_advanced(self.name, self._position, head)
        if self._progress is not None:
            self._progress(self._position, head)

    async def _checkpoint(self, outage: OutageRetry, *, force: bool) -> None:
        position = self._position
        if position == self._saved:
            return
        due = (
            self._unsaved >= self._options.checkpoint_every
            or time.monotonic() - self._saved_at >= self._options.checkpoint_interval
        )
        if not (force or due):
            return
        await outage.run(lambda: self._save_checkpoint(position), position)
        self._saved, self._unsaved, self._saved_at = position, 0, time.monotonic()

    async def _final_checkpoint(self) -> None:
        """One attempt, on stop: a store that is away now loses only redelivery."""
        if self._position == self._saved:
            return
        try:
            await self._save_checkpoint(self._position)
        except Exception as exc:
            _log.warning(
                "projection %r: could not save checkpoint %d on stop (%s); the events "
                "after %s will be handled again",
                self.name,
                self._position,
                exc,
                self._saved,
            )

    async def _save_checkpoint(self, position: int) -> None:
        await self._store.save_checkpoint(self.name, position)

    def _advance(self, position: int, count: int) -> None:
        self._position = position
        self._unsaved += count
        self._notify()

    # -- handling events under the failure policy ---------------------------------------

    async def _handle_page(self, page: Sequence[RecordedEvent], outage: OutageRetry) -> None:
        if has_own_batch_handler(self._projection):
            try:
                await self._projection.handle_batch(page)
            except Exception as exc:
                _log.warning(
                    "projection %r: handle_batch failed after position %d (%s); handling "
                    "the page one event at a time",
                    self.name,
                    self._position,
                    exc,
                )
            else:
                self._advance(page[-1].global_position, len(page))
                return
        # Waiters and the checkpoint's count are brought up to date once per page,
        # not per event (a replay spent most of its own time there); the position
        # itself follows every event, for a stop or a failure between events.
        handled = 0
        try:
            for event in page:
                if self._stopping.is_set():
                    break
                await self._handle_one(event, outage)
                self._position = event.global_position
                handled += 1
        finally:
            if handled:
                self._advance(self._position, handled)
        await self._checkpoint(outage, force=False)

    async def _handle_one(self, event: RecordedEvent, outage: OutageRetry) -> None:
        try:
            await self._projection.handle(event)
        except Exception as exc:
            await self._handle_under_policy(event, exc, outage)

    async def _handle_under_policy(
        self, event: RecordedEvent, error: Exception, outage: OutageRetry
    ) -> None:
        """An event failed with ``error``: retry it, then skip it or stop, as the
        projection's failure policy says."""
        policy = self._projection.failure_policy
        retries = 0
        while policy.retries_left(retries):
            delay = policy.delay(retries)
            retries += 1
            _log.warning(
                "projection %r: event %s at position %d failed (%s); retry %d of %d in %.2f s",
                self.name,
                event.event_id,
                event.global_position,
                _error_text(error),
                retries,
                policy.max_retries,
                delay,
            )
            await asyncio.sleep(delay)
            try:
                await self._projection.handle(event)
                return
            except Exception as exc:
                error = exc
        await self._give_up(event, error, outage)

    async def _give_up(self, event: RecordedEvent, exc: Exception, outage: OutageRetry) -> None:
        if self._observer is not None:
            self._observer.projection_failed(self.name, self._position, exc)
        if self._projection.failure_policy.gives_up_by == "stop":
            raise ProjectionFailed(
                self.name,
                self._position,
                f"event {event.event_id} at position {event.global_position} "
                f"({event.event_type} in {event.stream_id!r}) failed: {_error_text(exc)}",
            ) from exc
        letter = DeadLetter(
            self.name,
            event.global_position,
            event.event_id,
            event.stream_id,
            event.event_type,
            _error_text(exc),
            datetime.now(UTC),
        )
        await outage.run(lambda: self._store.record_dead_letter(letter), event.global_position)
        _log.warning(
            "projection %r: skipped event %s at position %d (%s); recorded as a dead letter",
            self.name,
            event.event_id,
            event.global_position,
            letter.error,
        )


async def run_projection(
    store: ProjectionStore,
    projection: Projection | TransactionalProjection,
    *,
    options: RunnerOptions | None = None,
    holder: str | None = None,
    observer: Observer | None = None,
) -> None:
    """Run ``projection`` until cancelled (then stop cleanly, checkpoint saved);
    raise :class:`~eventcore.errors.ProjectionFailed` if it fails. A
    :class:`~eventcore.projection.TransactionalProjection` runs exactly once."""
    from eventcore.projection._exactly_once import runner_for

    runner = runner_for(store, projection, options=options, holder=holder, observer=observer)
    await runner.run()


async def rebuild_projection(
    store: ProjectionStore,
    projection: Projection | TransactionalProjection,
    *,
    progress: Progress | None = None,
    options: RunnerOptions | None = None,
    holder: str | None = None,
    observer: Observer | None = None,
) -> ProjectionStatus:
    """Empty ``projection`` and replay the log into it up to the head as it is when
    the replay catches up; return its status then. Writes may go on meanwhile. Stop
    the projection's running runners first: the rebuild waits for the lease."""
    from eventcore.projection._exactly_once import runner_for

    runner = runner_for(
        store,
        projection,
        options=options,
        holder=holder,
        observer=observer,
        progress=progress,
        rebuild=True,
    )
    async with runner:
        await runner.caught_up()
        return await runner.status()
