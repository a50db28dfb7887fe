"""Observers: what the executor, the stores and the group committer report.

An :class:`Observer` has one no-op method per thing that happens; subclass it and
override the hooks you care about::

    class Printer(Observer):
        def command_executed(self, report: CommandReport) -> None:
            print(report.command_type, report.outcome, report.seconds)

    app = Application(store, observers=[Printer(), PrometheusObserver()])

Who reports what:

- :func:`eventcore.execute` (and so ``execute_all`` and :class:`Application`):
  :meth:`~Observer.command_executed` once per command, whatever its outcome;
  :meth:`~Observer.conflict_retried` before each retry;
  :meth:`~Observer.events_appended` after each successful append.
- :func:`observe_store` wraps a store and reports
  :meth:`~Observer.store_operation` (latency by operation name) and, for stores
  with group commit, :meth:`~Observer.batch_committed`.
- A projection runner reports :meth:`~Observer.projection_advanced` and
  :meth:`~Observer.projection_failed`.

Observers must be cheap: hooks run inline on the command's path. They must not
change outcomes either: :class:`ObserverGroup`, which every entry point wraps
observers in, catches what a hook raises, logs it once per observer and hook, and
counts it afterwards (:attr:`ObserverGroup.failures`).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, ClassVar, Final, Literal, TypeAlias

from eventcore.errors import ValidationError

_log = logging.getLogger(__name__)

Outcome: TypeAlias = Literal["success", "rejected", "conflict", "error"]
"""``success``; ``rejected`` (a BusinessRuleViolation); ``conflict`` (retries
exhausted); ``error`` (anything else: a store error, a bug in the command)."""


class CommandRecording:
    """Where the executor writes what a successful command did, for an observer
    that counts it in bulk (see :attr:`ObserverGroup.recording`).

    Each command appends plain numbers to these lists and nothing else: no hook
    call, no lock. The observer owns them and counts what they hold when
    ``fold`` is called, taking exactly the entries it counts (another thread may
    append meanwhile; ``list.append`` is indivisible). The executor calls
    ``fold`` once ``successes`` holds ``fold_at`` entries, so they stay small
    without scrapes.

    - ``successes``: ``(command type's qualified name, seconds)``, one per
      successful command;
    - ``read_seconds``: the seconds of each ``read_streams`` call that succeeded;
    - ``append_seconds``: the seconds of each ``append`` that succeeded;
    - ``appends``: for the same appends, ``(streams written, events, when)``
      (``when`` read from ``time.perf_counter`` as the append returned).
    """

    __slots__ = ("append_seconds", "appends", "fold", "fold_at", "read_seconds", "successes")

    def __init__(self, fold: Callable[[], None], fold_at: int) -> None:
        self.successes: list[tuple[str, float]] = []
        self.read_seconds: list[float] = []
        self.append_seconds: list[float] = []
        self.appends: list[tuple[tuple[str, ...], int, float]] = []
        self.fold = fold
        self.fold_at = fold_at


@dataclass(frozen=True, slots=True)
class CommandReport:
    """One executed command. ``command_type`` is the class's qualified name (a
    bounded label); ``seconds`` the wall time from start to outcome; ``streams``
    how many streams it read (0 when it failed before knowing)."""

    command_type: str
    outcome: Outcome
    attempts: int
    seconds: float
    events: int
    streams: int = 0


# The executor builds one report per command. A frozen dataclass's __init__ sets
# each field through object.__setattr__, about 1 µs for these six; setting them
# through the slots' own descriptors costs half that. Same fields, same values.
_new_report = object.__new__
_REPORT_FIELDS = tuple(
    getattr(CommandReport, name).__set__
    for name in ("command_type", "outcome", "attempts", "seconds", "events", "streams")
)


def report_command(
    command_type: str, outcome: Outcome, attempts: int, seconds: float, events: int, streams: int
) -> CommandReport:
    """``CommandReport(command_type, outcome, attempts, seconds, events, streams)``,
    built faster (for the executor; the arguments are trusted)."""
    report: CommandReport = _new_report(CommandReport)
    fields = _REPORT_FIELDS
    fields[0](report, command_type)
    fields[1](report, outcome)
    fields[2](report, attempts)
    fields[3](report, seconds)
    fields[4](report, events)
    fields[5](report, streams)
    return report


class Observer:
    """The hooks eventcore reports to; every one does nothing here."""

    # True on a class whose hooks are known never to raise (one of eventcore's own,
    # written to that rule): see ObserverGroup.direct. Read from the class's own
    # namespace, so a subclass overriding a hook is not trusted by inheritance.
    _raises_nothing: ClassVar[bool] = False
    # True on a class (again, in its own namespace) whose instances keep a
    # ``_recording`` (a CommandRecording) the executor may write to instead of
    # calling the hooks for a successful command: see ObserverGroup.recording.
    _takes_recordings: ClassVar[bool] = False

    def command_executed(self, report: CommandReport) -> None:
        """A command finished (see :class:`CommandReport`)."""

    def conflict_retried(self, stream_id: str, attempt: int, delay: float) -> None:
        """A version conflict on ``stream_id`` ended attempt ``attempt``; the command
        runs again after ``delay`` seconds."""

    def events_appended(self, stream_ids: tuple[str, ...], count: int) -> None:
        """A command appended ``count`` events to ``stream_ids`` (ids are for
        bounded bookkeeping, such as active streams: never use them as labels)."""

    def store_operation(self, operation: str, seconds: float, error: Exception | None) -> None:
        """A store call ``operation`` (``append``, ``read_streams``, ...) took
        ``seconds``; ``error`` is what it raised, if anything."""

    def batch_committed(self, size: int) -> None:
        """Group commit sent ``size`` appends in one transaction."""

    def projection_advanced(self, name: str, position: int, head: int) -> None:
        """Projection ``name`` has handled the log up to ``position``; the log ends at
        ``head`` (its lag is ``head - position``)."""

    def projection_failed(self, name: str, position: int, error: Exception) -> None:
        """Projection ``name`` failed handling the event after ``position``."""


_HOOKS: Final = (
    "command_executed",
    "conflict_retried",
    "events_appended",
    "store_operation",
    "batch_committed",
    "projection_advanced",
    "projection_failed",
)


class ObserverGroup(Observer):
    """Several observers as one; a hook that raises is logged once, then counted.

    Only the hooks an observer overrides are called, so a group of observers that
    watch nothing costs one empty loop per report (and :attr:`listening` lets a
    caller skip even that).
    """

    def __init__(self, observers: Observer | Iterable[Observer] = ()) -> None:
        if isinstance(observers, Observer):
            observers = (observers,)
        members = tuple(observers)
        for member in members:
            if not isinstance(member, Observer):
                raise ValidationError(
                    f"observers must be eventcore.observe.Observer instances, got {member!r}; "
                    "subclass Observer and override the hooks you need"
                )
        self.observers: tuple[Observer, ...] = members
        self.failures: dict[tuple[str, str], int] = {}
        self._calls: dict[str, tuple[Callable[..., None], ...]] = {
            hook: tuple(
                getattr(member, hook)
                for member in members
                if getattr(type(member), hook) is not getattr(Observer, hook)
            )
            for hook in _HOOKS
        }
        self.listening = any(self._calls.values())
        """Whether any member overrides any hook (if not, reporting is wasted work)."""
        self.direct: Observer = self
        """What to report to: the group, or its only member when that member's
        hooks never raise (an eventcore observer such as ``PrometheusObserver``),
        so that every report skips a layer of calls and a guard with nothing to
        catch. The executor and :func:`~eventcore.observed_store.observe_store`
        report there."""
        if len(members) == 1 and type(members[0]).__dict__.get("_raises_nothing", False):
            self.direct = members[0]
        # Read from the class's own namespace, like _raises_nothing: a subclass that
        # overrides a hook is not bypassed by its parent's recording.
        records = type(self.direct).__dict__.get("_takes_recordings", False)
        self.recording: CommandRecording | None = (
            getattr(self.direct, "_recording", None) if records else None
        )
        """Where the executor writes a successful command's figures when
        :attr:`direct` is one of eventcore's observers that counts them in bulk
        (``PrometheusObserver``): they say what :meth:`command_executed`,
        :meth:`events_appended` and the :meth:`store_operation` of the command's
        own reads and appends would, timed inline by the executor instead of by a
        store wrapper (each layer and hook call skipped saves a measurable share of
        a cheap command; see docs/operations.md). None otherwise: every hook is
        called. A command that fails is reported through the hooks either way."""
        calls = self._calls
        self._command_executed = calls["command_executed"]
        self._conflict_retried = calls["conflict_retried"]
        self._events_appended = calls["events_appended"]
        self._store_operation = calls["store_operation"]
        self._batch_committed = calls["batch_committed"]
        self._projection_advanced = calls["projection_advanced"]
        self._projection_failed = calls["projection_failed"]

    def listens_to(self, hook: str) -> bool:
        """Whether any member overrides ``hook`` (so reporting it is worth its cost)."""
        return bool(self._calls[hook])

    def find(self, kind: type[Any]) -> Any:
        """The first member (or member of a nested group) that is a ``kind``, or None."""
        for member in self.observers:
            if isinstance(member, kind):
                return member
            if isinstance(member, ObserverGroup):
                found = member.find(kind)
                if found is not None:
                    return found
        return None

    def _failed(self, call: Callable[..., None], hook: str) -> None:
        owner = getattr(call, "__self__", call)
        key = (type(owner).__qualname__, hook)
        count = self.failures.get(key, 0) + 1
        self.failures[key] = count
        if count == 1:  # a broken observer would otherwise flood the log
            _log.exception(
                "observer %s raised in %s; the command is unaffected, and further "
                "failures of this hook are only counted",
                key[0],
                hook,
            )

    # Each hook is spelled out rather than sent through one generic dispatcher: they
    # run several times per command, and a loop over a tuple held in an attribute
    # is the cheapest guarded call (no argument packing, no lookup by hook name).

    def command_executed(self, report: CommandReport) -> None:
        for call in self._command_executed:
            try:
                call(report)
            except Exception:
                self._failed(call, "command_executed")

    def conflict_retried(self, stream_id: str, attempt: int, delay: float) -> None:
        for call in self._conflict_retried:
            try:
                call(stream_id, attempt, delay)
            except Exception:
                self._failed(call, "conflict_retried")

    def events_appended(self, stream_ids: tuple[str, ...], count: int) -> None:
        for call in self._events_appended:
            try:
                call(stream_ids, count)
            except Exception:
                self._failed(call, "events_appended")

    def store_operation(self, operation: str, seconds: float, error: Exception | None) -> None:
        for call in self._store_operation:
            try:
                call(operation, seconds, error)
            except Exception:
                self._failed(call, "store_operation")

    def batch_committed(self, size: int) -> None:
        for call in self._batch_committed:
            try:
                call(size)
            except Exception:
                self._failed(call, "batch_committed")

    def projection_advanced(self, name: str, position: int, head: int) -> None:
        for call in self._projection_advanced:
            try:
                call(name, position, head)
            except Exception:
                self._failed(call, "projection_advanced")

    def projection_failed(self, name: str, position: int, error: Exception) -> None:
        for call in self._projection_failed:
            try:
                call(name, position, error)
            except Exception:
                self._failed(call, "projection_failed")


def as_observer(observer: Observer | Iterable[Observer] | None) -> ObserverGroup | None:
    """``None`` stays None; anything else becomes a (safe) :class:`ObserverGroup`."""
    if observer is None or isinstance(observer, ObserverGroup):
        return observer
    return ObserverGroup(observer)


class RecentStreams:
    """Streams touched within the last ``window`` seconds, at most ``capacity``
    of them remembered (the oldest are forgotten first), so memory stays bounded
    however many streams an application has."""

    def __init__(
        self,
        window: float = 60.0,
        capacity: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not window > 0:
            raise ValidationError(f"window must be a positive number of seconds, got {window!r}")
        if type(capacity) is not int or capacity < 1:
            raise ValidationError(f"capacity must be a positive int, got {capacity!r}")
        self._window = window
        self._capacity = capacity
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()  # oldest touch first

    def touch(self, stream_ids: Iterable[str]) -> None:
        """Record that ``stream_ids`` were written now."""
        seen, when = self._seen, self._clock()
        for stream in stream_ids:
            seen[stream] = when
            seen.move_to_end(stream)
        while len(seen) > self._capacity:
            seen.popitem(last=False)

    def touch_each(self, stream_ids: Sequence[Sequence[str]], times: Sequence[float]) -> None:
        """Record writes timed earlier: ``stream_ids[n]`` were written at
        ``times[n]``, read from this object's clock, in the order they were timed.

        Made for batches of hundreds: the loops run in C (a fold of one-stream
        writes costs about a third of touching them one by one)."""
        seen = self._seen
        streams = list(chain.from_iterable(stream_ids))
        if set(map(len, stream_ids)) <= {1}:  # one stream per write, the usual case
            seen.update(zip(streams, times, strict=True))
        else:
            writes = zip(stream_ids, times, strict=True)
            seen.update((stream, when) for written, when in writes for stream in written)
        # update() leaves a stream it knew where it was: move each to the end, in
        # the order they were touched, so the oldest touch stays first. Draining the
        # map into a deque that keeps nothing runs the calls without a Python loop.
        deque(map(seen.move_to_end, streams), maxlen=0)
        while len(seen) > self._capacity:
            seen.popitem(last=False)

    def count(self) -> int:
        horizon = self._clock() - self._window
        seen = self._seen
        while seen:
            stream, touched = next(iter(seen.items()))
            if touched >= horizon:
                break
            del seen[stream]
        return len(seen)
