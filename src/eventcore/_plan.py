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

import logging
import random
import uuid
import weakref
from collections.abc import Collection, Generator, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, cast

import msgspec

from eventcore.cache import CachedState, StateCache
from eventcore.codec import Codec, json_encode
from eventcore.command import Command, state_reuse_refused
from eventcore.errors import (
    BusinessRuleViolation,
    RetriesExhausted,
    StateReuseMismatch,
    TooManyStreams,
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
    trusted_stream_id,
)

DEFAULT_FOLD_PAGE_SIZE = 2000

# The executor's logger (the plan is part of it): snapshots that cannot be taken.
_log = logging.getLogger("eventcore.execute")
_unencodable_warned: weakref.WeakSet[type] = weakref.WeakSet()


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


def _unique_streams(raw: Iterable[str], source: str) -> list[StreamId]:
    if not _is_collection(raw):
        raise ValidationError(f"{source} must return an iterable of stream ids, got {raw!r}")
    return list(dict.fromkeys(map(StreamId, raw)))


def _is_collection(value: object) -> bool:
    """An iterable that is not a string (which would iterate as characters) nor a
    mapping (which would iterate as its keys)."""
    if type(value) is list or type(value) is tuple:
        return True  # what commands return: skip the ABC checks below, the dearer part
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
            _check_stream_count(command, versions)
    return state, versions, replayed


def _check_stream_count(command: Command[Any, Any], streams: Collection[StreamId]) -> None:
    """Bound the streams of one execution: a resolver that names a new stream each
    time it is asked would otherwise read (and remember) streams forever."""
    limit = type(command).max_streams
    if len(streams) > limit:
        last = list(streams)[-5:]
        raise TooManyStreams(type(command).__qualname__, limit, last)


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
        stream = item[0]
        if type(stream) is str and stream in versions:
            # Equal to a stream id that was read, so valid as it is: wrap it without
            # checking it again (the check was ~0.5 us per event).
            stream = trusted_stream_id(stream)
        else:
            stream = StreamId(stream)
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


def _closed_under_resolver(
    command: Command[Any, Any], state: object, known: Collection[StreamId]
) -> bool:
    """Whether every stream the resolver names for ``state`` is among ``known``, the
    streams it was folded from. A cached state that points at an unread stream (its
    own events named it, say) must not be decided on without reading that stream
    and version-checking it."""
    if type(command).resolve_streams is Command.resolve_streams:
        return True  # the default resolver names no stream, whatever the state
    found = _unique_streams(command.resolve_streams(state), "resolve_streams()")
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
        encoded = _encode_snapshot(command, state)
        if encoded is not None:
            yield SaveSnapshot(Snapshot(snapshots, tuple(versions.items()), encoded))
    return state, versions


def _snapshot_key(command: Command[Any, Any], declared: tuple[StreamId, ...]) -> str | None:
    # The settings were checked when the command's class was defined.
    if not command.snapshot_every:
        return None
    return f"{command.snapshot_name}:{json_encode(declared).decode()}"


def _encode_snapshot(command: Command[Any, Any], state: object) -> bytes | None:
    """The state as snapshot bytes, or None when it cannot be encoded. A snapshot
    only saves future work, so this never fails the command; it is logged once
    per class (it will fail the same way every time)."""
    try:
        return json_encode(state)
    except Exception as exc:  # whatever the encoder (or its hook) raised
        cls = type(command)
        if cls not in _unencodable_warned:
            _unencodable_warned.add(cls)
            _log.warning(
                "cannot snapshot the state of %s (%s): %s; its folds go on without "
                "snapshots. Make the state encodable by msgspec (a dataclass or Struct "
                "of plain values), or set snapshot_every = 0.",
                cls.__qualname__,
                type(state).__qualname__,
                exc,
            )
        return None


def _verify_reuse(
    command: Command[Any, Any], codec: Codec, entry: CachedState, page_size: int | None
) -> Generator[Step, Any, None]:
    """Fold ``entry``'s streams afresh with this command, up to exactly the cached
    versions, and refuse the cached state if it differs (a command that breaks the
    rules of reused state, its ``apply`` reading its own fields, say)."""
    state = command.initial_state()
    for stream, version in entry.versions:
        done = 0
        while done < version:
            limit = version - done if page_size is None else min(page_size, version - done)
            page = (yield ReadStreams((stream,), (done + 1,), limit))[stream]
            if not page:
                break  # cannot happen while events are immutable; the states will differ
            for record in page:
                state = command.apply(state, stream, codec.decode(record))
            done += len(page)
    if state != entry.state:
        raise StateReuseMismatch(type(command).__qualname__, entry.state, state)


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


