"""Exactly-once projections: the read model and the checkpoint in one transaction.

A :class:`TransactionalProjection` keeps its read model in the store's own
database (SQLite or PostgreSQL). The :class:`ExactlyOnceRunner` hands it a
:class:`~eventcore.store.ProjectionTransaction` for each page of events; the
store commits the page's changes together with the checkpoint at its last event,
fenced by the runner's lease token (see :class:`~eventcore.store.Fence`). So a
change is committed exactly when its checkpoint is: after a crash or a takeover
nothing is applied twice, and a runner paused past its lease (a long GC pause, a
stopped process) cannot commit once another runner has taken over: its commit
raises :class:`~eventcore.errors.LeaseLost`, is rolled back, and the runner
stands by.

Everything else is the :class:`~eventcore.projection.ProjectionRunner`: the
lease, catching up, following, the failure policy, stop and status.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Collection, Sequence

from eventcore._tail import OutageRetry
from eventcore.errors import LeaseLost, ValidationError
from eventcore.observe import Observer
from eventcore.projection._projection import FailurePolicy, Projection
from eventcore.projection._runner import Progress, ProjectionRunner, RunnerOptions
from eventcore.store import (
    Fence,
    ProjectionStore,
    ProjectionTransaction,
    TransactionalCheckpointStore,
)
from eventcore.types import RecordedEvent

_log = logging.getLogger("eventcore.projection")


class TransactionalProjection(abc.ABC):
    """Subclass it for a read model kept in the store's own database.

    ``name``, ``stream_prefix``, ``stream_pattern``, ``event_types`` and
    ``failure_policy`` mean what they mean on :class:`Projection`. ``handle``
    applies one event through ``tx`` (``await tx.execute(sql, *params)``,
    ``await tx.fetch(sql, *params)``; ``?`` parameters on SQLite, ``$1`` on
    PostgreSQL). It need not be idempotent: every event is applied exactly once.
    It must not commit or roll back, and should not await anything but ``tx``: on
    SQLite the transaction holds the file's write lock while it runs.
    """

    name: str
    stream_prefix: str | None = None
    stream_pattern: str | None = None
    event_types: Collection[str] | None = None
    failure_policy: FailurePolicy = FailurePolicy()

    @abc.abstractmethod
    async def handle(self, event: RecordedEvent, tx: ProjectionTransaction) -> None:
        """Apply one event to the read model, inside ``tx``."""

    @abc.abstractmethod
    async def reset(self, tx: ProjectionTransaction) -> None:
        """Empty the read model, before a rebuild replays the log from the start
        (in the transaction that also moves the checkpoint back to 0)."""


class _Described(Projection):
    """What the base runner sees: the name, filters and policy of the
    transactional projection; its handlers are never called."""

    def __init__(self, projection: TransactionalProjection) -> None:
        self.name = projection.name
        self.stream_prefix = projection.stream_prefix
        self.stream_pattern = projection.stream_pattern
        self.event_types = projection.event_types
        self.failure_policy = projection.failure_policy

    async def handle(self, event: RecordedEvent) -> None:  # pragma: no cover - unused
        raise AssertionError("an exactly-once runner handles events in transactions")

    async def reset(self) -> None:  # pragma: no cover - unused
        raise AssertionError("an exactly-once runner resets in a transaction")


class ExactlyOnceRunner(ProjectionRunner):
    """Runs a :class:`TransactionalProjection` over a SQLite or PostgreSQL store;
    used like :class:`ProjectionRunner` (``start``/``stop``, ``async with``,
    ``caught_up``, ``status``). The in-memory store is refused: exactly-once needs
    the read model and the checkpoint in one database transaction."""

    def __init__(
        self,
        store: ProjectionStore,
        projection: TransactionalProjection,
        *,
        options: RunnerOptions | None = None,
        holder: str | None = None,
        observer: Observer | None = None,
        progress: Progress | None = None,
        rebuild: bool = False,
    ) -> None:
        if not isinstance(projection, TransactionalProjection):
            raise ValidationError(
                "an exactly-once runner takes a TransactionalProjection (subclass "
                f"eventcore.projection.TransactionalProjection), got {projection!r}"
            )
        if not isinstance(store, TransactionalCheckpointStore):
            raise ValidationError(
                f"exactly-once projection {getattr(projection, 'name', '?')!r} needs a store "
                "whose database holds the read model and commits it with the checkpoint "
                f"(SQLiteEventStore or PostgresEventStore), got {store!r}; use a "
                "Projection and a ProjectionRunner (at-least-once) with other stores"
            )
        super().__init__(
            store,
            _Described(projection),
            options=options,
            holder=holder,
            observer=observer,
            progress=progress,
            rebuild=rebuild,
        )
        self._transactional = projection
        self._tx_store: TransactionalCheckpointStore = store
        self._fence: Fence | None = None  # the newest token acquired
        self._held_fence: Fence | None = None  # the token of the current turn
        self._committing: asyncio.Event | None = None  # set when the open transaction ends

    # -- the lease: a turn is one token ----------------------------------------------

    async def _acquire(self) -> bool:
        token = await self._tx_store.acquire_fenced_lease(
            self.name, self.holder, self._options.lease_ttl
        )
        if token is None:
            return False
        fence = Fence(self.name, token)
        if self._held_fence is not None and fence != self._held_fence:
            return False  # another holder had it in between: this turn is over
        self._fence = fence
        return True

    async def _hold(self, outage: OutageRetry) -> None:
        self._held_fence = self._fence
        try:
            await super()._hold(outage)
        except LeaseLost as exc:
            self._lease_lost = True
            _log.warning(
                "projection %r: %s lost its lease; its commit after position %d was "
                "refused (%s); standing by",
                self.name,
                self.holder,
                self._position,
                exc,
            )
        finally:
            self._held_fence = None

    async def _renew(self) -> None:
        await super()._renew()
        # The lease is lost: let the open transaction reach its fenced commit and
        # be refused there, rather than cancel it halfway through its statements.
        if self._committing is not None:
            await self._committing.wait()

    def _turn(self) -> Fence:
        if self._held_fence is None:  # pragma: no cover - work runs only while held
            raise LeaseLost(self.name, -1, None)
        return self._held_fence

    # -- committing -------------------------------------------------------------------

    async def _save_checkpoint(self, position: int) -> None:
        await self._tx_store.save_checkpoint(self.name, position, fence=self._turn())

    async def _commit(self, events: Sequence[RecordedEvent], position: int) -> None:
        done = self._committing = asyncio.Event()
        try:
            async with self._tx_store.checkpoint_transaction(
                self.name, position, fence=self._turn()
            ) as tx:
                for event in events:
                    await self._transactional.handle(event, tx)
        finally:
            done.set()
            self._committing = None
        self._saved, self._unsaved, self._saved_at = position, 0, time.monotonic()

    async def _start_position(self) -> int:
        if not self._rebuild_pending:
            return await super()._start_position()
        _log.info("projection %r: rebuilding from the start of the log", self.name)
        async with self._tx_store.checkpoint_transaction(self.name, 0, fence=self._turn()) as tx:
            await self._transactional.reset(tx)
        await self._store.clear_dead_letters(self.name)
        self._rebuild_pending = False
        return 0

    # -- handling a page: one transaction, or one per event after a failure ------------

    async def _handle_page(self, page: Sequence[RecordedEvent], outage: OutageRetry) -> None:
        last = page[-1].global_position
        try:
            await outage.run(lambda: self._commit(page, last), self._position)
        except LeaseLost:
            raise
        except Exception as exc:
            if len(page) == 1:
                await self._handle_alone(page[0], outage, exc)
                return
            _log.warning(
                "projection %r: a page after position %d failed and was rolled back (%s); "
                "handling it one event per transaction",
                self.name,
                self._position,
                exc,
            )
            for event in page:
                if self._stopping.is_set():
                    return
                await self._handle_alone(event, outage, None)
            return
        self._advance(last, 0)

    async def _handle_alone(
        self, event: RecordedEvent, outage: OutageRetry, failed: Exception | None
    ) -> None:
        """One event in its own transaction, under the failure policy."""
        policy = self._transactional.failure_policy
        position = event.global_position
        retries = 0
        while True:
            if failed is None:
                try:
                    await outage.run(lambda: self._commit([event], position), self._position)
                except LeaseLost:
                    raise
                except Exception as exc:
                    failed = exc
                else:
                    self._advance(position, 0)
                    return
            if not policy.retries_left(retries):
                await self._give_up(event, failed, outage)  # raises unless it skips
                await outage.run(lambda: self._save_checkpoint(position), position)
                self._saved, self._unsaved = position, 0
                self._advance(position, 0)
                return
            delay = policy.delay(retries)
            retries += 1
            _log.warning(
                "projection %r: event %s at position %d failed (%s); retry %d of %d in %.2f s",
                self.name,
                event.event_id,
                position,
                failed,
                retries,
                policy.max_retries,
                delay,
            )
            await asyncio.sleep(delay)
            failed = None


def runner_for(
    store: ProjectionStore,
    projection: Projection | TransactionalProjection,
    *,
    options: RunnerOptions | None = None,
    holder: str | None = None,
    observer: Observer | None = None,
    progress: Progress | None = None,
    rebuild: bool = False,
) -> ProjectionRunner:
    """The runner a projection needs: exactly-once for a TransactionalProjection,
    at-least-once for a Projection."""
    if isinstance(projection, TransactionalProjection):
        return ExactlyOnceRunner(
            store,
            projection,
            options=options,
            holder=holder,
            observer=observer,
            progress=progress,
            rebuild=rebuild,
        )
    return ProjectionRunner(
        store,
        projection,
        options=options,
        holder=holder,
        observer=observer,
        progress=progress,
        rebuild=rebuild,
    )
