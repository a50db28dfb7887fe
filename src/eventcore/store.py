"""The storage contract, split by capability into small Protocols.

A backend stores *encoded* records (:class:`~eventcore.types.NewEvent` in,
:class:`~eventcore.types.RecordedEvent` out); turning domain objects into payloads
happens above it, in :mod:`eventcore.codec`. Every backend passes the shared
contract suite in :mod:`eventcore.testing.contract`.

Guarantees every backend gives:

- ``append`` is all-or-nothing: if any participating stream (written *or* only
  read) is not at its expected version, it raises
  :class:`~eventcore.errors.VersionConflict` and writes nothing.
- Global positions are assigned in commit order and strictly increase; a reader
  that tails ``read_all(after=P)`` never misses an event, however many writers
  there are.
- Filters on ``read_all`` are applied before ``limit``, and so is ``stop``: the
  last position to return (inclusive), so a page is bounded without counting
  events past it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeAlias, runtime_checkable

from eventcore._glob import matches as glob_matches
from eventcore._text import check_storable_text
from eventcore.errors import EventCoreError, ValidationError
from eventcore.types import AppendRequest, AppendResult, RecordedEvent, Snapshot, check_version

DEFAULT_PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which events of the global log to return.

    ``stream_prefix`` matches stream ids that start with it, literally (``%`` and
    ``_`` are ordinary characters). ``stream_pattern`` is a glob over the whole
    stream id: ``*`` any run, ``?`` one character, ``[abc]`` / ``[!abc]`` a set.
    ``event_types`` keeps only events whose type name is listed. All given
    conditions must hold.
    """

    stream_prefix: str | None = None
    stream_pattern: str | None = None
    event_types: frozenset[str] | None = None

    @classmethod
    def create(
        cls,
        stream_prefix: str | None = None,
        stream_pattern: str | None = None,
        event_types: Iterable[str] | None = None,
    ) -> LogFilter:
        if stream_prefix is not None and (not isinstance(stream_prefix, str) or not stream_prefix):
            raise ValidationError(f"stream_prefix must be a non-empty str, got {stream_prefix!r}")
        if stream_prefix is not None:
            check_storable_text(stream_prefix, "stream_prefix")
        if stream_pattern is not None and (
            not isinstance(stream_pattern, str) or not stream_pattern
        ):
            raise ValidationError(f"stream_pattern must be a non-empty str, got {stream_pattern!r}")
        if stream_pattern is not None:
            check_storable_text(stream_pattern, "stream_pattern")
        types: frozenset[str] | None = None
        if event_types is not None:
            if isinstance(event_types, str):
                raise ValidationError(
                    f"event_types must be a collection of type names, not the str {event_types!r}"
                )
            types = frozenset(event_types)
            if not types or not all(isinstance(t, str) and t for t in types):
                raise ValidationError(
                    f"event_types must be a non-empty collection of type names, got {event_types!r}"
                )
            for name in types:
                check_storable_text(name, "event type name")
        return cls(stream_prefix, stream_pattern, types)

    @property
    def is_empty(self) -> bool:
        return self.stream_prefix is None and self.stream_pattern is None and not self.event_types

    def matches(self, stream_id: str, event_type: str) -> bool:
        """The reference semantics; SQL backends translate them into their WHERE."""
        if self.stream_prefix is not None and not stream_id.startswith(self.stream_prefix):
            return False
        if self.stream_pattern is not None and not glob_matches(stream_id, self.stream_pattern):
            return False
        return self.event_types is None or event_type in self.event_types


NO_FILTER = LogFilter()