def _declared(command: Command[Any, Any], cache: StateCache | None) -> tuple[StreamId, ...]:
    """The command's declared streams, refusing (before any I/O) what cannot run."""
    if cache is not None and not type(command).reuses_state:
        raise state_reuse_refused(type(command), "a StateCache")
    declared = tuple(_unique_streams(command.streams(), "streams()"))
    _check_stream_count(command, declared)
    return declared


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
    declared = _declared(command, cache)
    entries: _StreamSet | _Parts
    if cache is not None and type(command).state_per_stream and len(declared) > 1:
        entries = _Parts(command, cache, declared)
    else:  # one stream (or no cache): a per-stream entry is its stream set's entry
        entries = _StreamSet(command, cache, declared)
    trust_cache = cache is not None and cache.optimistic
    attempts = _Attempts(retry, rng)
    while True:
        attempts.made += 1
        cached = entries.lookup()
        if cached is not None and entries.verifies and entries.should_verify():
            yield from _verify_reuse(command, codec, cached, page_size)
        if (
            cached is not None
            and trust_cache
            and (entries.plain or _closed_under_resolver(command, cached.state, cached.streams()))
        ):
            state, versions, verified = cached.state, dict(cached.versions), False
        else:
            state, versions = yield from entries.read(codec, page_size)
            verified = True
        decided = _decide_on(command, state, versions, verified)
        if decided is None:
            entries.count("rechecks")
            trust_cache = False
            continue
        if not decided:
            entries.keep(codec, state, versions, cast(Mapping[str, int], versions), [])
            return ExecutionResult(attempts.made, 0, cast(Mapping[str, int], versions), ())
        new_events = [codec.new_event(s, e, metadata) for s, e in decided]
        request = AppendRequest._trusted(tuple(versions.items()), tuple(new_events))
        try:
            result: AppendResult = yield AppendEvents(request)
        except VersionConflict as conflict:
            trust_cache = False
            if verified:  # a stale cache is not contention: re-read at once
                yield Sleep(attempts.backoff_after(conflict))
            else:
                entries.count("stale")
            continue
        entries.keep(codec, state, versions, result.stream_versions, new_events)
        return ExecutionResult(
            attempts.made, len(new_events), result.stream_versions, result.positions
        )


class _StreamSet:
    """The cache entry of a command's whole stream set (or no cache at all)."""

    __slots__ = ("cache", "cached", "command", "declared", "key", "plain", "verifies")

    def __init__(
        self, command: Command[Any, Any], cache: StateCache | None, declared: tuple[StreamId, ...]
    ) -> None:
        self.command = command
        self.cache = cache
        self.declared = declared
        self.cached: CachedState | None = None
        # No resolver: every state is closed under it (the common case, asked twice
        # per cache hit, so answered once here).
        self.plain = type(command).resolve_streams is Command.resolve_streams
        if cache is None:
            self.key: Hashable = None
            self.verifies = False
        else:
            self.key = StateCache.key_for(command, declared)
            self.verifies = cache.verify_rate > 0.0  # spares a call per hit when off

    def lookup(self) -> CachedState | None:
        if self.cache is None:
            return None
        self.cached = self.cache.get(self.key)
        return self.cached

    def should_verify(self) -> bool:
        return self.cache is not None and self.cache.should_verify()

    def count(self, counter: Literal["rechecks", "stale"]) -> None:
        if self.cache is not None:
            setattr(self.cache, counter, getattr(self.cache, counter) + 1)

    def read(
        self, codec: Codec, page_size: int | None
    ) -> Generator[Step, Any, tuple[Any, Versions]]:
        return _read_state(self.command, codec, self.declared, self.cached, page_size)

    def keep(
        self,
        codec: Codec,
        state: object,
        versions: Versions,
        after: Mapping[str, int],
        written: list[NewEvent],
    ) -> None:
        """Cache the state as of this command's own append (keyed and ordered as read)."""
        cache = self.cache
        if cache is None:
            return
        if not written:
            cache.put(self.key, state, versions)
            return
        now: Versions = {}
        for stream in versions:  # a loop, not a comprehension: no function call
            now[stream] = after[stream]
        folded = _fold_own_events(self.command, codec, state, written, now)
        if self.plain or _closed_under_resolver(self.command, folded, now):
            cache.put(self.key, folded, now)
        else:  # its own events point at a stream it has not read: refold next time
            cache.discard(self.key)


