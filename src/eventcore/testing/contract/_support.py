"""Fixture slots and helpers shared by the contract test classes."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import pytest_asyncio

from eventcore.store import EventReader, EventStore
from eventcore.types import (
    EMPTY_METADATA,
    AppendRequest,
    AppendResult,
    EventMetadata,
    NewEvent,
    RecordedEvent,
    StreamId,
)

_T = TypeVar("_T")

PeerFactory = Callable[[], Awaitable[Any]]
"""What the ``open_peer`` fixture yields: each call opens another handle onto the
storage behind ``store`` (a second connection, or the same object for a backend that
lives in one process)."""

_FIXTURE_HELP = {
    "store": (
        "an async fixture (@pytest_asyncio.fixture) that yields an open, empty store "
        "and closes it afterwards"
    ),
    "open_peer": (
        "an async fixture (@pytest_asyncio.fixture) that yields a zero-argument async "
        "callable opening another handle onto the same storage as `store` (a second "
        "connection; return `store` itself if the backend is single-process), and "
        "closes the handles it opened afterwards"
    ),
}


def _unconfigured(owner: object, fixture: str) -> Any:
    raise NotImplementedError(
        f"{type(owner).__name__} must override the `{fixture}` fixture: "
        f"{_FIXTURE_HELP[fixture]}. See the docstring of eventcore.testing.contract."
    )


class ContractFixtures:
    """The fixtures a backend's test class overrides; every contract class has them."""

    # ``*_: Any, **__: Any`` lets an override request any fixtures it needs
    # (tmp_path, a database URL...) and still type-check as an override.

    @pytest_asyncio.fixture
    async def store(self, *_: Any, **__: Any) -> AsyncIterator[Any]:
        """An open, empty store; closed after the test."""
        yield _unconfigured(self, "store")

    @pytest_asyncio.fixture
    async def open_peer(self, *_: Any, **__: Any) -> AsyncIterator[PeerFactory]:
        """Opens further handles onto the storage of ``store``."""
        yield _unconfigured(self, "open_peer")


# -- building requests ---------------------------------------------------------------


def json_payload(data: Mapping[str, Any]) -> bytes:
    """Compact, key-sorted JSON: the bytes a codec would hand to a store."""
    return json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def new_event(
    stream_id: str,
    event_type: str = "Happened",
    data: Mapping[str, Any] | None = None,
    *,
    metadata: EventMetadata = EMPTY_METADATA,
) -> NewEvent:
    """A NewEvent with a small JSON payload (``{}`` unless ``data`` is given)."""
    return NewEvent(StreamId(stream_id), event_type, json_payload(data or {}), metadata)


def append_request(
    expected: Mapping[str, int] | Iterable[tuple[str, int]],
    events: Sequence[NewEvent] = (),
) -> AppendRequest:
    """``AppendRequest.create``, which validates."""
    return AppendRequest.create(expected, events)


async def append_new(
    store: EventStore, stream_id: str, count: int = 1, *, event_type: str = "Happened"
) -> AppendResult:
    """Append ``count`` events to one stream at its current version."""
    version = await store.stream_version(stream_id)
    events = [new_event(stream_id, event_type, {"n": version + i}) for i in range(1, count + 1)]
    return await store.append(append_request({stream_id: version}, events))


async def append_one_each(
    store: EventStore, stream_ids: Iterable[str], *, event_type: str = "Happened"
) -> AppendResult:
    """One atomic append writing one event to each stream, in the given order."""
    ids = list(dict.fromkeys(StreamId(s) for s in stream_ids))
    current = await store.read_streams(ids)
    expected: dict[str, int] = {s: len(current[s]) for s in ids}
    return await store.append(append_request(expected, [new_event(s, event_type) for s in ids]))


async def collect(events: AsyncIterator[_T], *, at_most: int = 10_000) -> list[_T]:
    """Drain an async iterator; fail instead of hanging if it never ends."""
    items: list[_T] = []
    async for item in events:
        items.append(item)
        if len(items) > at_most:
            raise AssertionError(f"iterator yielded more than {at_most} items; is it looping?")
    return items


async def whole_log(reader: EventReader) -> list[RecordedEvent]:
    return await reader.read_all()


def event_ids(events: Iterable[RecordedEvent | NewEvent]) -> list[uuid.UUID]:
    return [event.event_id for event in events]


def positions(events: Iterable[RecordedEvent]) -> list[int]:
    return [event.global_position for event in events]


def versions(events: Iterable[RecordedEvent]) -> list[int]:
    return [event.stream_version for event in events]


def stream_ids(events: Iterable[RecordedEvent]) -> list[str]:
    return [str(event.stream_id) for event in events]


def is_strictly_increasing(values: Sequence[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))
