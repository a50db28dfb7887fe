"""The executor's decision logic: a pure generator of I/O steps.

:func:`plan_execution` yields :class:`ReadStreams`, :class:`AppendEvents` and
:class:`Sleep` steps and is sent their results (a version conflict is thrown into
it). It never touches a store or an event loop, so it can be driven by
:func:`eventcore.execute.run_plan`, by the scenario helper with no store at all,
or by hand in tests.

Per attempt: the streams are read and folded in order, page by page (a long
stream is never held in memory whole); after each stream the command's resolver
may name more, which are read in turn (every stream once per attempt). ``handle``
then decides; every event must target a stream that was read; the append carries
an expected version for **every** stream read. Only version conflicts are
retried. With a :class:`~eventcore.cache.StateCache`, folding starts from the
cached state and reads only newer events, or none at all (see that module).
"""

from __future__ import annotations

import random
from collections.abc import Generator, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import msgspec

from eventcore.cache import CachedState, StateCache
from eventcore.codec import Codec, json_encode
from eventcore.command import Command
from eventcore.errors import (
    BusinessRuleViolation,
    EncodingError,
    RetriesExhausted,
    UndeclaredStreamError,
    ValidationError,
    VersionConflict,
)
from eventcore.retry import RetryPolicy
from eventcore.types import (
    AppendRequest,
    AppendResult,
    EventMetadata,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamId,
)

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
    """Step: append; reply with :class:`AppendResult`, or throw ``VersionConflict``."""

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


Step: TypeAlias = ReadStreams | AppendEvents | Sleep | LoadSnapshot | SaveSnapshot
Plan: TypeAlias = Generator[Step, Any, "ExecutionResult"]
Versions: TypeAlias = dict[StreamId, int]


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """What a successful :func:`eventcore.execute` did.

    ``attempts`` counts how many times the command decided (1 unless a conflict,
    or a stale cached state, made it decide again); ``stream_versions`` holds every
    stream the command read, at its version after the append; ``positions`` the
    global position of each written event in the order ``handle`` returned them.
    """

    attempts: int
    events_written: int
    stream_versions: Mapping[str, int]
    positions: tuple[int, ...]


def _unique_streams(raw: Iterable[str], source: str) -> list[StreamId]:
    if not _is_collection(raw):
        raise ValidationError(f"{source} must return an iterable of stream ids, got {raw!r}")
    return list(dict.fromkeys(StreamId(s) for s in raw))


def _is_collection(value: object) -> bool:
    """An iterable that is not a string (which would iterate as characters) nor a
    mapping (which would iterate as its keys)."""
    return isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping)


def _fold(
    command: Command[Any, Any],
    codec: Codec,
    start: CachedState,
    page_size: int | None,
) -> Generator[Step, Any, tuple[Any, Versions, int]]:
    """Fold every event after ``start``'s versions onto its state, stream by stream
    in fold order, asking the resolver after each; return the state, the versions
    and how many events were replayed."""
    state = start.state
    versions: Versions = dict(start.versions)
    pending = list(versions)
    replayed = 0
    while pending:
        batch = tuple(pending)
        pending = []
        pages: Mapping[str, list[RecordedEvent]] = yield ReadStreams(
            batch, tuple(versions[s] + 1 for s in batch), page_size
        )
        for stream in batch:
            events = pages[stream]
            while True:
                for record in events:
                    state = command.apply(state, stream, codec.decode(record))
                replayed += len(events)
                if events:
                    versions[stream] = events[-1].stream_version
                if page_size is None or len(events) < page_size:
                    break
                more = yield ReadStreams((stream,), (versions[stream] + 1,), page_size)
                events = more[stream]
            for found in _unique_streams(command.resolve_streams(state), "resolve_streams()"):
                if found not in versions:
                    versions[found] = 0
                    pending.append(found)
    return state, versions, replayed


def _decide(
    command: Command[Any, Any], state: object, versions: Versions
) -> list[tuple[StreamId, Any]]:
    decided = command.handle(state)
    if not _is_collection(decided):
        raise ValidationError(
            f"{type(command).__qualname__}.handle() returned {decided!r}; return a list of "
            "(stream id, event) pairs, or [] to write nothing"
        )
    pairs: list[tuple[StreamId, Any]] = []
    for item in decided:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise ValidationError(
                f"{type(command).__qualname__}.handle() must return (stream id, event) "
                f"pairs, got {item!r}"
            )
        stream = StreamId(item[0])
        if stream not in versions:
            raise UndeclaredStreamError(stream, versions)
        pairs.append((stream, item[1]))
    return pairs


def _decide_on(
    command: Command[Any, Any], state: object, versions: Versions, verified: bool
) -> list[tuple[StreamId, Any]] | None:
    """The decision, or None when it was a refusal or "nothing to do" made on cached
    state alone: the version check cannot catch those, so they are re-checked on
    a freshly read state before anyone is told."""
    try:
        decided = _decide(command, state, versions)
    except (BusinessRuleViolation, UndeclaredStreamError):
        if verified:
            raise
        return None
    return decided if decided or verified else None


def _closed_under_resolver(command: Command[Any, Any], entry: CachedState) -> bool:
    """Whether every stream the resolver names for this state was folded into it.
    A cached state that points at an unread stream (its own events named it, say)
    must not be decided on without reading that stream and version-checking it."""
    known = {stream for stream, _ in entry.versions}
    found = _unique_streams(command.resolve_streams(entry.state), "resolve_streams()")
    return all(stream in known for stream in found)