def _part_start(command: Command[Any, Any], stream: StreamId) -> Generator[Step, Any, CachedState]:
    """Where one stream of a per-stream state starts folding: its snapshot (the
    one a command declaring only that stream keeps), else its beginning."""
    key = _snapshot_key(command, (stream,))
    if key is not None:
        start = _from_snapshot(command, (stream,), (yield LoadSnapshot(key)))
        if start is not None and len(start.versions) == 1:
            return start
    return CachedState(command.initial_state(), ((stream, 0),))


def fold_stream(
    command: Command[Any, Any],
    codec: Codec,
    start: CachedState,
    events: list[RecordedEvent],
    page_size: int | None,
) -> Generator[Step, Any, tuple[Any, int, int]]:
    """Fold one stream onto ``start`` (its state and version) from its first page
    on; return the state, its version and how many events were replayed."""
    state = start.state
    stream, version = start.versions[0]
    replayed = 0
    while True:
        for record in events:
            state = command.apply(state, stream, codec.decode(record))
        replayed += len(events)
        if events:
            version = events[-1].stream_version
        if page_size is None or len(events) < page_size:
            return state, version, replayed
        events = (yield ReadStreams((stream,), (version + 1,), page_size))[stream]


class _Parts:
    """The cache entries of a per-stream command over several streams: one per
    stream, folded alone, merged into the command's state with ``merge_states``."""

    __slots__ = ("cache", "command", "declared", "found", "keys", "verifies")
    plain = True  # a per-stream class discovers no streams (refused at class definition)

    def __init__(
        self, command: Command[Any, Any], cache: StateCache, declared: tuple[StreamId, ...]
    ) -> None:
        self.command = command
        self.cache = cache
        self.verifies = cache.verify_rate > 0.0
        self.declared = declared
        self.keys = [StateCache.key_for(command, (stream,)) for stream in declared]
        self.found: dict[StreamId, CachedState] = {}

    def lookup(self) -> CachedState | None:
        """The merged state if every stream has an entry (one hit), else None (one
        miss); the entries found are kept for :meth:`read` to start from."""
        found: dict[StreamId, CachedState] = {}
        for stream, key in zip(self.declared, self.keys, strict=True):
            entry = self.cache.peek(key)
            if entry is not None:
                found[stream] = entry
        self.found = found
        if len(found) < len(self.declared):
            self.cache.misses += 1
            return None
        self.cache.hits += 1
        merged = self.command.merge_states({s: e.state for s, e in found.items()})
        return CachedState(merged, tuple((s, e.versions[0][1]) for s, e in found.items()))

    def read(
        self, codec: Codec, page_size: int | None
    ) -> Generator[Step, Any, tuple[Any, Versions]]:
        """Read every stream after its entry (from its snapshot or start if it has
        none) in one read, fold each onto its own state, and merge; remember the
        parts, and snapshot those that replayed enough events."""
        command, declared = self.command, self.declared
        starts: dict[StreamId, CachedState] = {}
        for stream in declared:
            found = self.found.get(stream)
            starts[stream] = found or (yield from _part_start(command, stream))
        pages: Mapping[str, list[RecordedEvent]] = yield ReadStreams(
            declared, tuple(starts[s].versions[0][1] + 1 for s in declared), page_size
        )
        states: dict[StreamId, Any] = {}
        versions: Versions = {}
        for stream in declared:
            start = starts[stream]
            states[stream], versions[stream], replayed = yield from fold_stream(
                command, codec, start, pages[stream], page_size
            )
            if command.snapshot_every and replayed >= command.snapshot_every:
                encoded = _encode_snapshot(command, states[stream])
                if encoded is not None:
                    key = _snapshot_key(command, (stream,))
                    assert key is not None  # snapshot_every is set
                    yield SaveSnapshot(Snapshot(key, ((stream, versions[stream]),), encoded))
        self.found = {s: CachedState(states[s], ((s, versions[s]),)) for s in declared}
        return command.merge_states(states), versions

    def should_verify(self) -> bool:
        return self.cache.should_verify()

    def count(self, counter: Literal["rechecks", "stale"]) -> None:
        setattr(self.cache, counter, getattr(self.cache, counter) + 1)

    def keep(
        self,
        codec: Codec,
        state: object,
        versions: Versions,
        after: Mapping[str, int],
        written: list[NewEvent],
    ) -> None:
        """Cache each stream's state as of ``after``, with this command's own
        events folded onto the stream they went to."""
        command = self.command
        states = {s: e.state for s, e in self.found.items()}
        for event in written:
            stream = event.stream_id
            domain = codec.decode_payload(event.event_type, event.payload, stream, after[stream])
            states[stream] = command.apply(states[stream], stream, domain)
        for stream, key in zip(self.declared, self.keys, strict=True):
            self.cache.put(key, states[stream], {stream: after[stream]})
