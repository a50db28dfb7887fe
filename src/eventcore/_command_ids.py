"""Command ids: event ids derived from a caller's key, so that a retry is recognised.

Over a network an append can commit and its reply still be lost (the connection
drops, the caller's task is cancelled): the caller sees ``StoreUnavailable`` or
``CancelledError`` and cannot tell whether the events were written. With
``execute(..., command_id=K)`` the ``i``-th event the command writes gets the id
``uuid5(COMMAND_EVENT_NAMESPACE, f"{K}:{i}")`` — the same on every attempt and
every retry — and every store refuses an event id it already holds. A retry of a
command that did commit therefore cannot write again; the executor looks the
derived ids up and reports the original outcome instead.

UUIDv5 rather than a time-ordered id: the id must depend on the key alone, and
v5 is a standard, valid UUID any tool understands. The namespace and the
``"{K}:{i}"`` form are part of the stored data: changing either would make every
retry across an upgrade write again (a test pins them).
"""

from __future__ import annotations

import uuid
from collections.abc import Generator
from typing import Any, Final, TypeAlias

from eventcore._plan import AppendEvents, ExecutionResult, LookupEvents, Plan, Step
from eventcore.errors import BusinessRuleViolation, ValidationError
from eventcore.types import AppendRequest, NewEvent, RecordedEvent

COMMAND_EVENT_NAMESPACE: Final = uuid.UUID("d8e24517-f153-55c3-b8f7-7cee6c8772cc")
"""uuid5(NAMESPACE_URL, "https://github.com/eventcore/eventcore#command_id"); never change it."""

CommandId: TypeAlias = str | uuid.UUID

# How many derived ids one lookup asks for; a command that wrote more is looked
# up in further rounds (most commands write one to three events).
_LOOKUP_ROUND: Final = 16


class CommandEventIds:
    """The event ids of one command id. Build it with :meth:`of`, which validates."""

    __slots__ = ("command_id",)

    def __init__(self, command_id: str) -> None:
        self.command_id = command_id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CommandEventIds) and other.command_id == self.command_id

    def __hash__(self) -> int:
        return hash(self.command_id)

    def __repr__(self) -> str:
        return f"CommandEventIds({self.command_id!r})"

    @classmethod
    def of(cls, value: object, what: str = "command_id") -> CommandEventIds | None:
        """``None`` for ``None``; else the validated key (a UUID counts as its
        canonical text, so ``K`` and ``str(K)`` name the same command)."""
        if value is None:
            return None
        if isinstance(value, uuid.UUID):
            return cls(str(value))
        if not isinstance(value, str):
            raise ValidationError(
                f"{what} must be a str or a uuid.UUID (a key unique to the command you "
                f"mean to run once), got {value!r}"
            )
        if not value.strip():
            raise ValidationError(f"{what} must not be empty or only white space, got {value!r}")
        if "\x00" in value:
            raise ValidationError(f"{what} must not contain NUL, got {value!r}")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValidationError(
                f"{what} must be valid Unicode text (it contains a lone surrogate), got {value!r}"
            ) from None
        return cls(str.__str__(value))  # a plain str, whatever subclass came in

    def event_id(self, index: int) -> uuid.UUID:
        return uuid.uuid5(COMMAND_EVENT_NAMESPACE, f"{self.command_id}:{index}")

    def derive(self, request: AppendRequest) -> AppendRequest:
        """``request`` with its events' ids derived from the command id."""
        events = tuple(
            NewEvent(e.stream_id, e.event_type, e.payload, e.metadata, self.event_id(i))
            for i, e in enumerate(request.events)
        )
        return AppendRequest(request.expected, events)


def recognising_replays(plan: Plan, ids: CommandEventIds) -> Plan:
    """Run ``plan`` with event ids derived from the command id, and recognise a
    replay of a command that already committed.

    A replay meets one of three things: its append is refused (the store holds
    the ids already), or, the original having changed the state, ``handle``
    refuses (the money is spent) or decides nothing. In each case the first
    derived id is looked up; if it is stored, the earlier outcome is returned with
    ``already_applied=True``, otherwise the plan's own outcome stands. A wrapper,
    so the plan itself knows nothing of command ids, and a run without one pays
    nothing.
    """
    appends = 0  # decisions that reached the store, for the outcome's ``attempts``
    reply: Any = None
    thrown: Exception | None = None
    while True:
        try:
            step = plan.send(reply) if thrown is None else plan.throw(thrown)
        except StopIteration as finished:
            result: ExecutionResult = finished.value
            if result.events_written:
                return result
            return (yield from _applied_before(ids, result.attempts)) or result
        except BusinessRuleViolation:
            applied = yield from _applied_before(ids, appends + 1)
            if applied is None:
                raise
            return applied
        reply, thrown = None, None
        if type(step) is AppendEvents:
            appends += 1
            step = AppendEvents(ids.derive(step.request))
        try:
            reply = yield step
        except ValidationError as refused:
            # Only an append's refusal is thrown in (DuplicateEventId, once every
            # store raises it): a replay, if the first derived id is stored.
            if (applied := (yield from _applied_before(ids, appends))) is not None:
                plan.close()
                return applied
            thrown = refused
        except Exception as exc:  # a version conflict, for the plan to retry
            thrown = exc


def _applied_before(
    ids: CommandEventIds, attempts: int
) -> Generator[Step, Any, ExecutionResult | None]:
    """The outcome of the earlier execution under this command id, if one committed."""
    earlier = yield from _find_applied(ids)
    if not earlier:
        return None
    versions: dict[str, int] = {}
    for record in earlier:  # in append order, so the last one of a stream is its version
        versions[record.stream_id] = record.stream_version
    positions = tuple(record.global_position for record in earlier)
    return ExecutionResult(attempts, len(earlier), versions, positions, already_applied=True)


def _find_applied(ids: CommandEventIds) -> Generator[Step, Any, list[RecordedEvent]]:
    """The events the earlier execution wrote, in the order its ``handle`` returned
    them; [] if none. Its append was atomic, so they are exactly the derived ids
    ``0 .. n-1`` that are stored."""
    found: list[RecordedEvent] = []
    while True:
        wanted = [ids.event_id(i) for i in range(len(found), len(found) + _LOOKUP_ROUND)]
        stored: list[RecordedEvent] = yield LookupEvents(tuple(wanted))
        by_id = {record.event_id: record for record in stored}
        for event_id in wanted:
            record = by_id.get(event_id)
            if record is None:
                return found
            found.append(record)
