"""A store wrapper that injects faults into a real store, for testing retries.

It wraps a real store rather than replacing it: everything not injected goes
through to the real thing, so tests keep real storage semantics::

    store = FaultInjectingStore(InMemoryEventStore())
    store.conflict_next_appends(2)          # two "someone else wrote first"
    result = await execute(store, command)  # succeeds on the third attempt
    assert result.attempts == 3
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from typing import Any

from eventcore.errors import StoreUnavailable, ValidationError, VersionConflict
from eventcore.store import (
    DEFAULT_PAGE_SIZE,
    CheckpointStore,
    DeadLetter,
    DeadLetterStore,
    EventLookup,
    EventStore,
    LeaseStore,
    SnapshotStore,
)
from eventcore.subscription import AppendWaiter
from eventcore.types import AppendRequest, AppendResult, RecordedEvent, Snapshot


class FaultInjectingStore:
    """Implements :class:`~eventcore.store.EventStore` by delegating to ``inner``."""

    def __init__(self, inner: EventStore, *, latency: float | None = None) -> None:
        """``latency``: seconds to wait before each read and append, like a network
        round trip would; 0 still yields to the event loop, so concurrent commands
        interleave even over the in-memory store."""
        self.inner = inner
        self.latency = latency
        self.append_calls = 0
        self.read_calls = 0
        self.log_read_calls = 0
        self.wait_calls = 0
        self._conflicts = 0
        self._append_failures: list[BaseException] = []
        self._lost_replies: list[BaseException] = []
        self._read_failures: list[BaseException] = []
        self._log_read_failures: list[BaseException] = []
        self._wait_failures: list[BaseException] = []
        self._call_failures: dict[str, list[BaseException]] = {}
        self._refused_leases = 0
        self.calls: dict[str, int] = {}

    def conflict_next_appends(self, count: int = 1) -> None:
        """The next ``count`` appends raise VersionConflict and write nothing, as if
        another writer had moved the first participating stream."""
        self._conflicts += count

    def fail_next_appends(self, count: int = 1, error: BaseException | None = None) -> None:
        """The next ``count`` appends raise ``error`` (StoreUnavailable by default)."""
        self._append_failures.extend([error or StoreUnavailable("injected append failure")] * count)

    def lose_next_append_replies(self, count: int = 1, error: BaseException | None = None) -> None:
        """The next ``count`` appends are committed, then raise ``error``
        (StoreUnavailable by default): the connection dropped, or the caller was
        cancelled, after the server committed. The caller cannot tell this from a
        failed append; ``execute(..., command_id=...)`` makes its retry safe."""
        lost = error or StoreUnavailable("injected loss of the reply to a committed append")
        self._lost_replies.extend([lost] * count)

    def fail_next_reads(self, count: int = 1, error: BaseException | None = None) -> None:
        """The next ``count`` stream reads raise ``error`` (StoreUnavailable by default)."""
        self._read_failures.extend([error or StoreUnavailable("injected read failure")] * count)

    def fail_next_log_reads(self, count: int = 1, error: BaseException | None = None) -> None:
        """The next ``count`` reads of the global log (``read_all``,
        ``head_position``) raise ``error`` (StoreUnavailable by default)."""
        self._log_read_failures.extend(
            [error or StoreUnavailable("injected log read failure")] * count
        )

    def fail_next_waits(self, count: int = 1, error: BaseException | None = None) -> None:
        """The next ``count`` calls of ``wait_for_append`` raise ``error``
        (StoreUnavailable by default)."""
        self._wait_failures.extend([error or StoreUnavailable("injected wait failure")] * count)

    def fail_next_calls(
        self, operation: str, count: int = 1, error: BaseException | None = None
    ) -> None:
        """The next ``count`` calls of ``operation`` (one of the checkpoint, lease
        and dead-letter methods, by name) raise ``error`` (StoreUnavailable by
        default) without reaching the inner store."""
        if operation not in _PASSED_THROUGH:
            raise ValidationError(
                f"fail_next_calls takes one of {sorted(_PASSED_THROUGH)}, got {operation!r}"
            )
        failure = error or StoreUnavailable(f"injected {operation} failure")
        self._call_failures.setdefault(operation, []).extend([failure] * count)

    def refuse_next_leases(self, count: int = 1) -> None:
        """The next ``count`` calls of ``acquire_lease`` answer False, as if another
        holder had the lease (the lease is lost, for a holder renewing it)."""
        self._refused_leases += count

    async def _wait(self) -> None:
        if self.latency is not None:
            await asyncio.sleep(self.latency)

    async def append(self, request: AppendRequest) -> AppendResult:
        self.append_calls += 1
        await self._wait()
        if self._append_failures:
            raise self._append_failures.pop(0)
        if self._conflicts and request.expected:
            self._conflicts -= 1
            stream, expected = request.expected[0]
            raise VersionConflict(stream, expected, expected + 1)
        result = await self.inner.append(request)
        if self._lost_replies:
            raise self._lost_replies.pop(0)
        return result

    async def _before_read(self) -> None:
        self.read_calls += 1
        await self._wait()
        if self._read_failures:
            raise self._read_failures.pop(0)

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        await self._before_read()
        return await self.inner.read_stream(stream_id, from_version=from_version, limit=limit)

    async def read_stream_tail(self, stream_id: str, *, count: int = 1) -> list[RecordedEvent]:
        await self._before_read()
        return await self.inner.read_stream_tail(stream_id, count=count)

    async def read_streams(
        self,
        stream_ids: Iterable[str],
        *,
        from_versions: Mapping[str, int] | None = None,
        limit: int | None = None,
    ) -> dict[str, list[RecordedEvent]]:
        await self._before_read()
        return await self.inner.read_streams(stream_ids, from_versions=from_versions, limit=limit)

    async def stream_version(self, stream_id: str) -> int:
        return await self.inner.stream_version(stream_id)

    async def _before_log_read(self) -> None:
        self.log_read_calls += 1
        await self._wait()
        if self._log_read_failures:
            raise self._log_read_failures.pop(0)

    async def head_position(self) -> int:
        await self._before_log_read()
        return await self.inner.head_position()

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
        await self._before_log_read()
        return await self.inner.read_all(
            after=after,
            limit=limit,
            stream_prefix=stream_prefix,
            stream_pattern=stream_pattern,
            event_types=event_types,
            stop=stop,
        )

    def iter_stream(
        self, stream_id: str, *, from_version: int = 1, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[RecordedEvent]:
        return self.inner.iter_stream(stream_id, from_version=from_version, page_size=page_size)

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
        return self.inner.iter_all(
            after=after,
            page_size=page_size,
            stream_prefix=stream_prefix,
            stream_pattern=stream_pattern,
            event_types=event_types,
            stop=stop,
        )

    async def events_by_id(self, event_ids: Iterable[uuid.UUID]) -> list[RecordedEvent]:
        """Delegated; refused if the inner store cannot look events up."""
        if not isinstance(self.inner, EventLookup):
            raise ValidationError(f"{type(self.inner).__qualname__} cannot look events up by id")
        return await self.inner.events_by_id(event_ids)

    async def wait_for_append(self, after: int, max_wait: float) -> None:
        """Waits as the inner store does; one that cannot wake readers is polled,
        as :func:`~eventcore.follow` would poll it."""
        self.wait_calls += 1
        if self._wait_failures:
            raise self._wait_failures.pop(0)
        if isinstance(self.inner, AppendWaiter):
            await self.inner.wait_for_append(after, max_wait)
        else:
            await asyncio.sleep(max_wait)

    async def save_snapshot(self, snapshot: Snapshot) -> bool:
        """Delegated when the inner store keeps snapshots; refused otherwise."""
        if isinstance(self.inner, SnapshotStore):
            return await self.inner.save_snapshot(snapshot)
        return False

    async def load_snapshot(self, key: str) -> Snapshot | None:
        if isinstance(self.inner, SnapshotStore):
            return await self.inner.load_snapshot(key)
        return None

    # -- checkpoints, leases, dead letters: passed through, failures injectable ----------

    async def _through(self, operation: str, kind: type[Any]) -> Any:
        self.calls[operation] = self.calls.get(operation, 0) + 1
        failures = self._call_failures.get(operation)
        if failures:
            raise failures.pop(0)
        if not isinstance(self.inner, kind):
            raise ValidationError(f"{type(self.inner).__qualname__} has no {operation}")
        return self.inner

    async def save_checkpoint(self, name: str, position: int) -> None:
        inner: CheckpointStore = await self._through("save_checkpoint", CheckpointStore)
        await inner.save_checkpoint(name, position)

    async def load_checkpoint(self, name: str) -> int | None:
        inner: CheckpointStore = await self._through("load_checkpoint", CheckpointStore)
        return await inner.load_checkpoint(name)

    async def delete_checkpoint(self, name: str) -> None:
        inner: CheckpointStore = await self._through("delete_checkpoint", CheckpointStore)
        await inner.delete_checkpoint(name)

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        inner: LeaseStore = await self._through("acquire_lease", LeaseStore)
        if self._refused_leases:
            self._refused_leases -= 1
            return False
        return await inner.acquire_lease(name, holder, ttl)

    async def release_lease(self, name: str, holder: str) -> None:
        inner: LeaseStore = await self._through("release_lease", LeaseStore)
        await inner.release_lease(name, holder)

    async def lease_holder(self, name: str) -> str | None:
        inner: LeaseStore = await self._through("lease_holder", LeaseStore)
        return await inner.lease_holder(name)

    async def record_dead_letter(self, letter: DeadLetter) -> None:
        inner: DeadLetterStore = await self._through("record_dead_letter", DeadLetterStore)
        await inner.record_dead_letter(letter)

    async def dead_letters(self, projection: str) -> list[DeadLetter]:
        inner: DeadLetterStore = await self._through("dead_letters", DeadLetterStore)
        return await inner.dead_letters(projection)

    async def clear_dead_letters(self, projection: str) -> None:
        inner: DeadLetterStore = await self._through("clear_dead_letters", DeadLetterStore)
        await inner.clear_dead_letters(projection)

    async def close(self) -> None:
        await self.inner.close()


_PASSED_THROUGH = frozenset(
    {
        "save_checkpoint",
        "load_checkpoint",
        "delete_checkpoint",
        "acquire_lease",
        "release_lease",
        "lease_holder",
        "record_dead_letter",
        "dead_letters",
        "clear_dead_letters",
    }
)
