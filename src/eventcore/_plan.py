"""The executor's decision logic: a pure generator of I/O steps.

:func:`plan_execution` yields :class:`ReadStreams`, :class:`AppendEvents` and
:class:`Sleep` steps and is sent their results (a version conflict is thrown into
it). It never touches a store or an event loop, so it can be driven by
:func:`eventcore.execute.run_plan`, by the scenario helper with no store at all,
or by hand in tests.

Per attempt: the streams are read and folded (:mod:`eventcore._plan_fold`),
starting from the cache's entries where there are some
(:mod:`eventcore._plan_cache`). ``handle`` then decides; every event must target
a stream that was read; the append carries an expected version for **every**
stream read. Only version conflicts are retried. With a
:class:`~eventcore.cache.StateCache`, folding starts from the cached state and
reads only newer events, or none at all (see that module). The steps yielded,
and the result returned, are defined in :mod:`eventcore._plan_steps`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, cast

from eventcore._plan_cache import PerStreamEntries, StreamSetEntry
from eventcore._plan_fold import (
    check_stream_count,
    closed_under_resolver,
    is_collection,
    unique_streams,
    verify_reuse,
)
from eventcore._plan_steps import (
    DEFAULT_FOLD_PAGE_SIZE,
    AppendEvents,
    ExecutionResult,
    LoadSnapshot,
    LookupEvents,
    Plan,
    ReadStreams,
    SaveSnapshot,
    Sleep,
    Step,
    Versions,
    append_step,
    executed,
)
from eventcore.cache import StateCache
from eventcore.codec import Codec
from eventcore.command import Command, state_reuse_refused
from eventcore.errors import (
    BusinessRuleViolation,
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
    StreamId,
    trusted_stream_id,
)

# The plan's interface: the function, and the steps and result it speaks in.
__all__ = [
    "DEFAULT_FOLD_PAGE_SIZE",
    "AppendEvents",
    "ExecutionResult",
    "LoadSnapshot",
    "LookupEvents",
    "Plan",
    "ReadStreams",
    "SaveSnapshot",
    "Sleep",
    "Step",
    "Versions",
    "plan_execution",
]


def _decide(
    command: Command[Any, Any], state: object, versions: Versions
) -> list[tuple[StreamId, Any]]:
    decided = command.handle(state)
    if not is_collection(decided):
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


def _backoff(
    retry: RetryPolicy,
    rng: random.Random | None,
    conflicts: int,
    attempts: int,
    conflict: VersionConflict,
) -> float:
    """The wait before deciding again after the ``conflicts``-th conflict (the
    count the retry policy bounds); past its bound, RetriesExhausted."""
    if conflicts > retry.max_retries:
        raise RetriesExhausted(attempts, conflict) from conflict
    return retry.delay(conflicts - 1, rng)


def declared_streams(command: Command[Any, Any], cache: StateCache | None) -> tuple[StreamId, ...]:
    """The command's declared streams, refusing (before any I/O) what cannot run."""
    if cache is not None and not type(command).reuses_state:
        raise state_reuse_refused(type(command), "a StateCache")
    declared = tuple(unique_streams(command.streams(), "streams()"))
    if len(declared) > 1:  # max_streams is at least 1 (checked with the class)
        check_stream_count(command, declared)
    return declared


def _entries(
    command: Command[Any, Any], cache: StateCache | None, declared: tuple[StreamId, ...]
) -> StreamSetEntry | PerStreamEntries:
    """Where the command's state is cached: one entry per stream, or one for them all."""
    if cache is not None and type(command).state_per_stream and len(declared) > 1:
        return PerStreamEntries(command, cache, declared)
    # One stream (or no cache): a per-stream entry is its stream set's entry.
    return StreamSetEntry(command, cache, declared)


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
    return plan_declared(command, None, codec, retry, metadata, rng, cache, page_size)


def plan_declared(
    command: Command[Any, Any],
    declared: tuple[StreamId, ...] | None,
    codec: Codec,
    retry: RetryPolicy,
    metadata: EventMetadata,
    rng: random.Random | None,
    cache: StateCache | None,
    page_size: int | None,
) -> Plan:
    """:func:`plan_execution`, given ``command``'s ``declared`` streams as
    :func:`declared_streams` returned them, or ``None`` to ask them (then, at the
    first step, as a plan always has)."""
    entries = _entries(
        command, cache, declared_streams(command, cache) if declared is None else declared
    )
    trust_cache = cache is not None and cache.optimistic
    # Decisions made, and the conflicts among them: locals, not an object made per
    # command (with append_step: 142k -> 140k instructions per cached command).
    attempts = conflicts = 0
    while True:
        attempts += 1
        cached = entries.lookup()
        if cached is not None and entries.verifies and entries.should_verify():
            yield from verify_reuse(command, codec, cached, page_size)
        if (
            cached is not None
            and trust_cache
            and (entries.plain or closed_under_resolver(command, cached.state, cached.streams()))
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
            entries.keep(state, versions, cast(Mapping[str, int], versions), [])
            return executed(attempts, 0, cast(Mapping[str, int], versions), ())
        new_events: list[NewEvent] = []
        written: list[tuple[StreamId, Any]] = []  # each event as a read will decode it
        for stream, event in decided:
            new, read_back = codec._new_event_and_read_back(stream, event, metadata)
            new_events.append(new)
            written.append((stream, read_back))
        request = AppendRequest._trusted(tuple(versions.items()), tuple(new_events))
        try:
            result: AppendResult = yield append_step(request)
        except VersionConflict as conflict:
            trust_cache = False
            if verified:  # a stale cache is not contention: re-read at once
                conflicts += 1
                yield Sleep(_backoff(retry, rng, conflicts, attempts, conflict))
            else:
                entries.count("stale")
            continue
        entries.keep(state, versions, result.stream_versions, written)
        return executed(attempts, len(new_events), result.stream_versions, result.positions)
