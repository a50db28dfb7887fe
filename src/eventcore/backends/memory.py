"""An event store that lives in the process's memory: for tests and prototypes.

Appends are atomic because they contain no ``await``: the version check and the
write happen in one step of the event loop, so no other task can interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, Self

from eventcore._stream_list import check_list_streams
from eventcore.backends._common import (
    check_log_read,
    check_stream_read,
    check_stream_tail,
    check_streams_read,
)
from eventcore.codec import decode_metadata, encode_metadata
from eventcore.errors import (
    DuplicateEventId,
    EncodingError,
    LeaseLost,
    StoreClosed,
    ValidationError,
    VersionConflict,
)
from eventcore.store import (
    AppendOutcome,
    DeadLetter,
    Fence,
    LogFilter,
    PagedReads,
    StreamSummary,
    check_checkpoint_name,
    check_checkpoint_position,
    check_dead_letter,
    check_event_ids,
    check_fence,
    check_lease_args,
    check_requests,
    check_snapshot_key,
)
from eventcore.types import (
    EMPTY_METADATA,
    AppendRequest,
    AppendResult,
    EventMetadata,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamId,
    trusted_append_result,
    trusted_metadata,
    trusted_recorded_event,
)

_RELEASED: Final = ""  # the holder of a released lease: no holder's name is empty

_NO_USER_METADATA: Final[Mapping[str, Any]] = MappingProxyType({})


def _stored_copy(metadata: EventMetadata) -> EventMetadata:
    """A JSON round trip of ``metadata``, as a database would store it: the caller's
    dict can change afterwards without changing the stored event, and metadata that
    is not JSON is refused here as it is by every other store."""
    if metadata is EMPTY_METADATA:
        return metadata
    correlation, causation = metadata.correlation_id, metadata.causation_id
    if (
        not metadata.user
        and type(correlation) in (str, type(None))
        and (type(causation) in (str, type(None)))
    ):
        # Nothing to copy, and the values are checked: built through the slots.
        return trusted_metadata(correlation, causation, _NO_USER_METADATA)
    decoded = decode_metadata(encode_metadata(metadata))
    # Records are shared with every reader: hand out a read-only view.
    return EventMetadata(
        decoded.correlation_id, decoded.causation_id, MappingProxyType(dict(decoded.user))
    )


class InMemoryEventStore(PagedReads):
    """Implements :class:`~eventcore.store.EventStore`, checkpoints and leases."""

    def __init__(self) -> None:
        self._streams: dict[StreamId, list[RecordedEvent]] = {}
        self._log: list[RecordedEvent] = []
        # The unique index, keyed by the UUID's int: a UUID hashes in Python code,
        # its int in C (two hashes per event written).
        self._event_ids: dict[int, RecordedEvent] = {}
        self._checkpoints: dict[str, int] = {}
        self._snapshots: dict[str, Snapshot] = {}
        self._leases: dict[str, tuple[str, float, int]] = {}  # holder, expiry, token
        self._dead_letters: dict[str, dict[int, DeadLetter]] = {}
        self._grown = asyncio.Event()
        self._waiting = 0  # tasks in wait_for_append: only they need _grown set
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("InMemoryEventStore")

    async def append(self, request: AppendRequest) -> AppendResult:
        if self._closed:  # _check_open(), inline: a call less per append
            raise StoreClosed("InMemoryEventStore")
        if type(request) is not AppendRequest:
            check_requests(request)
        streams = self._streams
        for stream, expected in request.expected:
            actual = len(streams.get(stream, ()))
            if actual != expected:
                raise VersionConflict(stream, expected, actual)
        events = request.events
        self._check_new_ids(events)
        # Build every record before changing anything, so a failure writes nothing.
        versions: dict[str, int] = dict(request.expected)
        head = len(self._log)
        now = datetime.now(UTC)
        # One stored copy per metadata object; an executor's events share one.
        shared_metadata = events[0].metadata if events else EMPTY_METADATA
        shared_copy = _stored_copy(shared_metadata)
        records: list[RecordedEvent] = []
        for position, new in enumerate(events, head + 1):
            version = versions[new.stream_id] = versions[new.stream_id] + 1
            metadata = (
                shared_copy
                if new.metadata is shared_metadata
                else _stored_copy(new.metadata)  # not shared: copied once per event
            )
            records.append(
                # The request's values were checked (or built by the executor):
                # built through the slots, without the dataclass __init__.
                trusted_recorded_event(
                    new.event_id,
                    new.stream_id,
                    version,
                    position,
                    new.event_type,
                    new.payload,
                    metadata,
                    now,
                )
            )
        event_ids = self._event_ids
        for record in records:
            stream_events = streams.get(record.stream_id)
            if stream_events is None:
                stream_events = streams[record.stream_id] = []
            stream_events.append(record)
            event_ids[record.event_id.int] = record
        self._log.extend(records)
        if records and self._waiting:
            # Only a waiting follower needs a fresh Event (about 0.3 us per append
            # saved, of the 6-7 us a one-event append costs).
            self._grown.set()
            self._grown = asyncio.Event()
        return trusted_append_result(versions, tuple(range(head + 1, head + 1 + len(records))))

    async def append_many(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        """Each request in turn, as separate appends; a conflict or a refused request
        is returned in its place. (Nothing to batch in memory: for API parity.)"""
        outcomes: list[AppendOutcome] = []
        for request in requests:
            try:
                outcomes.append(await self.append(request))
            except (VersionConflict, ValidationError, EncodingError) as exc:
                outcomes.append(exc)
        return outcomes

    def _check_new_ids(self, events: tuple[NewEvent, ...]) -> None:
        known = self._event_ids
        if len(events) == 1:  # the usual append: no set to build
            if events[0].event_id.int in known:
                raise DuplicateEventId({events[0].event_id: None})
            return
        seen: set[uuid.UUID] = set()
        duplicates: dict[uuid.UUID, None] = {}  # ordered, for the message
        for new in events:
            if new.event_id.int in known or new.event_id in seen:
                duplicates[new.event_id] = None
            seen.add(new.event_id)
        if duplicates:
            raise DuplicateEventId(duplicates)

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        self._check_open()
        stream, start, limit = check_stream_read(stream_id, from_version, limit)
        return self._slice(stream, start, limit)

    async def read_stream_tail(self, stream_id: str, *, count: int = 1) -> list[RecordedEvent]:
        self._check_open()
        stream, count = check_stream_tail(stream_id, count)
        return self._streams.get(stream, [])[-count:]

    def _slice(self, stream: StreamId, start: int, limit: int | None) -> list[RecordedEvent]:
        events = self._streams.get(stream, [])
        end = None if limit is None else start - 1 + limit
        return events[start - 1 : end]

    async def read_streams(
        self,
        stream_ids: Iterable[str],
        *,
        from_versions: Mapping[str, int] | None = None,
        limit: int | None = None,
    ) -> dict[str, list[RecordedEvent]]:
        self._check_open()
        starts, limit = check_streams_read(stream_ids, from_versions, limit)
        return {stream: self._slice(stream, start, limit) for stream, start in starts}

    async def stream_version(self, stream_id: str) -> int:
        self._check_open()
        return len(self._streams.get(StreamId(stream_id), ()))

    async def head_position(self) -> int:
        self._check_open()
        return len(self._log)

    async def list_streams(
        self, *, prefix: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[StreamSummary]:
        self._check_open()
        start, cursor, limit = check_list_streams(prefix, after, limit)
        names = sorted(s for s in self._streams if s.startswith(start) and s > cursor)
        return [StreamSummary(s, len(self._streams[s])) for s in names[:limit]]

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
        self._check_open()
        after, limit, stop = check_log_read(after, limit, stop)
        log_filter = LogFilter.create(stream_prefix, stream_pattern, event_types)
        return self._read_log(after, limit, log_filter, stop)

    def _read_log(
        self, after: int, limit: int | None, log_filter: LogFilter, stop: int | None = None
    ) -> list[RecordedEvent]:
        # Position p is at index p - 1: positions after..stop are the slice after:stop.
        tail: Iterable[RecordedEvent] = itertools.islice(self._log, after, stop)
        if not log_filter.is_empty:
            tail = (e for e in tail if log_filter.matches(e.stream_id, e.event_type))
        return list(itertools.islice(tail, limit))

    async def wait_for_append(self, after: int, max_wait: float) -> None:
        """Return once the log is past ``after``, or after ``max_wait`` seconds."""
        self._check_open()
        if len(self._log) > after:
            return
        self._waiting += 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._grown.wait(), max_wait)
        finally:
            self._waiting -= 1

    # -- lookup by event id --------------------------------------------------------

    async def events_by_id(self, event_ids: Iterable[uuid.UUID]) -> list[RecordedEvent]:
        self._check_open()
        found = (self._event_ids.get(i.int) for i in check_event_ids(event_ids))
        return sorted(filter(None, found), key=lambda record: record.global_position)

    # -- snapshots -----------------------------------------------------------------

    async def save_snapshot(self, snapshot: Snapshot) -> bool:
        self._check_open()
        check_snapshot_key(snapshot.key)
        current = self._snapshots.get(snapshot.key)
        if current is not None and not snapshot.supersedes(current):
            return False
        self._snapshots[snapshot.key] = snapshot
        return True

    async def load_snapshot(self, key: str) -> Snapshot | None:
        self._check_open()
        return self._snapshots.get(check_snapshot_key(key))

    # -- checkpoints ---------------------------------------------------------------

    async def save_checkpoint(
        self, name: str, position: int, *, fence: Fence | None = None
    ) -> None:
        self._check_open()
        check_checkpoint_name(name)
        check_checkpoint_position(position)
        checked = check_fence(fence)
        if checked is not None:
            self._check_fence(checked)
        self._checkpoints[name] = position

    async def load_checkpoint(self, name: str) -> int | None:
        self._check_open()
        check_checkpoint_name(name)
        return self._checkpoints.get(name)

    async def delete_checkpoint(self, name: str) -> None:
        self._check_open()
        check_checkpoint_name(name)
        self._checkpoints.pop(name, None)

    async def checkpoint_names(self) -> list[str]:
        self._check_open()
        return sorted(self._checkpoints)

    # -- dead letters --------------------------------------------------------------

    async def record_dead_letter(self, letter: DeadLetter) -> None:
        self._check_open()
        check_dead_letter(letter)
        self._dead_letters.setdefault(letter.projection, {})[letter.position] = letter

    async def dead_letters(self, projection: str) -> list[DeadLetter]:
        self._check_open()
        check_checkpoint_name(projection)
        letters = self._dead_letters.get(projection, {})
        return [letters[position] for position in sorted(letters)]

    async def clear_dead_letters(self, projection: str) -> None:
        self._check_open()
        check_checkpoint_name(projection)
        self._dead_letters.pop(projection, None)

    # -- leases --------------------------------------------------------------------

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        return await self.acquire_fenced_lease(name, holder, ttl) is not None

    async def acquire_fenced_lease(self, name: str, holder: str, ttl: float) -> int | None:
        self._check_open()
        check_lease_args(name, holder, ttl)
        now = time.monotonic()
        current = self._leases.get(name)
        if current is None:
            token = 1
        elif current[0] == holder:
            token = current[2]
        elif current[1] > now:
            return None
        else:
            token = current[2] + 1
        self._leases[name] = (holder, now + ttl, token)
        return token

    async def release_lease(self, name: str, holder: str) -> None:
        self._check_open()
        check_lease_args(name, holder)
        current = self._leases.get(name)
        if current is not None and current[0] == holder:
            # Kept, expired, so the next holder's token is greater than this one's.
            self._leases[name] = (_RELEASED, 0.0, current[2])

    def _check_fence(self, fence: Fence) -> None:
        current = self._leases.get(fence.lease)
        token = None if current is None else current[2]
        if token != fence.token:
            raise LeaseLost(fence.lease, fence.token, token)

    async def lease_holder(self, name: str) -> str | None:
        self._check_open()
        check_lease_args(name, "-")
        current = self._leases.get(name)
        if current is None or current[1] <= time.monotonic():
            return None
        return current[0]
