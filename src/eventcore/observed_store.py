"""A store wrapper that times every call: :func:`observe_store`.

::

    store = observe_store(await SQLiteEventStore.open("bank.sqlite"), observer)

The wrapper has exactly the capabilities of the store it wraps (snapshots,
checkpoints, leases, batch appends, waking followers), so code that checks for a
capability with ``isinstance(store, SnapshotStore)`` behaves the same on both.
Every call is reported to :meth:`Observer.store_operation` under the method's name,
failures with their error; store errors are also logged on ``eventcore.store``.
Iterators (``iter_stream``, ``iter_all``) and ``wait_for_append`` pass through
untimed: their duration is the caller's pace, not the store's.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Self, TypeVar

from eventcore.backends._group_commit import GroupCommitter
from eventcore.errors import StoreError, ValidationError
from eventcore.observe import Observer, ObserverGroup, as_observer
from eventcore.store import (
    DEFAULT_PAGE_SIZE,
    AppendOutcome,
    BatchAppender,
    CheckpointStore,
    DeadLetter,
    DeadLetterStore,
    EventLookup,
    EventStore,
    Fence,
    FencedLeaseStore,
    LeaseStore,
    ProjectionTransaction,
    ReplicaReads,
    SnapshotStore,
    TransactionalCheckpointStore,
)
from eventcore.subscription import AppendWaiter
from eventcore.types import AppendRequest, AppendResult, RecordedEvent, Snapshot

_log = logging.getLogger("eventcore.store")
T = TypeVar("T")
_LISTS = (tuple, list, str)  # stream ids that can be read twice


class ObservedStore:
    """An :class:`~eventcore.store.EventStore` reporting every call to an observer;
    build one with :func:`observe_store`."""

    def __init__(self, inner: EventStore, observer: Observer) -> None:
        self._inner: Any = inner
        self._observer = observer
        # Whom the executor may report this store's appends and reads to itself,
        # calling the wrapped store directly (see execute): the observer, unless a
        # subclass changes append or read_streams, which must then run as written.
        # Decided once here, not per command.
        cls = type(self)
        as_written = (
            cls.append is ObservedStore.append and cls.read_streams is ObservedStore.read_streams
        )
        self._executor_reports_to = observer if as_written else None

    @property
    def inner(self) -> EventStore:
        """The wrapped store."""
        store: EventStore = self._inner
        return store

    def __repr__(self) -> str:
        return f"observe_store({self._inner!r})"

    async def _timed(self, operation: str, call: Awaitable[T], context: object = None) -> T:
        start = time.perf_counter()
        try:
            result = await call
        except Exception as exc:
            self._failed(operation, start, exc, context)
            raise
        self._observer.store_operation(operation, time.perf_counter() - start, None)
        return result

    def _failed(self, operation: str, start: float, exc: Exception, context: object) -> None:
        self._observer.store_operation(operation, time.perf_counter() - start, exc)
        if isinstance(exc, StoreError):
            where = context() if callable(context) else context
            _log.warning("store %s failed (%s): %s", operation, where or "-", exc)

    # append and read_streams run once or more per command: they time their call
    # inline, which saves the coroutine _timed would add and the closure naming the
    # streams, which is only built if the call fails.

    async def append(self, request: AppendRequest) -> AppendResult:
        start = time.perf_counter()
        try:
            result: AppendResult = await self._inner.append(request)
        except Exception as exc:
            streams = getattr(request, "expected", ())
            self._failed("append", start, exc, lambda: [s for s, _ in streams])
            raise
        self._observer.store_operation("append", time.perf_counter() - start, None)
        return result

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        call = self._inner.read_stream(stream_id, from_version=from_version, limit=limit)
        return await self._timed("read_stream", call, lambda: f"stream {stream_id!r}")

    async def read_stream_tail(self, stream_id: str, *, count: int = 1) -> list[RecordedEvent]:
        call = self._inner.read_stream_tail(stream_id, count=count)
        return await self._timed("read_stream_tail", call, lambda: f"stream {stream_id!r}")

    async def read_streams(
        self,
        stream_ids: Iterable[str],
        *,
        from_versions: Mapping[str, int] | None = None,
        limit: int | None = None,
    ) -> dict[str, list[RecordedEvent]]:
        # A one-shot iterator is read once, here, so the message below can name it.
        streams = stream_ids if isinstance(stream_ids, _LISTS) else list(stream_ids)
        start = time.perf_counter()
        try:
            result: dict[str, list[RecordedEvent]] = await self._inner.read_streams(
                streams, from_versions=from_versions, limit=limit
            )
        except Exception as exc:
            self._failed("read_streams", start, exc, lambda: f"streams {list(streams)!r}")
            raise
        self._observer.store_operation("read_streams", time.perf_counter() - start, None)
        return result

    async def stream_version(self, stream_id: str) -> int:
        call = self._inner.stream_version(stream_id)
        return await self._timed("stream_version", call, lambda: f"stream {stream_id!r}")

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        stream_prefix: str | None = None,
        stream_pattern: str | None = None,
        event_types: Collection[str] | None = None,
        stop: int | None = None,
    ) -> list[RecordedEvent]:
        call = self._inner.read_all(
            after=after,
            limit=limit,
            stream_prefix=stream_prefix,
            stream_pattern=stream_pattern,
            event_types=event_types,
            stop=stop,
        )
        return await self._timed("read_all", call, lambda: f"after position {after!r}")

    async def head_position(self) -> int:
        return await self._timed("head_position", self._inner.head_position())

    def iter_stream(
        self, stream_id: str, *, from_version: int = 1, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[RecordedEvent]:
        walk: AsyncIterator[RecordedEvent] = self._inner.iter_stream(
            stream_id, from_version=from_version, page_size=page_size
        )
        return walk

    def iter_all(
        self,
        *,
        after: int = 0,
        page_size: int = DEFAULT_PAGE_SIZE,
        stream_prefix: str | None = None,
        stream_pattern: str | None = None,
        event_types: Collection[str] | None = None,
        stop: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        walk: AsyncIterator[RecordedEvent] = self._inner.iter_all(
            after=after,
            page_size=page_size,
            stream_prefix=stream_prefix,
            stream_pattern=stream_pattern,
            event_types=event_types,
            stop=stop,
        )
        return walk

    async def close(self) -> None:
        await self._inner.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class _Batches(ObservedStore):
    async def append_many(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        call = self._inner.append_many(requests)
        return await self._timed("append_many", call, lambda: f"{len(requests)} requests")


class _Snapshots(ObservedStore):
    async def save_snapshot(self, snapshot: Snapshot) -> bool:
        call = self._inner.save_snapshot(snapshot)
        return await self._timed("save_snapshot", call, lambda: f"key {snapshot.key!r}")

    async def load_snapshot(self, key: str) -> Snapshot | None:
        return await self._timed("load_snapshot", self._inner.load_snapshot(key), f"key {key!r}")


class _Checkpoints(ObservedStore):
    async def save_checkpoint(
        self, name: str, position: int, *, fence: Fence | None = None
    ) -> None:
        # Only a fenced write carries the fence on: a plain CheckpointStore takes none.
        call = (
            self._inner.save_checkpoint(name, position)
            if fence is None
            else self._inner.save_checkpoint(name, position, fence=fence)
        )
        await self._timed("save_checkpoint", call, lambda: f"checkpoint {name!r} at {position!r}")

    async def load_checkpoint(self, name: str) -> int | None:
        call = self._inner.load_checkpoint(name)
        return await self._timed("load_checkpoint", call, lambda: f"checkpoint {name!r}")

    async def delete_checkpoint(self, name: str) -> None:
        call = self._inner.delete_checkpoint(name)
        await self._timed("delete_checkpoint", call, lambda: f"checkpoint {name!r}")


class _DeadLetters(ObservedStore):
    async def record_dead_letter(self, letter: DeadLetter) -> None:
        call = self._inner.record_dead_letter(letter)
        await self._timed("record_dead_letter", call, lambda: f"projection {letter.projection!r}")

    async def dead_letters(self, projection: str) -> list[DeadLetter]:
        call = self._inner.dead_letters(projection)
        return await self._timed("dead_letters", call, lambda: f"projection {projection!r}")

    async def clear_dead_letters(self, projection: str) -> None:
        call = self._inner.clear_dead_letters(projection)
        await self._timed("clear_dead_letters", call, lambda: f"projection {projection!r}")


class _Leases(ObservedStore):
    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        call = self._inner.acquire_lease(name, holder, ttl)
        acquired: bool = await self._timed(
            "acquire_lease", call, lambda: f"lease {name!r} for {holder!r}"
        )
        _log.debug(
            "lease %r %s by %r (ttl %s s)",
            name,
            "acquired" if acquired else "refused",
            holder,
            ttl,
        )
        return acquired

    async def release_lease(self, name: str, holder: str) -> None:
        call = self._inner.release_lease(name, holder)
        await self._timed("release_lease", call, lambda: f"lease {name!r} of {holder!r}")
        _log.debug("lease %r released by %r", name, holder)

    async def lease_holder(self, name: str) -> str | None:
        return await self._timed("lease_holder", self._inner.lease_holder(name), f"lease {name!r}")


class _Fences(ObservedStore):
    async def acquire_fenced_lease(self, name: str, holder: str, ttl: float) -> int | None:
        call = self._inner.acquire_fenced_lease(name, holder, ttl)
        token: int | None = await self._timed(
            "acquire_lease", call, f"lease {name!r} for {holder!r}"
        )
        _log.debug(
            "lease %r %s by %r (token %s)", name, "acquired" if token else "refused", holder, token
        )
        return token


class _Transactions(ObservedStore):
    def checkpoint_transaction(
        self, name: str, position: int, *, fence: Fence | None = None
    ) -> AbstractAsyncContextManager[ProjectionTransaction]:
        # Handed through untimed: its length is the projection's own work.
        opened: AbstractAsyncContextManager[ProjectionTransaction]
        opened = self._inner.checkpoint_transaction(name, position, fence=fence)
        return opened


class _Waits(ObservedStore):
    async def wait_for_append(self, after: int, max_wait: float) -> None:
        await self._inner.wait_for_append(after, max_wait)


class _Replicas(ObservedStore):
    async def primary_head_position(self) -> int:
        return await self._timed("primary_head_position", self._inner.primary_head_position())

    async def wait_for_replica(self, position: int, max_wait: float) -> int:
        # A wait, like wait_for_append: not timed as a store operation.
        head: int = await self._inner.wait_for_replica(position, max_wait)
        return head


class _Lookups(ObservedStore):
    async def events_by_id(self, event_ids: Iterable[uuid.UUID]) -> list[RecordedEvent]:
        return await self._timed("events_by_id", self._inner.events_by_id(event_ids))


_CAPABILITIES: tuple[tuple[type, type[ObservedStore]], ...] = (
    (BatchAppender, _Batches),
    (EventLookup, _Lookups),
    (SnapshotStore, _Snapshots),
    (CheckpointStore, _Checkpoints),
    (LeaseStore, _Leases),
    (FencedLeaseStore, _Fences),
    (TransactionalCheckpointStore, _Transactions),
    (DeadLetterStore, _DeadLetters),
    (AppendWaiter, _Waits),
    (ReplicaReads, _Replicas),
)
_CLASSES: dict[tuple[type[ObservedStore], ...], type[ObservedStore]] = {}


def store_for_observers(store: EventStore, group: ObserverGroup) -> EventStore:
    """``store`` wrapped by :func:`observe_store` if a member of ``group`` listens to
    store calls or group commit batches, else ``store`` itself: timing every store
    call costs a little, so only when an observer wants it. This is how
    :class:`~eventcore.Application` (and the bench) attach observers to a store."""
    if group.listens_to("store_operation") or group.listens_to("batch_committed"):
        return observe_store(store, group)
    return store


def observe_store(store: EventStore, observer: Observer | Iterable[Observer]) -> ObservedStore:
    """Wrap ``store`` so that every call is reported to ``observer`` (one observer
    or several); the wrapper has the same capabilities as ``store``. Group commit
    batch sizes are reported too, for stores that batch."""
    if not isinstance(store, EventStore):
        raise ValidationError(f"observe_store() needs an EventStore, got {store!r}")
    group = as_observer(observer)
    assert group is not None  # observer is not None
    mixins = tuple(mixin for protocol, mixin in _CAPABILITIES if isinstance(store, protocol))
    cls = _CLASSES.get(mixins)
    if cls is None:
        cls = _CLASSES[mixins] = type("ObservedStore", (*mixins, ObservedStore), {})
    # The committer is the store's own; reaching for it here keeps every backend
    # free of observer plumbing. A store without group commit simply has none.
    committer = getattr(store, "_committer", None)
    if isinstance(committer, GroupCommitter):
        committer.batch_listeners.append(group.direct.batch_committed)
    return cls(store, group.direct)