@runtime_checkable
class EventReader(Protocol):
    """Reads streams and the global log."""

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        """Events of one stream with version >= ``from_version``, oldest first."""
        ...

    async def read_streams(
        self,
        stream_ids: Iterable[str],
        *,
        from_versions: Mapping[str, int] | None = None,
        limit: int | None = None,
    ) -> dict[str, list[RecordedEvent]]:
        """Several streams in one call: for each, its events from version
        ``from_versions.get(stream, 1)`` on, at most ``limit`` of them; a missing
        stream maps to []. The keys keep the order of ``stream_ids``."""
        ...

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version (0 if it has no events), without its events."""
        ...

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
        """Events of the global log with position > ``after`` and, if ``stop`` is
        given, <= ``stop`` (inclusive), that pass the filters; the filters and
        ``stop`` apply before ``limit``. ``stop`` below ``after`` reads nothing."""
        ...

    async def read_stream_tail(self, stream_id: str, *, count: int = 1) -> list[RecordedEvent]:
        """The last ``count`` events of a stream (fewer if it is shorter), oldest
        first, read backwards through the (stream_id, stream_version) index
        without reading the rest of the stream; [] for a missing stream."""
        ...

    async def head_position(self) -> int:
        """The position of the last committed event in the log, 0 if there is none."""
        ...

    def iter_stream(
        self, stream_id: str, *, from_version: int = 1, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[RecordedEvent]:
        """Walk a stream page by page, holding one page in memory at a time."""
        ...

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
        """Walk the global log from ``after`` to its current end (or to ``stop``,
        inclusive), page by page."""
        ...


class _PageReader(Protocol):
    """The two reads :class:`PagedReads` walks with."""

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]: ...

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        stream_prefix: str | None = None,
        stream_pattern: str | None = None,
        event_types: Collection[str] | None = None,
        stop: int | None = None,
    ) -> list[RecordedEvent]: ...


class PagedReads:
    """Mixin giving :class:`EventReader`'s ``iter_stream`` and ``iter_all``, built
    on the class's own ``read_stream`` and ``read_all`` (one call per page).

    Every bundled store inherits it, so the paging lives once; a third-party
    backend that inherits it implements only the reads."""

    __slots__ = ()

    def iter_stream(
        self: _PageReader,
        stream_id: str,
        *,
        from_version: int = 1,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[RecordedEvent]:
        return _walk_stream(self, stream_id, from_version, page_size)

    def iter_all(
        self: _PageReader,
        *,
        after: int = 0,
        page_size: int = DEFAULT_PAGE_SIZE,
        stream_prefix: str | None = None,
        stream_pattern: str | None = None,
        event_types: Collection[str] | None = None,
        stop: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        # The arguments are checked when the walk is asked for, not at its first step.
        log_filter = LogFilter.create(stream_prefix, stream_pattern, event_types)
        check_log_bounds(after, stop)
        return _walk_log(self, after, page_size, log_filter, stop)


async def _walk_stream(
    reader: _PageReader, stream_id: str, from_version: int, page_size: int
) -> AsyncIterator[RecordedEvent]:
    """Yield a stream's events one page at a time; only one page is held."""
    size = check_page_size(page_size)
    version = from_version
    while True:
        page = await reader.read_stream(stream_id, from_version=version, limit=size)
        for event in page:
            yield event
        if len(page) < size:
            return
        version = page[-1].stream_version + 1


async def _walk_log(
    reader: _PageReader, after: int, page_size: int, log_filter: LogFilter, stop: int | None
) -> AsyncIterator[RecordedEvent]:
    """Yield the log after ``after`` to its current end or to ``stop``, one page at
    a time."""
    size = check_page_size(page_size)
    position = after
    while True:
        page = await reader.read_all(
            after=position,
            limit=size,
            stream_prefix=log_filter.stream_prefix,
            stream_pattern=log_filter.stream_pattern,
            event_types=log_filter.event_types,
            stop=stop,
        )
        for event in page:
            yield event
        if len(page) < size:
            return
        position = page[-1].global_position
        if stop is not None and position >= stop:
            return  # nothing is left below the bound: spare the empty read


def check_log_bounds(after: object, stop: object) -> tuple[int, int | None]:
    """Validate ``read_all``'s ``after`` and ``stop`` (global positions) the same
    way in every backend."""
    first = check_version(after, "after (a global position)")
    if stop is None:
        return first, None
    return first, check_version(stop, "stop (a global position)")


