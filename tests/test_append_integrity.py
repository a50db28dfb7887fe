"""An append request is checked however it is built, and stored events stay as
they were written, whatever SQL is aimed at them."""

from __future__ import annotations

import dataclasses
import pickle
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from eventcore import (
    DuplicateEventId,
    EventMetadata,
    InvalidExpectedVersions,
    StreamId,
    ValidationError,
)
from eventcore.backends.sqlite import SQLiteEventStore, _schema
from eventcore.store import EventStore
from eventcore.types import AppendRequest, NewEvent


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
        (
            ((_A, 0),),
            (NewEvent(_A, "T", "{}"),),  # type: ignore[arg-type]
            ValidationError,
            "payload must be bytes",
        ),
        (
            ((_A, 0),),
            (NewEvent(_A, "T", b"{}", event_id="x"),),  # type: ignore[arg-type]
            ValidationError,
            "event_id",
        ),
        (
            ((_A, 0),),
            (NewEvent(_A, "T", b"{}", EventMetadata(correlation_id=1)),),  # type: ignore[arg-type]
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


def test_a_request_repeating_several_event_ids_names_each_once_in_order() -> None:
    first, second, third = _event("a"), _event("a"), _event("a")
    with pytest.raises(DuplicateEventId) as caught:
        AppendRequest(((_A, 0),), (first, second, first, third, second, first))
    assert caught.value.event_ids == (first.event_id, second.event_id)


def test_an_unstorable_event_type_after_storable_ones_is_refused() -> None:
    good = _event("a")
    bad = dataclasses.replace(good, event_type="t\x00", event_id=uuid.uuid4())
    with pytest.raises(ValidationError, match="NUL"):
        AppendRequest(((_A, 0),), (good, _event("a"), bad))


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


# -- SQLite: an INSERT may not replace a stored event ------------------------------------


def _replace_statements() -> list[tuple[str, tuple[object, ...]]]:
    columns = (
        "(position, event_id, stream_id, stream_version, event_type, payload, metadata,"
        " recorded_at)"
    )
    forged = "'Forged', '{}', '{}', '2000-01-01T00:00:00+00:00'"
    return [
        # same position
        (f"INSERT OR REPLACE INTO events {columns} VALUES (1, ?, 'x', 1, {forged})", ("new",)),
        (f"REPLACE INTO events {columns} VALUES (1, ?, 'x', 1, {forged})", ("new",)),
        # same event id, elsewhere in the log
        (f"REPLACE INTO events {columns} VALUES (99, ?, 'x', 1, {forged})", ("stored",)),
        # same stream and version
        (f"REPLACE INTO events {columns} VALUES (99, ?, 's', 1, {forged})", ("new",)),
        # an upsert is an update
        (
            f"INSERT INTO events {columns} VALUES (1, ?, 's', 1, {forged})"
            " ON CONFLICT DO UPDATE SET event_type = 'Forged'",
            ("stored",),
        ),
    ]


@pytest.mark.parametrize(
    ("statement", "which_id"),
    _replace_statements(),
    ids=["insert-or-replace", "replace", "replace-by-event-id", "replace-by-version", "upsert"],
)
async def test_a_stored_sqlite_event_cannot_be_replaced_through_a_raw_connection(
    tmp_path: Path, statement: str, which_id: tuple[str]
) -> None:
    path = tmp_path / "events.db"
    async with await SQLiteEventStore.open(path) as store:
        stored = _event("s")
        await store.append(AppendRequest.create({"s": 0}, [stored]))
        event_id = str(stored.event_id) if which_id == ("stored",) else str(uuid.uuid4())
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            with pytest.raises(sqlite3.IntegrityError, match="immutable"):
                conn.execute(statement, (event_id,))
        finally:
            conn.close()
        assert [(e.event_id, e.event_type) for e in await store.read_all()] == [
            (stored.event_id, "Happened")
        ]


async def test_a_version_2_sqlite_file_gets_the_replace_guard_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    conn = sqlite3.connect(path)
    for statement in (*_schema._VERSION_1, *_schema._VERSION_2):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    async with await SQLiteEventStore.open(path) as store:
        await store.append(AppendRequest.create({"s": 0}, [_event("s")]))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="immutable"):
            conn.execute("REPLACE INTO events VALUES (1, 'x', 's', 1, 'Forged', '{}', '{}', 'now')")
    finally:
        conn.close()
