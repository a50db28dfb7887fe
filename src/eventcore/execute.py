"""Running a command: read, fold, decide, append atomically, retry on conflict.

The decision logic is a pure generator, :func:`plan_execution` (in
``eventcore._plan``, re-exported here). It yields the I/O it needs as step objects
— :class:`ReadStreams`, :class:`AppendEvents`, :class:`Sleep` — and is sent their
results (a version conflict is thrown into it). :func:`execute` drives it against
a store with :func:`run_plan`; tests can drive it with no store and no event loop
at all (see :mod:`eventcore.testing.scenario`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, TypeGuard

from eventcore._plan import (
    DEFAULT_FOLD_PAGE_SIZE,
    AppendEvents,
    ExecutionResult,
    LoadSnapshot,
    Plan,
    ReadStreams,
    SaveSnapshot,
    Sleep,
    Step,
    plan_execution,
)
from eventcore._text import check_storable_text
from eventcore.cache import StateCache
from eventcore.codec import Codec, default_codec, encode_metadata
from eventcore.command import Command
from eventcore.errors import (
    BusinessRuleViolation,
    RetriesExhausted,
    StoreUnavailable,
    ValidationError,
    VersionConflict,
)
from eventcore.observe import CommandReport, Observer, Outcome, as_observer
from eventcore.retry import DEFAULT_RETRY_POLICY, RetryPolicy
from eventcore.store import EventStore, SnapshotStore
from eventcore.types import AppendResult, EventMetadata, Snapshot, check_limit

_log = logging.getLogger(__name__)

__all__ = [
    "AppendEvents",
    "ExecuteOptions",
    "ExecutionResult",
    "LoadSnapshot",
    "Plan",
    "ReadStreams",
    "SaveSnapshot",
    "Sleep",
    "Step",
    "execute",
    "plan_execution",
    "run_plan",
]


async def run_plan(
    plan: Plan, store: EventStore, observer: Observer | None = None
) -> ExecutionResult:
    """Drive a plan against a store until it returns its result; report retries and
    appends to ``observer``, if given."""
    return await _drive(plan, store, as_observer(observer), None)


async def _drive(
    plan: Plan, store: EventStore, observer: Observer | None, tally: _Tally | None
) -> ExecutionResult:
    reply: Any = None
    conflict: VersionConflict | None = None
    conflicts = 0
    while True:
        try:
            step = plan.send(reply) if conflict is None else plan.throw(conflict)
        except StopIteration as finished:
            result: ExecutionResult = finished.value
            return result
        if conflict is not None:  # the plan chose to retry (it raises when it gives up)
            conflicts += 1
            _report_retry(conflict, conflicts, step, observer, tally)
        reply, conflict = None, None
        if type(step) is ReadStreams:
            reply = await store.read_streams(
                step.stream_ids,
                from_versions=dict(zip(step.stream_ids, step.from_versions, strict=True)),
                limit=step.limit,
            )
        elif type(step) is AppendEvents:
            reply, conflict = await _append(store, step, observer)
        elif type(step) is Sleep:
            await asyncio.sleep(step.seconds)
        elif type(step) is LoadSnapshot:
            reply = await store.load_snapshot(step.key) if _keeps_snapshots(store) else None
        elif type(step) is SaveSnapshot:
            await _save_snapshot(store, step.snapshot)
        else:  # pragma: no cover - the plan only yields the steps above
            raise TypeError(f"unknown step {step!r}")


async def _append(
    store: EventStore, step: AppendEvents, observer: Observer | None
) -> tuple[AppendResult | None, VersionConflict | None]:
    try:
        result = await store.append(step.request)
    except VersionConflict as exc:
        return None, exc
    if observer is not None:
        _report_append(step, result, observer)
    return result, None


def _keeps_snapshots(store: object) -> TypeGuard[SnapshotStore]:
    return isinstance(store, SnapshotStore)


async def _save_snapshot(store: EventStore, snapshot: Snapshot) -> None:
    if not _keeps_snapshots(store):
        return
    # A snapshot only saves future work: failing to store one must not fail the
    # command whose fold produced it.
    with contextlib.suppress(StoreUnavailable):
        await store.save_snapshot(snapshot)


class ExecuteOptions(TypedDict, total=False):
    """The keyword arguments of :func:`execute`, for functions that pass them on."""

    codec: Codec | None
    retry: RetryPolicy
    correlation_id: str | None
    causation_id: str | None
    metadata: Mapping[str, Any] | None
    cache: StateCache | None
    fold_page_size: int | None
    observer: Observer | None


def _check_execute_args(
    command: object,
    codec: object,
    retry: object,
    cache: object,
    metadata: object,
    observer: object = None,
) -> None:
    """Refuse mistyped arguments before any I/O, naming the value."""
    expected: tuple[tuple[str, object, type | tuple[type, ...]], ...] = (
        ("command", command, Command),
        ("codec", codec, (Codec, type(None))),
        ("retry", retry, RetryPolicy),
        ("cache", cache, (StateCache, type(None))),
        ("metadata", metadata, (Mapping, type(None))),
        ("observer", observer, (Observer, type(None))),
    )
    for name, value, kind in expected:
        if not isinstance(value, kind):
            raise ValidationError(
                f"execute() got {name}={value!r}, which is not a {_describe(kind)}"
            )


def _describe(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("None" if k is type(None) else k.__name__ for k in kinds)


async def execute(
    store: EventStore,
    command: Command[Any, Any],
    *,
    codec: Codec | None = None,
    retry: RetryPolicy = DEFAULT_RETRY_POLICY,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    cache: StateCache | None = None,
    fold_page_size: int | None = DEFAULT_FOLD_PAGE_SIZE,
    observer: Observer | None = None,
) -> ExecutionResult:
    """Run ``command`` against ``store``: read, fold, decide, append, retry on conflict.

    ``correlation_id`` (a fresh UUID when not given), ``causation_id`` and the
    free-form ``metadata`` land on every event written. ``cache`` keeps folded
    state between executions (see :mod:`eventcore.cache`); ``fold_page_size``
    bounds how many events of a stream are held at once while folding (``None``:
    read each stream whole). ``observer`` hears how it went (see
    :mod:`eventcore.observe`); what it raises never changes the outcome.

    Raises :class:`~eventcore.errors.BusinessRuleViolation` from ``handle``
    unchanged, :class:`~eventcore.errors.RetriesExhausted` when conflicts outlast
    ``retry``, and store errors unchanged; none of these leaves anything written.
    """
    _check_execute_args(command, codec, retry, cache, metadata, observer)
    for name, value in (("correlation_id", correlation_id), ("causation_id", causation_id)):
        if value is not None and not isinstance(value, str):
            raise ValidationError(f"{name} must be a str or None, got {value!r}")
        if value is not None:
            check_storable_text(value, name)
    event_metadata = EventMetadata(
        correlation_id if correlation_id is not None else str(uuid.uuid4()),
        causation_id,
        dict(metadata) if metadata else {},
    )
    if metadata:
        encode_metadata(event_metadata)  # fail before any I/O if it is not JSON-encodable
    plan = plan_execution(
        command,
        codec=codec or default_codec,
        retry=retry,
        metadata=event_metadata,
        cache=cache,
        page_size=check_limit(fold_page_size),
    )
    if observer is None:
        return await _drive(plan, store, None, None)
    return await _run_observed(plan, store, as_observer(observer), type(command).__qualname__)


# -- observation: kept apart from the executor's logic above -----------------------


@dataclass(slots=True)
class _Tally:
    conflicts: int = 0


def _report_retry(
    conflict: VersionConflict,
    attempt: int,
    step: Step,
    observer: Observer | None,
    tally: _Tally | None,
) -> None:
    if tally is not None:
        tally.conflicts = attempt
    # A conflict met with a stale cached state is retried at once, without a Sleep.
    delay = step.seconds if type(step) is Sleep else 0.0
    _log.debug(
        "version conflict on stream %r (expected version %d, found %d) ended attempt %d; "
        "retrying in %.3f s",
        conflict.stream_id,
        conflict.expected,
        conflict.actual,
        attempt,
        delay,
    )
    if observer is not None:
        observer.conflict_retried(conflict.stream_id, attempt, delay)


def _report_append(step: AppendEvents, result: AppendResult, observer: Observer) -> None:
    streams = tuple(dict.fromkeys(event.stream_id for event in step.request.events))
    observer.events_appended(streams, len(result.positions))


def _outcome_of(error: Exception) -> Outcome:
    if isinstance(error, BusinessRuleViolation):
        return "rejected"
    if isinstance(error, RetriesExhausted):
        return "conflict"
    return "error"


async def _run_observed(
    plan: Plan, store: EventStore, observer: Observer | None, command_type: str
) -> ExecutionResult:
    assert observer is not None  # execute() only comes here with one
    tally = _Tally()
    start = time.perf_counter()
    try:
        result = await _drive(plan, store, observer, tally)
    except Exception as exc:
        seconds = time.perf_counter() - start
        attempts = exc.attempts if isinstance(exc, RetriesExhausted) else tally.conflicts + 1
        outcome = _outcome_of(exc)
        if outcome == "conflict":
            _log.info("%s gave up after %d attempts: %s", command_type, attempts, exc)
        observer.command_executed(CommandReport(command_type, outcome, attempts, seconds, 0))
        raise
    seconds = time.perf_counter() - start
    observer.command_executed(
        CommandReport(
            command_type,
            "success",
            result.attempts,
            seconds,
            result.events_written,
            len(result.stream_versions),
        )
    )
    return result
