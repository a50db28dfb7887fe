"""An event store that lives in the process's memory: for tests and prototypes.

Appends are atomic because they contain no ``await``: the version check and the
write happen in one step of the event loop, so no other task can interleave.

Events are kept in columns of ints, text and bytes, and an event becomes a
:class:`~eventcore.types.RecordedEvent` the first time it is read (kept from then
on): written events cost the garbage collector nothing (see
:mod:`eventcore.backends._memory_log`).
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
from eventcore.backends._memory_log import EventLog
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
)

_RELEASED: Final = ""  # the holder of a released lease: no holder's name is empty

_StoredMetadata = tuple[str | None, str | None, Mapping[str, Any] | None]
_NOTHING_STORED: Final[_StoredMetadata] = (None, None, None)


def _stored_metadata(metadata: EventMetadata) -> _StoredMetadata:
    """What a row keeps of ``metadata``: a JSON round trip of it, as a database would
    store it, so the caller's dict can change afterwards without changing the stored
    event, and metadata that is not JSON is refused here as by every other store."""
    if metadata is EMPTY_METADATA:
        return _NOTHING_STORED
    correlation, causation = metadata.correlation_id, metadata.causation_id
    if (
        not metadata.user
        and type(correlation) in (str, type(None))
        and (type(causation) in (str, type(None)))
    ):
        return (correlation, causation, None)  # nothing to copy, and the values are checked
    decoded = decode_metadata(encode_metadata(metadata))
    # Records are shared with every reader: they get a read-only view.
    user = MappingProxyType(dict(decoded.user)) if decoded.user else None
    return (decoded.correlation_id, decoded.causation_id, user)


class _Stream:
    """A stream: its number (what its rows name it by) and its events' positions."""

    __slots__ = ("number", "positions")

    def __init__(self, number: int) -> None:
        self.number = number
        self.positions: list[int] = []  # global positions, in version order


class InMemoryEventStore(PagedReads):
    """Implements :class:`~eventcore.store.EventStore`, checkpoints and leases."""

    def __init__(self) -> None:
        self._streams: dict[StreamId, _Stream] = {}
        self._stream_ids: list[StreamId] = []  # by stream number
        self._log = EventLog()
        # The unique index, keyed by the UUID's int (a UUID hashes in Python code,
        # its int in C), to the event's position.
        self._event_ids: dict[int, int] = {}
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
        for stream_id, expected in request.expected:
            stream = streams.get(stream_id)
            actual = 0 if stream is None else len(stream.positions)
            if actual != expected:
                raise VersionConflict(stream_id, expected, actual)
        events = request.events
        versions: dict[str, int] = dict(request.expected)
        head = len(self._log.versions)  # len(self._log), without a Python-level call
        now = datetime.now(UTC)
        if len(events) == 1:
            # The usual append (an executed command writing one event): no list of
            # metadata copies (a comprehension is a function call in 3.11), no zip,
            # no set of new ids. Callgrind, one cached Deposit command
            # (benchmarks/hot_path.py --instructions): 156k -> 144k instructions.
            new = events[0]
            if new.event_id.int in self._event_ids:
                raise DuplicateEventId({new.event_id: None})
            self._write(new, _stored_metadata(new.metadata), head + 1, versions, now)
            positions: tuple[int, ...] = (head + 1,)
        else:
            self._check_new_ids(events)
            # Copy every event's metadata (the step that can refuse one) before
            # changing anything, so a failure writes nothing. One stored copy per
            # metadata object: an executor's events share one.
            shared_metadata = events[0].metadata if events else EMPTY_METADATA
            shared_copy = _stored_metadata(shared_metadata)
            copies = [
                shared_copy if new.metadata is shared_metadata else _stored_metadata(new.metadata)
                for new in events
            ]
            positions = tuple(range(head + 1, head + 1 + len(events)))
            for position, new, copy in zip(positions, events, copies, strict=True):
                self._write(new, copy, position, versions, now)
        if events and self._waiting:
            # Only a waiting follower needs a fresh Event (about 0.3 us per append
            # saved, of the 6-7 us a one-event append costs).
            self._grown.set()
            self._grown = asyncio.Event()
        return trusted_append_result(versions, positions)

    def _write(
        self,
        new: NewEvent,
        metadata: _StoredMetadata,
        position: int,
        versions: dict[str, int],
        now: datetime,
    ) -> None:
        """Write ``new`` at ``position``: a value for every column of the log (see
        EventLog: no container is made), its stream's next version in ``versions``."""
        stream_id = new.stream_id
        version = versions[stream_id] = versions[stream_id] + 1
        stream = self._streams.get(stream_id)
        if stream is None:
            stream = self._streams[stream_id] = _Stream(len(self._stream_ids))
            self._stream_ids.append(stream_id)
        stream.positions.append(position)
        event_id = new.event_id.int
        correlation, causation, user = metadata
        log = self._log
        log.event_ids.append(event_id)
        log.stream_numbers.append(stream.number)
        log.versions.append(version)
        log.event_types.append(new.event_type)
        log.payloads.append(new.payload)
        log.correlations.append(correlation)
        log.causations.append(causation)
        log.users.append(user)
        log.recorded_at.append(now)
        log.records.append(None)
        self._event_ids[event_id] = position

    def _records(self, positions: Iterable[int]) -> list[RecordedEvent]:
        """The records at ``positions``, each built on its first read."""
        records, record, stream_ids = self._log.records, self._log.record, self._stream_ids
        # A record is always true (a dataclass with no __len__); a slot not built yet is None.
        return [records[p - 1] or record(p, stream_ids) for p in positions]

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
        """Refuse ``events`` (of an append of several) if one reuses a stored id or
        another's id; a one-event append checks its id in ``append``."""
        known = self._event_ids
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
        stream_id, count = check_stream_tail(stream_id, count)
        stream = self._streams.get(stream_id)
        return [] if stream is None else self._records(stream.positions[-count:])

    def _slice(self, stream_id: StreamId, start: int, limit: int | None) -> list[RecordedEvent]:
        stream = self._streams.get(stream_id)
        if stream is None:
            return []
        end = None if limit is None else start - 1 + limit
        return self._records(stream.positions[start - 1 : end])

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
        stream = self._streams.get(StreamId(stream_id))
        return 0 if stream is None else len(stream.positions)

    async def head_position(self) -> int:
        self._check_open()
        return len(self._log)

    async def list_streams(
        self, *, prefix: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[StreamSummary]:
        self._check_open()
        start, cursor, limit = check_list_streams(prefix, after, limit)
        names = sorted(s for s in self._streams if s.startswith(start) and s > cursor)
        return [StreamSummary(s, len(self._streams[s].positions)) for s in names[:limit]]

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
        end = len(self._log) if stop is None else min(stop, len(self._log))
        if log_filter.is_empty:
            if limit is not None:
                end = min(end, after + limit)
            return self._records(range(after + 1, end + 1))
        # Matched on the columns, so that events the filter skips are never built.
        stream_ids, matches = self._stream_ids, log_filter.matches
        numbers, types = self._log.stream_numbers, self._log.event_types
        matching = (
            p
            for p in range(after + 1, end + 1)
            if matches(stream_ids[numbers[p - 1]], types[p - 1])
        )
        return self._records(itertools.islice(matching, limit))

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
        return self._records(sorted({p for p in found if p is not None}))

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
