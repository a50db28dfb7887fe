"""The steps the executor's plan yields, and what it returns.

A plan (:func:`eventcore._plan.plan_execution`) is a generator: it yields one of
these step objects for each piece of I/O it needs and is sent the result. Their
public home is :mod:`eventcore.plan`.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from eventcore.types import AppendRequest, Snapshot, StreamId, slot_setters

_new = object.__new__

DEFAULT_FOLD_PAGE_SIZE = 2000


@dataclass(frozen=True, slots=True)
class ReadStreams:
    """Step: read each stream from its version, at most ``limit`` events each;
    reply with ``dict[str, list[RecordedEvent]]``."""

    stream_ids: tuple[StreamId, ...]
    from_versions: tuple[int, ...]
    limit: int | None


@dataclass(frozen=True, slots=True)
class AppendEvents:
    """Step: append; reply with :class:`AppendResult`, or throw the
    ``VersionConflict`` (or ``ValidationError``) the store raised."""

    request: AppendRequest


@dataclass(frozen=True, slots=True)
class LoadSnapshot:
    """Step: load the snapshot stored under ``key``; reply with it or ``None``
    (also ``None`` when the store keeps no snapshots)."""

    key: str


@dataclass(frozen=True, slots=True)
class SaveSnapshot:
    """Step: store a snapshot (a store may keep a newer one); reply with ``None``."""

    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class Sleep:
    """Step: wait this many seconds (backoff before a retry); reply with ``None``."""

    seconds: float


@dataclass(frozen=True, slots=True)
class LookupEvents:
    """Step: fetch the stored events with these ids; reply with the
    ``list[RecordedEvent]`` of those found. (Yielded around a plan run with a
    command id, see :mod:`eventcore._command_ids`.)"""

    event_ids: tuple[uuid.UUID, ...]


Step: TypeAlias = ReadStreams | AppendEvents | Sleep | LoadSnapshot | SaveSnapshot | LookupEvents
Plan: TypeAlias = Generator[Step, Any, "ExecutionResult"]
Versions: TypeAlias = dict[StreamId, int]


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """What a successful :func:`eventcore.execute` did.

    ``attempts`` counts how many times the command decided (1 unless a conflict,
    or a stale cached state, made it decide again); ``stream_versions`` holds every
    stream the command read, at its version after the append; ``positions`` the
    global position of each written event in the order ``handle`` returned them.

    ``already_applied``: this execution wrote nothing because an earlier one with
    the same ``command_id`` had committed; ``events_written`` and ``positions``
    then describe that earlier append, and ``stream_versions`` holds the version
    each stream it wrote reached with it (the streams it only read are not known).
    """

    attempts: int
    events_written: int
    stream_versions: Mapping[str, int]
    positions: tuple[int, ...]
    already_applied: bool = False


(_set_request,) = slot_setters(AppendEvents)


def append_step(request: AppendRequest) -> AppendEvents:
    """``AppendEvents(request)`` built without the frozen dataclass ``__init__``
    (which sets its field through ``object.__setattr__``), once per command."""
    made = _new(AppendEvents)
    _set_request(made, request)
    return made


_set_attempts, _set_written, _set_versions, _set_positions, _set_replayed = slot_setters(
    ExecutionResult
)


def executed(
    attempts: int,
    events_written: int,
    stream_versions: Mapping[str, int],
    positions: tuple[int, ...],
) -> ExecutionResult:
    """``ExecutionResult(...)`` of an execution that ran (not a replay), built
    without the dataclass ``__init__``, once per command (see
    :func:`eventcore.types.trusted_metadata`)."""
    made = _new(ExecutionResult)
    _set_attempts(made, attempts)
    _set_written(made, events_written)
    _set_versions(made, stream_versions)
    _set_positions(made, positions)
    _set_replayed(made, False)
    return made
