"""Given / when / then for command logic, with no store and no event loop.

::

    def test_transfer_moves_money() -> None:
        (
            given({"acc-1": [Deposited(100)]}, codec=bank_codec)
            .when(Transfer("acc-1", "acc-2", 30))
            .then([("acc-1", Withdrawn(30)), ("acc-2", Deposited(30))])
        )

    def test_overdraft_is_refused() -> None:
        given({}, codec=bank_codec).when(Transfer("acc-1", "acc-2", 30)).then_raises(
            BusinessRuleViolation, match="insufficient"
        )

The command runs through the real executor logic
(:func:`eventcore.plan.plan_execution`), fed from the given events, which go
through the codec both ways, so an unregistered event class fails here as it would
in production.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventcore.codec import Codec, default_codec
from eventcore.command import Command
from eventcore.plan import (
    AppendEvents,
    LoadSnapshot,
    ReadStreams,
    SaveSnapshot,
    plan_execution,
)
from eventcore.retry import RetryPolicy
from eventcore.types import (
    EMPTY_METADATA,
    NewEvent,
    RecordedEvent,
    StreamId,
    new_event_id,
)


def given(
    history: Mapping[str, Sequence[object]] | None = None, *, codec: Codec | None = None
) -> Scenario:
    """Start a scenario from the events already in each stream."""
    codec = codec or default_codec
    streams: dict[StreamId, list[RecordedEvent]] = {}
    position = 0
    now = datetime.now(UTC)
    for raw_stream, events in (history or {}).items():
        stream = StreamId(raw_stream)
        records = streams.setdefault(stream, [])
        for event in events:
            position += 1
            name, payload = codec.encode(event)
            records.append(
                RecordedEvent(
                    new_event_id(),
                    stream,
                    len(records) + 1,
                    position,
                    name,
                    payload,
                    EMPTY_METADATA,
                    now,
                )
            )
    return Scenario(streams, codec)


@dataclass(frozen=True, slots=True)
class Scenario:
    streams: Mapping[StreamId, list[RecordedEvent]]
    codec: Codec

    def _read(self, step: ReadStreams) -> dict[str, list[RecordedEvent]]:
        return {
            stream: _page(self.streams.get(stream, []), first, step.limit)
            for stream, first in zip(step.stream_ids, step.from_versions, strict=True)
        }

    def when(self, command: Command[Any, Any]) -> Outcome:
        """Run ``command`` against the given history and capture what it decides."""
        plan = plan_execution(
            command, codec=self.codec, retry=RetryPolicy.no_retry(), metadata=EMPTY_METADATA
        )
        read: list[StreamId] = []
        try:
            step = next(plan)
            while True:
                if isinstance(step, ReadStreams):
                    read.extend(step.stream_ids)
                    step = plan.send(self._read(step))
                elif isinstance(step, AppendEvents):
                    decided = [
                        (e.stream_id, self.codec.decode(_as_recorded(e.stream_id, e)))
                        for e in step.request.events
                    ]
                    plan.close()
                    return Outcome(decided, None, tuple(read))
                elif isinstance(step, LoadSnapshot | SaveSnapshot):
                    step = plan.send(None)  # a scenario starts from its given events
                else:
                    raise AssertionError(f"a scenario has no conflicts to retry, got {step!r}")
        except StopIteration:
            return Outcome([], None, tuple(read))
        except Exception as exc:  # the outcome under test may be an error
            return Outcome([], exc, tuple(read))


def _page(events: list[RecordedEvent], first: int, limit: int | None) -> list[RecordedEvent]:
    return events[first - 1 : None if limit is None else first - 1 + limit]


def _as_recorded(stream: StreamId, event: NewEvent) -> RecordedEvent:
    return RecordedEvent(
        event.event_id,
        stream,
        0,
        0,
        event.event_type,
        event.payload,
        event.metadata,
        datetime.now(UTC),
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the command decided: ``(stream id, event)`` pairs, or the error it raised."""

    events: list[tuple[StreamId, Any]]
    error: BaseException | None
    streams_read: tuple[StreamId, ...]

    def then(self, expected: Sequence[tuple[str, object]]) -> Outcome:
        """Assert the command decided exactly these events, in this order."""
        if self.error is not None:
            raise AssertionError(f"expected events {expected!r}, but it raised {self.error!r}")
        wanted = [(StreamId(s), e) for s, e in expected]
        if self.events != wanted:
            raise AssertionError(f"expected events {wanted!r}\n      but got {self.events!r}")
        return self

    def then_nothing(self) -> Outcome:
        """Assert the command succeeded and decided no events."""
        return self.then([])

    def then_raises(
        self, error_type: type[BaseException], *, match: str | None = None
    ) -> BaseException:
        """Assert the command raised ``error_type`` (message searched for ``match``)."""
        if self.error is None:
            raise AssertionError(f"expected {error_type.__name__}, but it decided {self.events!r}")
        if not isinstance(self.error, error_type):
            raise AssertionError(
                f"expected {error_type.__name__}, but it raised {self.error!r}"
            ) from self.error
        if match is not None and not re.search(match, str(self.error)):
            raise AssertionError(f"{self.error!r} does not match {match!r}")
        return self.error
