"""Garbage in gives a clear ValidationError on every backend, and writes nothing."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from eventcore import (
    Codec,
    DuplicateEventId,
    EncodingError,
    EventMetadata,
    StreamId,
    ValidationError,
)
from eventcore.store import CheckpointStore, EventStore, LeaseStore
from eventcore.types import AppendRequest, NewEvent, Snapshot

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


async def test_a_request_the_store_refuses_writes_none_of_its_events(
    any_store: EventStore,
) -> None:
    stored = NewEvent(StreamId("a"), "T", b"{}")
    await any_store.append(AppendRequest.create({"a": 0}, [stored]))
    # A well-formed request (it is built outside pytest.raises, so only the store can
    # refuse it): its first event is new, its second reuses a stored id.
    fresh = NewEvent(StreamId("b"), "T", b"{}")
    reused = NewEvent(StreamId("b"), "T", b"{}", event_id=stored.event_id)
    refused = AppendRequest.create({"b": 0}, [fresh, reused])
    with pytest.raises(DuplicateEventId):
        await any_store.append(refused)
    assert [e.event_id for e in await any_store.read_all()] == [stored.event_id]
    assert await any_store.stream_version("b") == 0


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


# -- Text no database can store: NUL and lone surrogates --------------------------
#
# PostgreSQL refuses NUL in text and every driver refuses lone surrogates (which
# json.loads makes from client input such as "\ud800"); so every store refuses both
# up front, with a ValidationError naming the value, and writes nothing.

NUL = "x\x00y"
SURROGATE = "x\ud800y"
UNSTORABLE = pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])


async def _drain(items: Any) -> list[Any]:
    return [item async for item in items]


_STORE_CALLS_WITH_TEXT = {
    "read_stream": lambda s, bad: s.read_stream(bad),
    "read_streams": lambda s, bad: s.read_streams(["a", bad]),
    "stream_version": lambda s, bad: s.stream_version(bad),
    "iter_stream": lambda s, bad: _drain(s.iter_stream(bad)),
    "read_all-prefix": lambda s, bad: s.read_all(stream_prefix=bad),
    "read_all-pattern": lambda s, bad: s.read_all(stream_pattern=bad),
    "read_all-event_types": lambda s, bad: s.read_all(event_types=["T", bad]),
    "iter_all-prefix": lambda s, bad: _drain(s.iter_all(stream_prefix=bad)),
    "iter_all-event_types": lambda s, bad: _drain(s.iter_all(event_types=[bad])),
    "save_checkpoint": lambda s, bad: s.save_checkpoint(bad, 1),
    "load_checkpoint": lambda s, bad: s.load_checkpoint(bad),
    "acquire_lease-name": lambda s, bad: s.acquire_lease(bad, "me", 10),
    "acquire_lease-holder": lambda s, bad: s.acquire_lease("l", bad, 10),
    "release_lease-name": lambda s, bad: s.release_lease(bad, "me"),
    "release_lease-holder": lambda s, bad: s.release_lease("l", bad),
    "lease_holder": lambda s, bad: s.lease_holder(bad),
    "save_snapshot": lambda s, bad: s.save_snapshot(Snapshot(bad, (), b"{}")),
    "load_snapshot": lambda s, bad: s.load_snapshot(bad),
}


@UNSTORABLE
@pytest.mark.parametrize("call", _STORE_CALLS_WITH_TEXT.values(), ids=_STORE_CALLS_WITH_TEXT)
async def test_store_calls_refuse_text_no_database_can_store(
    any_store: Any, call: Any, bad: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(repr(bad))):
        await call(any_store, bad)
    assert await any_store.read_all() == []
    assert await any_store.load_checkpoint("x") is None
    assert await any_store.lease_holder("l") is None
    assert await any_store.load_snapshot("x") is None


def _request_with(bad: str, where: str) -> AppendRequest:
    stream = bad if where == "stream" else "a"
    metadata = EventMetadata(
        correlation_id=bad if where == "correlation_id" else None,
        causation_id=bad if where == "causation_id" else None,
    )
    good = NewEvent(StreamId("a"), "T", b"{}")
    if where == "stream":
        return AppendRequest.create({"a": 0, stream: 0}, [good])
    event_type = bad if where == "event_type" else "T"
    second = NewEvent(StreamId("a"), event_type, b"{}", metadata)
    return AppendRequest.create({"a": 0}, [good, second])


@UNSTORABLE
@pytest.mark.parametrize("where", ["stream", "event_type", "correlation_id", "causation_id"])
async def test_append_requests_with_unstorable_text_are_refused_before_the_store(
    any_store: EventStore, bad: str, where: str
) -> None:
    # AppendRequest.create is the one door into append (backends trust a request).
    with pytest.raises(ValidationError, match=re.escape(repr(bad))):
        await any_store.append(_request_with(bad, where))
    assert await any_store.read_all() == []


@UNSTORABLE
@pytest.mark.parametrize("where", ["stream", "correlation_id", "causation_id"])
async def test_execute_refuses_unstorable_text_and_writes_nothing(
    any_store: EventStore, bad: str, where: str
) -> None:
    from eventcore import execute
    from eventcore.demo.bank import Deposit, bank_codec

    command = Deposit(bad if where == "stream" else "acc-1", 5)
    ids: dict[str, Any] = {where: bad} if where != "stream" else {}
    with pytest.raises(ValidationError, match=re.escape(repr(bad))):
        await execute(any_store, command, codec=bank_codec, **ids)
    assert await any_store.read_all() == []


@UNSTORABLE
def test_codec_refuses_type_names_no_database_can_store(bad: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(repr(bad))):
        Codec().register(bad)
    with pytest.raises(ValidationError, match=re.escape(repr(bad))):
        Codec().add(type("E", (msgspec.Struct,), {}), bad)


async def test_metadata_with_a_lone_surrogate_is_refused_and_writes_nothing(
    any_store: EventStore,
) -> None:
    # User metadata is free-form JSON, like a payload: NUL is escaped (\u0000) and
    # stored faithfully, a lone surrogate cannot be encoded at all.
    event = NewEvent(StreamId("a"), "T", b"{}", EventMetadata(user={"k": SURROGATE}))
    with pytest.raises(EncodingError, match="surrogate"):
        await any_store.append(AppendRequest.create({"a": 0}, [event]))
    assert await any_store.read_all() == []
