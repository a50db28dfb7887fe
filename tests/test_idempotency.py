"""Finding stored events by id (EventLookup), on every store."""

from __future__ import annotations

import uuid
from typing import cast

import pytest

from eventcore import AppendRequest, EventMetadata, StreamId, ValidationError
from eventcore.demo.bank import MoneyDeposited, bank_codec
from eventcore.store import EventLookup, EventStore
from eventcore.testing.faults import FaultInjectingStore


async def test_events_by_id_returns_stored_events_in_log_order(any_store: EventStore) -> None:
    assert isinstance(any_store, EventLookup)
    meta = EventMetadata()
    events = [bank_codec.new_event(StreamId(s), MoneyDeposited(1), meta) for s in "abc"]
    await any_store.append(AppendRequest.create({"a": 0, "b": 0, "c": 0}, events))
    stored = await any_store.read_all()
    wanted = [events[2].event_id, uuid.uuid4(), events[0].event_id]

    assert await any_store.events_by_id(wanted) == [stored[0], stored[2]]
    assert await any_store.events_by_id([]) == []
    assert await FaultInjectingStore(any_store).events_by_id(wanted) == [stored[0], stored[2]]
    with pytest.raises(ValidationError, match="'not-a-uuid'"):
        await any_store.events_by_id([cast(uuid.UUID, "not-a-uuid")])
