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
    ValidationError,
    VersionConflict,
)
from eventcore.store import AppendOutcome
from eventcore.types import (
    AppendRequest,
    AppendResult,
    EventMetadata,
    StreamId,
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
        arrays = cls([], [], [], [], [], [], [], [], [], [], [])
        encoded: dict[int, bytes] = {}  # metadata objects are shared by a command's events
        for command, request in enumerate(requests, 1):
            for stream, version in request.expected:
                arrays.expect_cmd.append(command)
                arrays.expect_streams.append(stream)
                arrays.expect_versions.append(version)
            arrays.expect_end.append(len(arrays.expect_streams))
            check_payload_sizes(request, max_payload_bytes)
            for event in request.events:
                arrays.event_cmd.append(command)
                arrays.event_ids.append(event.event_id)
                arrays.event_streams.append(event.stream_id)
                arrays.event_types.append(event.event_type)
                arrays.payloads.append(event.payload)
                arrays.metadata.append(_metadata_json(event.metadata, encoded))
            arrays.event_end.append(len(arrays.event_ids))
        return arrays

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

    def all_streams(self) -> list[str]:
        return sorted(set(self.expect_streams))


def check_payload_sizes(request: AppendRequest, max_payload_bytes: int) -> None:
    for event in request.events:
        if len(event.payload) > max_payload_bytes:
            raise ValidationError(
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
    stream_versions: dict[str, int] = {
        trusted_stream_id(s): v for s, v in zip(streams or (), versions or (), strict=True)
    }
    count = len(request.events)
    positions = tuple(range(first, first + count)) if count else ()
    return AppendResult(stream_versions, positions)


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


def conflict_from_lock_error(request: AppendRequest, current: Sequence[Any]) -> VersionConflict:
    """A deadlock or lock timeout (which the fixed lock order should prevent) is
    reported as a conflict on the first stream that moved, so the executor retries."""
    versions = {row[0]: int(row[1]) for row in current}
    for stream, expected in request.expected:
        actual = versions.get(stream, 0)
        if actual != expected:
            return VersionConflict(stream, expected, actual)
    if not request.expected:  # nothing to check: report the lock trouble itself
        return VersionConflict(StreamId("-"), 0, 0)
    stream, expected = request.expected[0]
    return VersionConflict(StreamId(stream), expected, versions.get(stream, 0))
