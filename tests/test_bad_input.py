"""Garbage in gives a clear ValidationError on every backend, and writes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from eventcore import AppendRequest, NewEvent, StreamId, ValidationError
from eventcore.store import CheckpointStore, EventStore, LeaseStore

HUGE = 2**70


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.read_all(after=HUGE),
        lambda s: s.read_all(limit=HUGE),
        lambda s: s.read_stream("a", from_version=HUGE),
        lambda s: s.read_streams(["a"], from_versions={"a": HUGE}),
        lambda s: s.read_streams(["a"], from_versions=[1]),
        lambda s: s.read_streams(None),
        lambda s: s.read_streams("abc"),
        lambda s: s.save_checkpoint("c", HUGE),
        lambda s: s.acquire_lease("l", "me", float("nan")),
        lambda s: s.acquire_lease("l", "me", float("inf")),
    ],
    ids=[
        "after",
        "limit",
        "from_version",
        "from_versions-huge",
        "from_versions-list",
        "read_streams-none",
        "read_streams-str",
        "checkpoint",
        "ttl-nan",
        "ttl-inf",
    ],
)
async def test_out_of_range_and_mistyped_arguments_are_validation_errors(
    any_store: Any, call: Any
) -> None:
    assert isinstance(any_store, EventStore | CheckpointStore | LeaseStore)
    with pytest.raises(ValidationError):
        await call(any_store)


@pytest.mark.parametrize(
    ("expected", "events", "message"),
    [
        (None, [], "expected must be a mapping"),
        ("a", [], "expected must be a mapping"),
        ({"a": 0}, {"a": 1}, "events must be a sequence"),
        ({"a": 0}, [NewEvent(StreamId("a"), "", b"{}")], "event_type must be a non-empty str"),
        ({"a": 0}, [NewEvent(StreamId("a"), "T", "{}")], "payload must be bytes"),  # type: ignore[arg-type]
        ({"a": 0}, [NewEvent(StreamId("a"), "T", b"{}", event_id="x")], "event_id"),  # type: ignore[arg-type]
        ({"a": 2**63}, [], "2\\*\\*63-1"),
    ],
)
def test_malformed_append_requests_are_refused(expected: Any, events: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AppendRequest.create(expected, events)


async def test_a_refused_request_writes_nothing(any_store: EventStore) -> None:
    good = NewEvent(StreamId("a"), "T", b"{}", event_id=uuid.uuid4())
    bad = NewEvent(StreamId("a"), "T", "{}")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await any_store.append(AppendRequest.create({"a": 0}, [good, bad]))
    assert await any_store.read_all() == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"command": None}, "command=None, which is not a Command"),
        ({"codec": "x"}, "codec='x', which is not a Codec or None"),
        ({"retry": 3}, "retry=3, which is not a RetryPolicy"),
        ({"cache": "yes"}, "cache='yes', which is not a StateCache or None"),
        ({"metadata": [1]}, "metadata=\\[1\\], which is not a Mapping or None"),
    ],
)
async def test_execute_names_a_mistyped_argument(kwargs: dict[str, Any], message: str) -> None:
    from eventcore import InMemoryEventStore, execute
    from eventcore.demo.bank import Deposit, bank_codec

    arguments: dict[str, Any] = {"command": Deposit("a", 1), "codec": bank_codec, **kwargs}
    store = InMemoryEventStore()
    with pytest.raises(ValidationError, match=message):
        await execute(store, arguments.pop("command"), **arguments)
    assert await store.read_all() == []


@pytest.mark.parametrize("returned", [5, "abc", {"s-1": "x"}, b"xy"])
async def test_garbage_from_handle_streams_or_resolver_is_a_validation_error(
    returned: Any,
) -> None:
    from eventcore import Command, InMemoryEventStore, execute

    class Garbage(Command[None, Any]):
        def __init__(self, where: str) -> None:
            self.where = where

        def streams(self) -> Any:
            return returned if self.where == "streams" else ["s"]

        def resolve_streams(self, state: None) -> Any:
            return returned if self.where == "resolver" else []

        def initial_state(self) -> None:
            return None

        def apply(self, state: None, stream_id: StreamId, event: Any) -> None:
            return None

        def handle(self, state: None) -> Any:
            return returned if self.where == "handle" else []

    store = InMemoryEventStore()
    for where in ("streams", "resolver", "handle"):
        with pytest.raises(ValidationError, match=repr(returned)[:10].replace("{", "\\{")):
            await execute(store, Garbage(where))
    assert await store.read_all() == []


async def test_append_refuses_what_is_not_an_append_request(any_store: EventStore) -> None:
    with pytest.raises(ValidationError, match=r"AppendRequest\.create"):
        await any_store.append({"a": 0})  # type: ignore[arg-type]
