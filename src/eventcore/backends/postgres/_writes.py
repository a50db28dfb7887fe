"""Turning append requests into ``append_batch`` arguments, and its rows back
into results: the pure half of the PostgreSQL append path."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eventcore.codec import encode_metadata
from eventcore.errors import (
    DuplicateEventId,
    StoreUnavailable,
    ValidationError,
    VersionConflict,
)
from eventcore.store import AppendOutcome
from eventcore.types import (
    AppendRequest,
    EventMetadata,
    NewEvent,
    trusted_append_result,
    trusted_stream_id,
)


@dataclass(frozen=True, slots=True)
class BatchArrays:
    """The flat, per-column arrays ``append_batch`` takes; command ``i`` owns the
    slice between ``*_end[i-1]`` and ``*_end[i]``."""

    expect_end: list[int]
    expect_cmd: list[int]
    expect_streams: list[str]
    expect_versions: list[int]
    event_end: list[int]
    event_cmd: list[int]
    event_ids: list[Any]
    event_streams: list[str]
    event_types: list[str]
    payloads: list[bytes]
    metadata: list[bytes]

    @classmethod
    def build(cls, requests: Sequence[AppendRequest], max_payload_bytes: int) -> BatchArrays:
        # Local lists rather than the instance's fields: this loop runs once per
        # event of a batch of up to hundreds, and each attribute lookup it spares
        # (arrays.event_ids, ...) is one per event.
        expect_end: list[int] = []
        expect_cmd: list[int] = []
        expect_streams: list[str] = []
        expect_versions: list[int] = []
        event_end: list[int] = []
        event_cmd: list[int] = []
        event_ids: list[Any] = []
        event_streams: list[str] = []
        event_types: list[str] = []
        payloads: list[bytes] = []
        metadata: list[bytes] = []
        encoded: dict[int, bytes] = {}  # metadata objects are shared by a command's events
        for command, request in enumerate(requests, 1):
            for stream, version in request.expected:
                expect_cmd.append(command)
                expect_streams.append(stream)
                expect_versions.append(version)
            expect_end.append(len(expect_streams))
            for event in request.events:
                if len(event.payload) > max_payload_bytes:
                    raise _payload_too_large(event, max_payload_bytes)
                event_cmd.append(command)
                event_ids.append(event.event_id)
                event_streams.append(event.stream_id)
                event_types.append(event.event_type)
                payloads.append(event.payload)
                metadata.append(_metadata_json(event.metadata, encoded))
            event_end.append(len(event_ids))
        return cls(
            expect_end,
            expect_cmd,
            expect_streams,
            expect_versions,
            event_end,
            event_cmd,
            event_ids,
            event_streams,
            event_types,
            payloads,
            metadata,
        )

    def parameters(self) -> tuple[list[Any], ...]:
        return (
            self.expect_end,
            self.expect_cmd,
            self.expect_streams,
            self.expect_versions,
            self.event_end,
            self.event_cmd,
            self.event_ids,
            self.event_streams,
            self.event_types,
            self.payloads,
            self.metadata,
        )

    def one_stream_parameters(self) -> tuple[Any, ...] | None:
        """``append_to_stream``'s parameters when the batch is one command that
        expects one stream and writes only to it; otherwise None (``append_batch``)."""
        if len(self.expect_streams) != 1 or len(self.expect_end) != 1:
            return None
        stream = self.expect_streams[0]
        if self.event_streams.count(stream) != len(self.event_streams):
            return None  # an event for another stream: append_batch refuses it
        return (
            stream,
            self.expect_versions[0],
            self.event_ids,
            _shared_or_each(self.event_types),
            self.payloads,
            _shared_or_each(self.metadata),
        )

    def streams_parameters(self) -> tuple[list[Any], ...] | None:
        """``append_streams``'s parameters when every command expects one stream,
        writes only to it, and no two commands share one; otherwise None
        (``append_batch``)."""
        streams = self.expect_streams
        commands = len(self.expect_end)
        if self.expect_end != list(range(1, commands + 1)):
            return None  # a command expecting no stream, or several
        if len(set(streams)) != commands:
            return None
        if [streams[command - 1] for command in self.event_cmd] != self.event_streams:
            return None  # an event for another stream: append_batch refuses it
        return (
            streams,
            self.expect_versions,
            self.event_end,
            self.event_ids,
            self.event_types,
            self.payloads,
            self.metadata,
        )

    def disjoint_parameters(self) -> tuple[list[Any], ...] | None:
        """``append_disjoint``'s parameters when no two commands share a stream, every
        command expects one at least, and every event is for one of its command's
        streams; otherwise None (``append_batch``). An event's stream is sent as the
        index (from 1) of its command's expectation of it."""
        streams = self.expect_streams
        ends = self.expect_end
        index = {stream: i for i, stream in enumerate(streams, 1)}
        if len(index) != len(streams):
            return None  # a stream two commands expect
        if not ends or ends[0] == 0 or len(set(ends)) != len(ends):
            return None  # a command expecting no stream
        expect_cmd = self.expect_cmd
        event_expect: list[int] = []
        for command, stream in zip(self.event_cmd, self.event_streams, strict=True):
            expectation = index.get(stream)
            if expectation is None or expect_cmd[expectation - 1] != command:
                return None  # an event for another stream: append_batch refuses it
            event_expect.append(expectation)
        return (
            ends,
            streams,
            self.expect_versions,
            event_expect,
            self.event_ids,
            self.event_types,
            self.payloads,
            self.metadata,
        )

    def all_streams(self) -> list[str]:
        return sorted(set(self.expect_streams))


