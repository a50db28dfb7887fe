"""A ledger of appends made through a group committer, and the invariants the log
they leave must satisfy whatever was cancelled or lost on the way.

Every append runs in a task of its own (its "caller"); the ledger notes when it
was made and when it was answered on one logical clock, and how: a result, a
version conflict, an unknown outcome (StoreUnavailable), a refusal, or the
caller's cancellation. Each event's payload names its append, so the log read
back afterwards can be matched against what the callers were told.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from eventcore import StoreUnavailable, StreamId, VersionConflict
from eventcore.errors import StoreError
from eventcore.types import AppendRequest, AppendResult, NewEvent, RecordedEvent

Append = Callable[[AppendRequest], Awaitable[AppendResult]]

# What a caller may be told; "refused" is a store error charged to its own append.
OK, CONFLICT, UNAVAILABLE, REFUSED, CANCELLED = (
    "ok",
    "conflict",
    "unavailable",
    "refused",
    "cancelled",
)
# Outcomes after which the append may be in the log: the caller was told it is,
# or was never told (cancelled) or told the outcome is unknown.
MAY_BE_STORED = {OK, CANCELLED, UNAVAILABLE}


@dataclass(eq=False)
class Call:
    number: int
    request: AppendRequest
    made: int  # on the ledger's clock
    writer: str | None  # the sequential writer that made it, if any
    task: asyncio.Task[AppendResult] | None = None
    answered: int | None = None
    answers: int = 0
    outcome: str | None = None
    result: AppendResult | None = None
    error: BaseException | None = None
    # Set when the caller was cancelled before the store was sent its append.
    cancelled_unsent: bool = False


@dataclass
class Ledger:
    calls: list[Call] = field(default_factory=list)
    _clock: itertools.count[int] = field(default_factory=itertools.count)

    def request(self, expected: dict[str, int], streams: Iterable[str], count: int = 1) -> Call:
        """A new append (not yet made): ``count`` events on each of ``streams``."""
        number = len(self.calls)
        events = [
            NewEvent(StreamId(stream), "Appended", json.dumps({"call": number, "n": n}).encode())
            for stream in streams
            for n in range(count)
        ]
        call = Call(number, AppendRequest.create(expected, events), made=-1, writer=None)
        self.calls.append(call)
        return call

    def make(self, call: Call, append: Append, *, writer: str | None = None) -> Call:
        """Start ``call``'s caller task."""
        call.writer = writer
        call.made = next(self._clock)
        call.task = asyncio.ensure_future(append(call.request))
        call.task.add_done_callback(lambda task: self._answered(call, task))
        return call

    async def run(self, call: Call, append: Append, *, writer: str | None = None) -> Call:
        """Make ``call`` and wait for its answer (the waiting is never cancelled)."""
        self.make(call, append, writer=writer)
        assert call.task is not None
        await asyncio.wait([call.task])
        return call

    def _answered(self, call: Call, task: asyncio.Task[AppendResult]) -> None:
        call.answers += 1
        call.answered = next(self._clock)
        if task.cancelled():
            call.outcome = CANCELLED
            return
        error = task.exception()
        if error is None:
            call.outcome, call.result = OK, task.result()
        elif isinstance(error, VersionConflict):
            call.outcome = CONFLICT
        elif isinstance(error, StoreUnavailable):
            call.outcome = UNAVAILABLE
        elif isinstance(error, StoreError):
            call.outcome = REFUSED
        else:
            call.outcome = f"unexpected {error!r}"
        call.error = error

    def pending(self) -> list[Call]:
        return [c for c in self.calls if c.task is not None and not c.task.done()]

    def outcomes(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for call in self.calls:
            if call.task is not None:
                counts[str(call.outcome)] += 1
        return dict(counts)


def check_log(ledger: Ledger, log: list[RecordedEvent]) -> None:
    """Assert the invariants of a log written through a group committer."""
    made = [c for c in ledger.calls if c.task is not None]
    for call in made:
        assert call.answers == 1, f"call {call.number} was answered {call.answers} times"
        assert call.outcome in {OK, CONFLICT, UNAVAILABLE, REFUSED, CANCELLED}, (
            f"call {call.number}: {call.outcome}"
        )
    _check_gapless(log)
    stored = _check_each_append_whole_once_or_not(ledger, log)
    _check_acknowledged_are_stored(made, stored)
    _check_commit_order(made)
    _check_writers_order(made)


def _check_gapless(log: list[RecordedEvent]) -> None:
    """Positions 1..N, and each stream's versions 1..n in log order."""
    assert [e.global_position for e in log] == list(range(1, len(log) + 1))
    versions: dict[str, list[int]] = defaultdict(list)
    for event in log:
        versions[event.stream_id].append(event.stream_version)
    for stream, seen in versions.items():
        assert seen == list(range(1, len(seen) + 1)), f"stream {stream}: versions {seen}"


def _check_each_append_whole_once_or_not(
    ledger: Ledger, log: list[RecordedEvent]
) -> dict[int, list[RecordedEvent]]:
    stored: dict[int, list[RecordedEvent]] = defaultdict(list)
    for event in log:
        stored[json.loads(event.payload)["call"]].append(event)
    for number, events in stored.items():
        call = ledger.calls[number]
        assert call.task is not None, f"call {number} was never made but is stored"
        assert [e.event_id for e in events] == [e.event_id for e in call.request.events], (
            f"call {number} is stored partly or more than once: {events}"
        )
        assert call.outcome in MAY_BE_STORED, f"call {number} ({call.outcome}) is stored"
        assert not call.cancelled_unsent, f"call {number} was cancelled unsent, yet stored"
    return stored


def _check_acknowledged_are_stored(
    made: list[Call], stored: dict[int, list[RecordedEvent]]
) -> None:
    for call in made:
        if call.outcome != OK:
            continue
        events = stored.get(call.number)
        assert events, f"call {call.number} was acknowledged but is not stored"
        assert call.result is not None
        assert call.result.positions == tuple(e.global_position for e in events)
        last = {e.stream_id: e.stream_version for e in events}
        assert {s: call.result.stream_versions[s] for s in last} == last


def _check_commit_order(made: list[Call]) -> None:
    """An append acknowledged before another was made precedes it in the log."""
    acknowledged = [(c.answered, c.made, c.result, c.number) for c in made if c.outcome == OK]
    for answered, _, earlier, number in acknowledged:
        for _, made_at, later, later_number in acknowledged:
            if answered is not None and made_at > answered:
                assert earlier is not None
                assert later is not None
                assert max(earlier.positions) < min(later.positions), (
                    f"call {later_number}, made after call {number} was acknowledged, "
                    "precedes it in the log"
                )


def _check_writers_order(made: list[Call]) -> None:
    """A sequential writer's acknowledged appends are in its stream in its order."""
    by_writer: dict[str, list[Call]] = defaultdict(list)
    for call in made:
        if call.writer is not None and call.outcome == OK:
            by_writer[call.writer].append(call)
    for writer, calls in by_writer.items():
        calls.sort(key=lambda c: c.made)
        reached = [c.result.stream_versions[writer] for c in calls if c.result is not None]
        assert reached == sorted(set(reached)), f"writer {writer}: versions {reached}"
