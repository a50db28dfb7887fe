"""The one error tree of eventcore.

Every exception the library raises on purpose derives from :class:`EventCoreError`.
Driver and codec exceptions are wrapped (``raise ... from exc``) so callers never
need to import a driver to handle a failure::

    EventCoreError
    ├── ValidationError            bad input: the offending value is in the message
    │   ├── InvalidStreamId
    │   ├── InvalidExpectedVersions  duplicate, contradictory or negative versions
    │   ├── DuplicateEventId         an event id already stored or repeated in an append
    │   ├── UndeclaredStreamError    an event for a stream the command did not read
    │   ├── TooManyStreams           a command named more streams than its max_streams
    │   ├── StateReuseRefused        a state cache or snapshots for a command not opted in
    │   └── StateReuseMismatch       a reused state differs from a fresh fold (verify mode)
    ├── ConcurrencyError
    │   ├── VersionConflict          a stream moved since it was read (retried)
    │   ├── RetriesExhausted         conflicts outlasted the retry policy
    │   └── LeaseLost                another holder took the lease a fenced write relied on
    ├── BusinessRuleViolation        the command's own rules said no (never retried)
    ├── CodecError
    │   ├── EncodingError            an event could not be encoded
    │   ├── UnknownEventType         a stored type name no class is registered under
    │   └── DeserializationError     a stored payload could not be decoded
    ├── StoreError
    │   ├── StoreUnavailable         the storage could not be reached or failed
    │   └── StoreClosed              the store was used after close()
    └── ProjectionFailed             a projection runner stopped on an error

``ValidationError`` also derives from :class:`ValueError`, so code that already
guards user input with ``except ValueError`` keeps working.

Every error pickles with its attributes intact (``__reduce__`` where ``__init__``
takes its own arguments), so it can cross a process pool or multiprocessing queue.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any


class EventCoreError(Exception):
    """Base of every error eventcore raises on purpose."""


class ValidationError(EventCoreError, ValueError):
    """Input was rejected before anything was read or written."""


class InvalidStreamId(ValidationError):
    """A stream id is empty, too long or contains glob metacharacters."""

    def __init__(self, value: object, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(f"invalid stream id {value!r}: {reason}")

    def __reduce__(self) -> tuple[type[InvalidStreamId], tuple[object, str]]:
        return (type(self), (self.value, self.reason))


class InvalidExpectedVersions(ValidationError):
    """An append named a stream twice, or gave a negative expected version."""


class DuplicateEventId(ValidationError):
    """An append carried an event id that is already stored, or carried one twice.

    Nothing of the append was written. ``event_ids`` names the offending ids.
    """

    def __init__(self, event_ids: Iterable[uuid.UUID]) -> None:
        self.event_ids = tuple(event_ids)
        names = ", ".join(str(i) for i in self.event_ids)
        super().__init__(
            f"event id(s) {names} already stored or repeated within the append; nothing "
            "was written. Give every event its own id (NewEvent makes a fresh one when "
            "event_id is not given)"
        )

    def __reduce__(self) -> tuple[type[DuplicateEventId], tuple[tuple[uuid.UUID, ...]]]:
        return (type(self), (self.event_ids,))


class UndeclaredStreamError(ValidationError):
    """A command emitted an event for a stream it did not read."""

    def __init__(self, stream_id: str, read_streams: Iterable[str]) -> None:
        self.stream_id = stream_id
        self.read_streams = tuple(read_streams)
        super().__init__(
            f"event addressed to stream {stream_id!r}, which the command did not read; "
            f"it read {list(self.read_streams)!r}. Declare the stream in streams() "
            "or return it from resolve_streams()."
        )

    def __reduce__(self) -> tuple[type[UndeclaredStreamError], tuple[str, tuple[str, ...]]]:
        return (type(self), (self.stream_id, self.read_streams))


class ConcurrencyError(EventCoreError):
    """Another writer got there first."""


class VersionConflict(ConcurrencyError):
    """A stream's current version differs from the version the append expected."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"version conflict on stream {stream_id!r}: expected version {expected}, found {actual}"
        )

    def __reduce__(self) -> tuple[type[VersionConflict], tuple[str, int, int]]:
        return (type(self), (self.stream_id, self.expected, self.actual))


class RetriesExhausted(ConcurrencyError):
    """Every attempt the retry policy allowed ended in a version conflict."""

    def __init__(self, attempts: int, last_conflict: VersionConflict) -> None:
        self.attempts = attempts
        self.last_conflict = last_conflict
        super().__init__(f"gave up after {attempts} attempt(s); last conflict: {last_conflict}")

    def __reduce__(self) -> tuple[type[RetriesExhausted], tuple[int, VersionConflict]]:
        return (type(self), (self.attempts, self.last_conflict))


class LeaseLost(ConcurrencyError):
    """A fenced write was refused: lease ``lease`` has changed hands since fence
    token ``token`` was handed out (its token is now ``current``, or None if the
    lease was never taken). Nothing was written; the writer is no longer the leader."""

    def __init__(self, lease: str, token: int, current: int | None) -> None:
        self.lease = lease
        self.token = token
        self.current = current
        super().__init__(
            f"lease {lease!r} changed hands: this writer's fence token is {token}, the "
            f"lease's is now {current}; nothing was written. Stop writing and acquire "
            "the lease again"
        )

    def __reduce__(self) -> tuple[type[LeaseLost], tuple[str, int, int | None]]:
        return (type(self), (self.lease, self.token, self.current))


