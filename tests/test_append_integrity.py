"""An append request is checked however it is built, and stored events stay as
they were written, whatever SQL is aimed at them."""

from __future__ import annotations

import dataclasses
import pickle
import uuid
from typing import Any

import pytest

from eventcore import (
    AppendRequest,
    DuplicateEventId,
    EventMetadata,
    InvalidExpectedVersions,
    NewEvent,
    StreamId,
    ValidationError,
)
from eventcore.store import EventStore


def _event(stream: str, event_id: uuid.UUID | None = None) -> NewEvent:
    return NewEvent(StreamId(stream), "Happened", b"{}", event_id=event_id or uuid.uuid4())


# -- the public constructor validates -------------------------------------------------

_A = StreamId("a")


@pytest.mark.parametrize(
    ("expected", "events", "error", "message"),
    [
        (((_A, 0),), (_event("b"),), InvalidExpectedVersions, "'b'.*no expected version"),
        (((_A, 0), (_A, 0)), (), InvalidExpectedVersions, "duplicate.*'a'"),
        (((_A, 0), (_A, 1)), (), InvalidExpectedVersions, "contradictory.*'a'"),
        (((_A, -1),), (), InvalidExpectedVersions, "int from 0"),
        (((_A, True),), (), InvalidExpectedVersions, "int from 0"),
        (((_A, 2**63),), (), InvalidExpectedVersions, "int from 0"),
        (((" a ", 0), (_A, 0)), (), InvalidExpectedVersions, "duplicate.*'a'"),
        (((_A, 0),), ("not an event",), ValidationError, "NewEvent"),
        (((_A, 0),), (NewEvent(_A, "", b"{}"),), ValidationError, "event_type"),
        (((_A, 0),), (NewEvent(_A, "T", "{}"),), ValidationError, "payload must be bytes"),
        (((_A, 0),), (NewEvent(_A, "T", b"{}", event_id="x"),), ValidationError, "event_id"),
        (
            ((_A, 0),),
            (NewEvent(_A, "T", b"{}", EventMetadata(correlation_id=1)),),
            ValidationError,
            "correlation_id",
        ),
        ("a", (), ValidationError, "expected must be"),
        (((_A, 0),), "ab", ValidationError, "events must be"),
        ((("a",),), (), ValidationError, "pair"),
    ],
    ids=[
        "unlisted-stream",
        "stream-twice",
        "contradictory",
        "negative",
        "bool-version",
        "too-big",
        "padded-twice",
        "not-an-event",
        "empty-type",
        "str-payload",
        "str-event-id",
        "bad-metadata",
        "str-expected",
        "str-events",
        "not-a-pair",
    ],
)
def test_building_a_request_directly_refuses_what_create_refuses(
    expected: Any, events: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        AppendRequest(expected, events)


def test_a_request_repeating_an_event_id_names_it() -> None:
    event = _event("a")
    with pytest.raises(DuplicateEventId, match=str(event.event_id)) as caught:
        AppendRequest(((_A, 0),), (event, event))
    assert caught.value.event_ids == (event.event_id,)


def test_replacing_a_field_of_a_request_validates_again() -> None:
    request = AppendRequest(((_A, 0),), (_event("a"),))
    with pytest.raises(InvalidExpectedVersions, match="'b'"):
        dataclasses.replace(request, events=(_event("b"),))


def test_a_directly_built_request_is_normalised_like_create() -> None:
    event = _event("a")
    request = AppendRequest([(" a ", 0)], [event])  # type: ignore[arg-type]
    assert request == AppendRequest.create({"a": 0}, [event])
    assert type(request.expected[0][0]) is StreamId
    assert isinstance(request.expected, tuple)
    assert isinstance(request.events, tuple)


def test_a_request_survives_pickling() -> None:
    request = AppendRequest.create({"a": 0}, [_event("a")])
    assert pickle.loads(pickle.dumps(request)) == request


def test_duplicate_event_id_is_a_validation_error_that_pickles() -> None:
    ids = (uuid.uuid4(), uuid.uuid4())
    error = DuplicateEventId(ids)
    assert isinstance(error, ValidationError)
    assert all(str(i) in str(error) for i in ids)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is DuplicateEventId
    assert copy.event_ids == ids
    assert str(copy) == str(error)


async def test_a_directly_built_request_for_an_unlisted_stream_never_reaches_the_log(
    any_store: EventStore,
) -> None:
    with pytest.raises(InvalidExpectedVersions, match="'b'"):
        await any_store.append(AppendRequest(((_A, 0),), (_event("a"), _event("b"))))
    assert await any_store.head_position() == 0
    result = await any_store.append(AppendRequest.create({"a": 0}, [_event("a")]))
    assert result.positions == (1,)
    assert [e.global_position for e in await any_store.read_all()] == [1]


async def test_a_store_refuses_an_event_id_repeated_within_a_trusted_request(
    any_store: EventStore,
) -> None:
    # The executor's private fast path skips the request's own checks: the store's
    # must still hold.
    event = _event("a")
    request = AppendRequest._trusted(((_A, 0),), (event, event))
    with pytest.raises(DuplicateEventId, match=str(event.event_id)) as caught:
        await any_store.append(request)
    assert caught.value.event_ids == (event.event_id,)
    assert await any_store.head_position() == 0