def _fold_own_events(
    command: Command[Any, Any], codec: Codec, state: Any, written: list[NewEvent], after: Versions
) -> Any:
    """The state after the events this command just wrote, as a fresh read would
    fold them (decoded from their payloads, so it equals what a read returns)."""
    for event in written:
        domain = codec.decode_payload(
            event.event_type, event.payload, event.stream_id, after[event.stream_id]
        )
        state = command.apply(state, event.stream_id, domain)
    return state


def _initial(command: Command[Any, Any], declared: tuple[StreamId, ...]) -> CachedState:
    return CachedState(command.initial_state(), tuple((s, 0) for s in declared))


def _read_state(
    command: Command[Any, Any],
    codec: Codec,
    declared: tuple[StreamId, ...],
    cached: CachedState | None,
    page_size: int | None,
) -> Generator[Step, Any, tuple[Any, Versions]]:
    """Fold the command's streams, starting from the cache, else from a snapshot,
    else from the beginning; take a snapshot if the fold replayed enough events."""
    snapshots = _snapshot_key(command, declared)
    start = cached
    if start is None and snapshots is not None:
        start = _from_snapshot(command, declared, (yield LoadSnapshot(snapshots)))
    state, versions, replayed = yield from _fold(
        command, codec, start or _initial(command, declared), page_size
    )
    if snapshots is not None and replayed >= command.snapshot_every:
        try:
            encoded = json_encode(state)
        except (TypeError, ValueError, OverflowError) as exc:
            raise EncodingError(
                f"cannot snapshot the state of {type(command).__qualname__} "
                f"({type(state).__qualname__}): {exc}"
            ) from exc
        yield SaveSnapshot(Snapshot(snapshots, tuple(versions.items()), encoded))
    return state, versions


def _snapshot_key(command: Command[Any, Any], declared: tuple[StreamId, ...]) -> str | None:
    every = command.snapshot_every
    if not every:
        return None
    if type(every) is not int or every < 0:
        raise ValidationError(f"snapshot_every must be an int >= 0, got {every!r}")
    if not isinstance(command.snapshot_name, str) or not command.snapshot_name:
        raise ValidationError(
            f"{type(command).__qualname__} sets snapshot_every but no snapshot_name "
            f"(a stable name for its snapshots), got {command.snapshot_name!r}"
        )
    if not isinstance(command.state_type, type):
        raise ValidationError(
            f"{type(command).__qualname__}.state_type must be the state's class, "
            f"got {command.state_type!r}"
        )
    return f"{command.snapshot_name}:{json_encode(declared).decode()}"


def _from_snapshot(
    command: Command[Any, Any], declared: tuple[StreamId, ...], snapshot: Snapshot | None
) -> CachedState | None:
    if snapshot is None:
        return None
    try:
        state = msgspec.json.decode(snapshot.state, type=command.state_type)
    except (msgspec.DecodeError, ValueError, TypeError):
        return None  # written for an older state class: fold from the start instead
    versions = dict(snapshot.versions)
    for stream in declared:
        versions.setdefault(stream, 0)
    return CachedState(state, tuple(versions.items()))


@dataclass(slots=True)
class _Attempts:
    """Counts decisions and conflicts; conflicts are what the retry policy bounds."""

    retry: RetryPolicy
    rng: random.Random | None
    made: int = 0
    conflicts: int = 0

    def backoff_after(self, conflict: VersionConflict) -> float:
        self.conflicts += 1
        if self.conflicts > self.retry.max_retries:
            raise RetriesExhausted(self.made, conflict) from conflict
        return self.retry.delay(self.conflicts - 1, self.rng)


def plan_execution(
    command: Command[Any, Any],
    *,
    codec: Codec,
    retry: RetryPolicy,
    metadata: EventMetadata,
    rng: random.Random | None = None,
    cache: StateCache | None = None,
    page_size: int | None = DEFAULT_FOLD_PAGE_SIZE,
) -> Plan:
    """The pure decision logic of :func:`eventcore.execute`, as a generator of steps."""
    declared = tuple(_unique_streams(command.streams(), "streams()"))
    key: Hashable = StateCache.key_for(command, declared) if cache is not None else None
    trust_cache = cache is not None and cache.optimistic
    attempts = _Attempts(retry, rng)
    while True:
        attempts.made += 1
        cached = cache.get(key) if cache is not None else None
        if cached is not None and trust_cache and _closed_under_resolver(command, cached):
            state, versions, verified = cached.state, dict(cached.versions), False
        else:
            state, versions = yield from _read_state(command, codec, declared, cached, page_size)
            verified = True
        decided = _decide_on(command, state, versions, verified)
        if decided is None:
            trust_cache = False
            continue
        if not decided:
            if cache is not None:
                cache.put(key, state, versions)
            return ExecutionResult(attempts.made, 0, cast(Mapping[str, int], versions), ())
        new_events = [codec.new_event(s, e, metadata) for s, e in decided]
        request = AppendRequest._trusted(tuple(versions.items()), tuple(new_events))
        try:
            result: AppendResult = yield AppendEvents(request)
        except VersionConflict as conflict:
            trust_cache = False
            if verified:  # a stale cache is not contention: re-read at once
                yield Sleep(attempts.backoff_after(conflict))
            continue
        if cache is not None:
            after = {s: result.stream_versions[s] for s in versions}
            folded = _fold_own_events(command, codec, state, new_events, after)
            entry = CachedState(folded, tuple(after.items()))
            if _closed_under_resolver(command, entry):
                cache.put(key, folded, after)
            else:  # its own events point at a stream it has not read: refold next time
                cache.discard(key)
        return ExecutionResult(
            attempts.made, len(new_events), result.stream_versions, result.positions
        )