@runtime_checkable
class EventAppender(Protocol):
    """Appends atomically across streams with optimistic version checks."""

    async def append(self, request: AppendRequest) -> AppendResult: ...


AppendOutcome: TypeAlias = AppendResult | EventCoreError
"""What ``append_many`` returns per request: its result, or the error (a
:class:`~eventcore.errors.VersionConflict`, a refused request) that was its alone."""


@runtime_checkable
class BatchAppender(Protocol):
    """Appends several independent requests in one transaction."""

    async def append_many(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        """Apply ``requests`` in order, each checked against the versions the ones
        before it left, exactly as if appended one after another; a conflict is
        returned in the request's place and does not affect the others."""
        ...


@runtime_checkable
class EventStore(EventReader, EventAppender, Protocol):
    """A full event store: reads, appends, and a lifecycle."""

    async def close(self) -> None: ...


@runtime_checkable
class ReplicaReads(Protocol):
    """A store whose reads of the global log may come from a replica that lags its
    appends (the PostgreSQL store with a ``read_dsn``): its ``head_position`` may be
    behind a checkpoint saved on the primary a moment ago."""

    async def primary_head_position(self) -> int:
        """The log's head where appends are written (``head_position`` may lag it)."""
        ...

    async def wait_for_replica(self, position: int, max_wait: float) -> int:
        """Wait until the log's reads show ``position`` or ``max_wait`` seconds pass;
        return the head they show then."""
        ...


@runtime_checkable
class EventLookup(Protocol):
    """Finds stored events by id, through the index that keeps event ids unique.

    ``execute(..., command_id=...)`` uses it to recognise a command that already
    committed (see :mod:`eventcore._command_ids`)."""

    async def events_by_id(self, event_ids: Iterable[uuid.UUID]) -> list[RecordedEvent]:
        """The stored events among ``event_ids``, in log order; ids that are not
        stored are left out."""
        ...


@dataclass(frozen=True, slots=True)
class StreamSummary:
    """A stream that has events, and its current version (its number of events)."""

    stream_id: str
    version: int


@runtime_checkable
class StreamLister(Protocol):
    """Lists the streams that have events, in stream id order (code point order),
    through an index on stream ids; for tools (``eventcore streams``), not for
    commands."""

    async def list_streams(
        self, *, prefix: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[StreamSummary]:
        """At most ``limit`` streams whose id starts with ``prefix`` and sorts after
        ``after`` (pass the last id of a page to get the next)."""
        ...


MAX_LOOKUP_IDS = 1000  # per call: bounds the statement a backend builds


def check_event_ids(event_ids: object) -> list[uuid.UUID]:
    """Validate the argument of :meth:`EventLookup.events_by_id` the same way in
    every backend; duplicates are dropped."""
    if isinstance(event_ids, str | bytes) or not isinstance(event_ids, Iterable):
        raise ValidationError(f"event_ids must be an iterable of uuid.UUID, got {event_ids!r}")
    ids: dict[uuid.UUID, None] = {}
    for event_id in event_ids:
        if not isinstance(event_id, uuid.UUID):
            raise ValidationError(f"event ids must be uuid.UUID objects, got {event_id!r}")
        ids[event_id] = None
    if len(ids) > MAX_LOOKUP_IDS:
        raise ValidationError(
            f"events_by_id takes at most {MAX_LOOKUP_IDS} ids per call, got {len(ids)}"
        )
    return list(ids)


@runtime_checkable
class SnapshotStore(Protocol):
    """Snapshots of folded command state, kept beside the events."""

    async def save_snapshot(self, snapshot: Snapshot) -> bool:
        """Store ``snapshot`` unless the one stored under its key is as new or newer
        (see :meth:`Snapshot.supersedes`); return whether it was stored."""
        ...

    async def load_snapshot(self, key: str) -> Snapshot | None: ...


def check_requests(*requests: object) -> None:
    """Backends trust an AppendRequest (building one validated it); anything else is
    refused before it can reach the storage."""
    for request in requests:
        if not isinstance(request, AppendRequest):
            raise ValidationError(
                "append takes an AppendRequest (build one with AppendRequest.create("
                f"expected, events)), got {request!r}"
            )


def check_page_size(page_size: object) -> int:
    if type(page_size) is not int or page_size < 1:
        raise ValidationError(f"page_size must be a positive int, got {page_size!r}")
    return page_size


def check_snapshot_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise ValidationError(f"snapshot key must be a non-empty str, got {key!r}")
    return check_storable_text(key, "snapshot key")


@runtime_checkable
class CheckpointStore(Protocol):
    """Durable named positions, for projections and subscriptions."""

    async def save_checkpoint(self, name: str, position: int) -> None: ...

    async def load_checkpoint(self, name: str) -> int | None: ...

    async def delete_checkpoint(self, name: str) -> None:
        """Forget the checkpoint ``name`` (loading it then gives None); a missing
        one is no error."""
        ...


@runtime_checkable
class CheckpointLister(Protocol):
    """A store that can name every checkpoint it keeps (every bundled one can)."""

    async def checkpoint_names(self) -> list[str]:
        """The names of the saved checkpoints, in name order."""
        ...


@runtime_checkable
class LeaseStore(Protocol):
    """Named, expiring leases: at most one holder per name at a time.

    ``acquire_lease`` succeeds if the lease is free, expired, or already held by
    ``holder`` (which renews it). A lease lapses ``ttl`` seconds after it was last
    acquired unless renewed, so a holder that dies releases it by itself.
    """

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool: ...

    async def release_lease(self, name: str, holder: str) -> None: ...

    async def lease_holder(self, name: str) -> str | None: ...


MAX_LEASE_TTL = 365 * 24 * 3600  # a year: longer is a mistake, and overflows timestamps


def check_lease_args(name: object, holder: object, ttl: object | None = None) -> None:
    """Validate lease arguments the same way in every backend."""
    for what, value in (("lease name", name), ("lease holder", holder)):
        if not isinstance(value, str) or not value:
            raise ValidationError(f"{what} must be a non-empty str, got {value!r}")
        check_storable_text(value, what)
    if ttl is not None and (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not 0 < ttl <= MAX_LEASE_TTL  # also refuses NaN
    ):
        raise ValidationError(
            f"lease ttl must be a number of seconds above 0 and at most {MAX_LEASE_TTL}, "
            f"got {ttl!r}"
        )


def check_checkpoint_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ValidationError(f"checkpoint name must be a non-empty str, got {name!r}")
    return check_storable_text(name, "checkpoint name")


def check_checkpoint_position(position: object) -> int:
    return check_version(position, "checkpoint position")


# -- dead letters: events a projection gave up on -------------------------------------

MAX_DEAD_LETTER_ERROR = 4000  # characters of the error text kept with a dead letter


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event projection ``projection`` could not handle and skipped, with the
    error it raised (``error``: its type and message, at most
    ``MAX_DEAD_LETTER_ERROR`` characters) and when it gave up (``failed_at``, UTC)."""

    projection: str
    position: int
    event_id: uuid.UUID
    stream_id: str
    event_type: str
    error: str
    failed_at: datetime

    def __post_init__(self) -> None:
        check_checkpoint_name(self.projection)
        check_version(self.position, "dead letter position")
        if not isinstance(self.event_id, uuid.UUID):
            raise ValidationError(
                f"dead letter event_id must be a uuid.UUID, got {self.event_id!r}"
            )
        for what, value in (
            ("dead letter stream_id", self.stream_id),
            ("dead letter event_type", self.event_type),
            ("dead letter error", self.error),
        ):
            if not isinstance(value, str):
                raise ValidationError(f"{what} must be a str, got {value!r}")
            check_storable_text(value, what)
        if len(self.error) > MAX_DEAD_LETTER_ERROR:
            raise ValidationError(
                f"dead letter error must be at most {MAX_DEAD_LETTER_ERROR} characters, "
                f"got {len(self.error)}"
            )
        if not isinstance(self.failed_at, datetime) or self.failed_at.tzinfo is None:
            raise ValidationError(
                f"dead letter failed_at must be a timezone-aware datetime, got {self.failed_at!r}"
            )


@runtime_checkable
class DeadLetterStore(Protocol):
    """Per projection, the events it skipped. Recording the same position twice
    (an event redelivered after a restart) keeps one letter, the newer."""

    async def record_dead_letter(self, letter: DeadLetter) -> None: ...

    async def dead_letters(self, projection: str) -> list[DeadLetter]:
        """The projection's dead letters, oldest position first."""
        ...

    async def clear_dead_letters(self, projection: str) -> None: ...


def check_dead_letter(letter: object) -> DeadLetter:
    if not isinstance(letter, DeadLetter):
        raise ValidationError(f"record_dead_letter takes a DeadLetter, got {letter!r}")
    return letter


@runtime_checkable
class ProjectionStore(EventReader, CheckpointStore, LeaseStore, DeadLetterStore, Protocol):
    """What a projection runner needs: the log, checkpoints, leases, dead letters.
    Every bundled store (memory, SQLite, PostgreSQL) is one."""


# -- fencing: a lease holder's writes, refused once the lease has changed hands ------


@dataclass(frozen=True, slots=True)
class Fence:
    """Proof of leadership to attach to a write: lease ``lease`` was held with fence
    token ``token`` (from :meth:`FencedLeaseStore.acquire_fenced_lease`). A fenced
    write commits only if the lease's token is still ``token``, checked in the
    write's own transaction; otherwise it raises
    :class:`~eventcore.errors.LeaseLost` and writes nothing."""

    lease: str
    token: int

    def __post_init__(self) -> None:
        check_lease_args(self.lease, "-")
        if type(self.token) is not int or self.token < 0:
            raise ValidationError(f"fence token must be an int >= 0, got {self.token!r}")


def check_fence(fence: object) -> Fence | None:
    if fence is not None and not isinstance(fence, Fence):
        raise ValidationError(f"fence must be a Fence or None, got {fence!r}")
    return fence


@runtime_checkable
class FencedLeaseStore(CheckpointStore, LeaseStore, Protocol):
    """Leases with fencing tokens, and checkpoints that can be fenced.

    The token of a lease increases every time it changes hands (a first holder, a
    different holder after expiry or release); a renewal by the same holder keeps
    it. Tokens of one lease name never repeat, even after a release.
    """

    async def acquire_fenced_lease(self, name: str, holder: str, ttl: float) -> int | None:
        """:meth:`LeaseStore.acquire_lease`, returning the fence token, or None if
        another holder has the lease."""
        ...

    async def save_checkpoint(
        self, name: str, position: int, *, fence: Fence | None = None
    ) -> None:
        """Save the checkpoint; with ``fence``, only if the fence is still current
        (else raise :class:`~eventcore.errors.LeaseLost`, nothing written)."""
        ...


# -- exactly-once: a read model and its checkpoint in one transaction ---------------


@runtime_checkable
class ProjectionTransaction(Protocol):
    """An open transaction on the store's own database, handed to a
    transactional projection. Parameters are bound, never formatted into the SQL:
    PostgreSQL numbers them (``$1``, ``$2``), SQLite uses ``?``."""

    async def execute(self, sql: str, *params: object) -> None:
        """Run one statement (DDL, INSERT, UPDATE, DELETE) in the transaction."""
        ...

    async def fetch(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """Run a query in the transaction (it sees the transaction's own changes)."""
        ...


@runtime_checkable
class TransactionalCheckpointStore(FencedLeaseStore, Protocol):
    """A store whose database can hold a read model: its changes and the checkpoint
    commit in one transaction (exactly-once effect)."""

    def checkpoint_transaction(
        self, name: str, position: int, *, fence: Fence | None = None
    ) -> AbstractAsyncContextManager[ProjectionTransaction]:
        """Open a transaction; on a clean exit of the ``async with`` block save
        checkpoint ``name`` at ``position`` (refused with
        :class:`~eventcore.errors.LeaseLost` if ``fence`` is no longer current) and
        commit, all or nothing. If the block raises, everything is rolled back."""
        ...