class BusinessRuleViolation(EventCoreError):
    """The command refused to act; raised from ``handle``. Never retried."""


class CodecError(EventCoreError):
    """Encoding or decoding of an event failed."""


class EncodingError(CodecError):
    """An event could not be turned into a stored payload."""


class UnknownEventType(CodecError):
    """A stored event's type name is not registered with the codec."""

    def __init__(self, event_type: str, stream_id: str | None, stream_version: int | None):
        self.event_type = event_type
        self.stream_id = stream_id
        self.stream_version = stream_version
        where = "" if stream_id is None else f" (stream {stream_id!r}, version {stream_version})"
        super().__init__(
            f"no event class is registered under type name {event_type!r}{where}; "
            "register it with Codec.register()"
        )

    def __reduce__(self) -> tuple[type[UnknownEventType], tuple[str, str | None, int | None]]:
        return (type(self), (self.event_type, self.stream_id, self.stream_version))


class DeserializationError(CodecError):
    """A stored payload does not decode into its registered event class."""

    def __init__(self, stream_id: str, stream_version: int, event_type: str, reason: str):
        self.stream_id = stream_id
        self.stream_version = stream_version
        self.event_type = event_type
        self.reason = reason
        super().__init__(
            f"cannot decode event {event_type!r} at stream {stream_id!r} "
            f"version {stream_version}: {reason}"
        )

    def __reduce__(self) -> tuple[type[DeserializationError], tuple[str, int, str, str]]:
        return (type(self), (self.stream_id, self.stream_version, self.event_type, self.reason))


class StoreError(EventCoreError):
    """The event store failed."""


class StoreUnavailable(StoreError):
    """The storage could not be reached, or failed while serving a request.

    Raised by an append, it means *outcome unknown*, not "nothing written": the
    connection can drop after the server committed, before the reply arrived.
    A retry may then write the events a second time; run commands with
    ``execute(..., command_id=...)`` to make such a retry safe.
    """


class StoreClosed(StoreError):
    """The store was used after it was closed."""

    def __init__(self, store: str) -> None:
        self.store = store
        super().__init__(f"{store} is closed; open a new store to continue")

    def __reduce__(self) -> tuple[type[StoreClosed], tuple[str]]:
        return (type(self), (self.store,))


# -- reading and reusing a command's state (raised by the executor) -----------------


class TooManyStreams(ValidationError):
    """One execution of a command named more streams than ``Command.max_streams``
    (declared and discovered together): most often a resolver that keeps naming
    new streams, which would otherwise never end."""

    def __init__(self, command: str, limit: int, last_streams: Iterable[str]) -> None:
        self.command = command
        self.limit = limit
        self.last_streams = tuple(last_streams)
        super().__init__(
            f"{command} named more than its max_streams={limit} streams in one execution; "
            f"the last ones named were {list(self.last_streams)!r}. If resolve_streams() "
            f"keeps naming new streams, make it stop; if the command really reads that "
            f"many, raise {command}.max_streams."
        )

    def __reduce__(self) -> tuple[type[TooManyStreams], tuple[str, int, tuple[str, ...]]]:
        return (type(self), (self.command, self.limit, self.last_streams))


class StateReuseRefused(ValidationError):
    """A state cache or snapshots were used with a command class that has not
    opted in to reused state (``reuses_state = True``)."""


class StateReuseMismatch(ValidationError):
    """Verification (``StateCache(verify=...)``) found a reused state that differs
    from the state folded afresh by the command being executed: the command breaks
    the rules of reused state (its ``apply`` reads its own fields, say)."""

    def __init__(self, command: str, reused: Any, fresh: Any) -> None:
        self.command = command
        self.reused = reused
        self.fresh = fresh
        super().__init__(
            f"{command} decided on a reused state {reused!r}, but folding its streams "
            f"afresh gives {fresh!r}. Reused state must depend only on the events and "
            f"the command's class: initial_state, apply and resolve_streams must not read "
            f"the command's fields. Fix the command, or set {command}.reuses_state = False "
            "and run it without a StateCache or snapshots."
        )

    def __reduce__(self) -> tuple[type[StateReuseMismatch], tuple[str, Any, Any]]:
        return (type(self), (self.command, self.reused, self.fresh))


# -- the read side ------------------------------------------------------------------


class ProjectionFailed(EventCoreError):
    """A projection runner stopped: an event its failure policy would not skip, a
    checkpoint that cannot be right, or a store away for longer than it waits."""

    def __init__(self, name: str, position: int, reason: str) -> None:
        self.name = name
        self.position = position
        self.reason = reason
        super().__init__(f"projection {name!r} stopped at position {position}: {reason}")

    def __reduce__(self) -> tuple[type[ProjectionFailed], tuple[str, int, str]]:
        return (type(self), (self.name, self.position, self.reason))
