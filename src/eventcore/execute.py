"""Running a command: read, fold, decide, append atomically, retry on conflict.

The decision logic is a pure generator, :func:`plan_execution`. It yields the I/O
it needs as step objects — :class:`ReadStreams`, :class:`AppendEvents`,
:class:`Sleep` — and is sent their results (a version conflict is thrown into it).
:func:`execute` drives it against a store; tests can drive it with no store and no
event loop at all (see :mod:`eventcore.testing.scenario`).

Per attempt: the declared streams are read and folded in order; after each stream
the command's resolver may name more, which are read in turn (every stream once
per attempt). ``handle`` then decides, every event it returns must target a stream
that was read, and the append carries an expected version for **every** stream
read, so a decision based on a stream that has since moved is never committed.
Only :class:`~eventcore.errors.VersionConflict` is retried.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

from eventcore.codec import Codec, default_codec, encode_metadata
from eventcore.command import Command
from eventcore.errors import RetriesExhausted, UndeclaredStreamError, ValidationError
from eventcore.errors import VersionConflict as _VersionConflict
from eventcore.retry import DEFAULT_RETRY_POLICY, RetryPolicy
from eventcore.store import EventStore
from eventcore.types import (
    AppendRequest,
    AppendResult,
    EventMetadata,
    NewEvent,
    RecordedEvent,
    StreamId,
)


@dataclass(frozen=True, slots=True)
class ReadStreams:
    """Step: read these streams in full; reply with ``dict[str, list[RecordedEvent]]``."""

    stream_ids: tuple[StreamId, ...]


@dataclass(frozen=True, slots=True)
class AppendEvents:
    """Step: append; reply with :class:`AppendResult`, or throw ``VersionConflict``."""

    request: AppendRequest


@dataclass(frozen=True, slots=True)
class Sleep:
    """Step: wait this many seconds (backoff before a retry); reply with ``None``."""

    seconds: float


Step: TypeAlias = ReadStreams | AppendEvents | Sleep
Plan: TypeAlias = Generator[Step, Any, "ExecutionResult"]


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """What a successful :func:`execute` did.

    ``stream_versions`` holds every stream the command read, at its version after
    the append; ``positions`` the global position of each written event in the
    order ``handle`` returned them.
    """

    attempts: int
    events_written: int
    stream_versions: Mapping[str, int]
    positions: tuple[int, ...]


def _unique_streams(raw: Iterable[str], source: str) -> list[StreamId]:
    if isinstance(raw, str) or raw is None:
        raise ValidationError(f"{source} must return an iterable of stream ids, got {raw!r}")
    return list(dict.fromkeys(StreamId(s) for s in raw))


def _fold(
    command: Command[Any, Any], codec: Codec
) -> Generator[Step, Any, tuple[Any, dict[StreamId, int]]]:
    """Read and fold every stream the command needs; return state and versions."""
    state = command.initial_state()
    versions: dict[StreamId, int] = {}
    pending = _unique_streams(command.streams(), "streams()")
    while pending:
        batch = tuple(pending)
        pending = []
        pages: Mapping[str, list[RecordedEvent]] = yield ReadStreams(batch)
        for stream in batch:
            events = pages[stream]
            for record in events:
                state = command.apply(state, stream, codec.decode(record))
            versions[stream] = events[-1].stream_version if events else 0
            for found in _unique_streams(command.resolve_streams(state), "resolve_streams()"):
                if found not in versions and found not in batch and found not in pending:
                    pending.append(found)
    return state, versions


def _decide(
    command: Command[Any, Any],
    state: object,
    versions: Mapping[StreamId, int],
    codec: Codec,
    metadata: EventMetadata,
) -> list[NewEvent]:
    decided = command.handle(state)
    if decided is None:
        raise ValidationError(
            f"{type(command).__qualname__}.handle() returned None; return a list of "
            "(stream id, event) pairs, or [] to write nothing"
        )
    new_events: list[NewEvent] = []
    for item in decided:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise ValidationError(
                f"{type(command).__qualname__}.handle() must return (stream id, event) "
                f"pairs, got {item!r}"
            )
        stream = StreamId(item[0])
        if stream not in versions:
            raise UndeclaredStreamError(stream, versions)
        new_events.append(codec.new_event(stream, item[1], metadata))
    return new_events


def plan_execution(
    command: Command[Any, Any],
    *,
    codec: Codec,
    retry: RetryPolicy,
    metadata: EventMetadata,
    rng: random.Random | None = None,
) -> Plan:
    """The pure decision logic of :func:`execute`, as a generator of I/O steps."""
    attempt = 0
    while True:
        attempt += 1
        state, versions = yield from _fold(command, codec)
        new_events = _decide(command, state, versions, codec, metadata)
        if not new_events:
            return ExecutionResult(attempt, 0, cast(Mapping[str, int], versions), ())
        request = AppendRequest(tuple(versions.items()), tuple(new_events))
        try:
            result: AppendResult = yield AppendEvents(request)
        except _VersionConflict as conflict:
            if attempt > retry.max_retries:
                raise RetriesExhausted(attempt, conflict) from conflict
            yield Sleep(retry.delay(attempt - 1, rng))
            continue
        return ExecutionResult(attempt, len(new_events), result.stream_versions, result.positions)


async def run_plan(plan: Plan, store: EventStore) -> ExecutionResult:
    """Drive a plan against a store until it returns its result."""
    reply: Any = None
    conflict: _VersionConflict | None = None
    while True:
        try:
            step = plan.send(reply) if conflict is None else plan.throw(conflict)
        except StopIteration as finished:
            result: ExecutionResult = finished.value
            return result
        reply, conflict = None, None
        if type(step) is ReadStreams:
            reply = await store.read_streams(step.stream_ids)
        elif type(step) is AppendEvents:
            try:
                reply = await store.append(step.request)
            except _VersionConflict as exc:
                conflict = exc
        elif type(step) is Sleep:
            await asyncio.sleep(step.seconds)
        else:  # pragma: no cover - the plan only yields the steps above
            raise TypeError(f"unknown step {step!r}")


async def execute(
    store: EventStore,
    command: Command[Any, Any],
    *,
    codec: Codec | None = None,
    retry: RetryPolicy = DEFAULT_RETRY_POLICY,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> ExecutionResult:
    """Run ``command`` against ``store``: read, fold, decide, append, retry on conflict.

    ``correlation_id`` (a fresh UUID when not given), ``causation_id`` and the
    free-form ``metadata`` land on every event written. Raises
    :class:`~eventcore.errors.BusinessRuleViolation` from ``handle`` unchanged,
    :class:`~eventcore.errors.RetriesExhausted` when conflicts outlast ``retry``,
    and store errors unchanged; none of these leaves anything written.
    """
    event_metadata = EventMetadata(
        correlation_id if correlation_id is not None else str(uuid.uuid4()),
        causation_id,
        dict(metadata) if metadata else {},
    )
    encode_metadata(event_metadata)  # fail before any I/O if it is not JSON-encodable
    plan = plan_execution(
        command, codec=codec or default_codec, retry=retry, metadata=event_metadata
    )
    return await run_plan(plan, store)