def _shared_or_each(values: list[Any]) -> list[Any]:
    """``[value]`` when every element equals the first (``append_to_stream`` then
    gives it to every event, migrations/0015), else ``values``: an element less
    to encode per event. A command's events share one metadata object, so the
    comparison is mostly by identity."""
    if len(values) > 1 and values.count(values[0]) == len(values):
        return values[:1]
    return values


def check_payload_sizes(request: AppendRequest, max_payload_bytes: int) -> None:
    for event in request.events:
        if len(event.payload) > max_payload_bytes:
            raise _payload_too_large(event, max_payload_bytes)


def _payload_too_large(event: NewEvent, max_payload_bytes: int) -> ValidationError:
    return ValidationError(
        f"payload of event {event.event_type!r} for stream {event.stream_id!r} "
        f"is {len(event.payload)} bytes; the limit (max_payload_bytes) is "
        f"{max_payload_bytes}"
    )


def _metadata_json(metadata: EventMetadata, cache: dict[int, bytes]) -> bytes:
    found = cache.get(id(metadata))
    if found is None:
        found = cache[id(metadata)] = encode_metadata(metadata)
    return found


def outcome_of(row: Any, request: AppendRequest) -> AppendOutcome:
    """One ``append_batch`` row as the result of its request."""
    _command, first, streams, versions, conflict_stream, expected, actual = row
    if conflict_stream is not None:
        return VersionConflict(trusted_stream_id(conflict_stream), expected, actual)
    stream_versions: dict[str, int]
    if streams is None:
        # A lean row (append_streams, append_disjoint, append_batch with p_lean;
        # migrations 0012-0014): the command found each stream at its expected version and wrote
        # its events there.
        stream_versions = dict(request.expected)
        for event in request.events:
            stream_versions[event.stream_id] += 1
    else:
        stream_versions = {}
        for stream, version in zip(streams, versions, strict=True):
            stream_versions[trusted_stream_id(stream)] = version  # a loop: no comprehension call
    count = len(request.events)
    positions = tuple(range(first, first + count)) if count else ()
    return trusted_append_result(stream_versions, positions)  # one per command of a batch


def duplicate_id_error(
    requests: Sequence[AppendRequest], stored: Iterable[uuid.UUID]
) -> DuplicateEventId | None:
    """After a unique violation: the ids of ``requests`` that are ``stored`` (looked
    up after the failure) or repeated within the batch, or None if there are none
    (then the violation was not an event id's, and is no request's fault)."""
    already = set(stored)
    seen: set[uuid.UUID] = set()
    duplicates: dict[uuid.UUID, None] = {}  # ordered, for the message
    for request in requests:
        for event in request.events:
            if event.event_id in already or event.event_id in seen:
                duplicates[event.event_id] = None
            seen.add(event.event_id)
    return DuplicateEventId(duplicates) if duplicates else None


def conflict_from_lock_error(
    request: AppendRequest, current: Sequence[Any]
) -> VersionConflict | None:
    """After a deadlock, lock timeout or serialization failure (the transaction was
    rolled back, nothing was written): the conflict on the first stream that moved,
    which is real and makes the executor re-read and retry, or None if none moved.

    A lock error on unmoved streams is not reported as a conflict: no writer got
    there first, and a made-up conflict would send callers of ``append`` after a
    change that never happened. Nor is it retried here: the store cannot know
    whether the lock holder (another application's transaction, an administrator)
    lets go soon, and a silent retry would double the caller's wait, and in a group
    commit every other caller's. The caller gets StoreUnavailable with the
    database's message and decides."""
    versions = {row[0]: int(row[1]) for row in current}
    for stream, expected in request.expected:
        actual = versions.get(stream, 0)
        if actual != expected:
            return VersionConflict(stream, expected, actual)
    return None


def lock_error_outcomes(
    requests: Sequence[AppendRequest], current: Sequence[Any], error: BaseException
) -> list[AppendOutcome]:
    """Each request's own outcome of a batch that failed on a lock error: its real
    conflict, or a StoreUnavailable (a fresh one each, caused by ``error``)."""
    outcomes: list[AppendOutcome] = []
    for request in requests:
        conflict = conflict_from_lock_error(request, current)
        if conflict is None:
            unavailable = StoreUnavailable(
                f"append could not take its locks, and nothing was written ({error}); "
                "no stream it expected had moved, so try the append again"
            )
            unavailable.__cause__ = error
            outcomes.append(unavailable)
        else:
            conflict.__cause__ = error
            outcomes.append(conflict)
    return outcomes
