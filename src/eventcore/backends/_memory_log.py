"""The in-memory store's log: its events by position, one list per column.

Why columns and not a row object per event: CPython's cyclic garbage collector
counts every container the process allocates and keeps, and each 700 kept it runs
a collection, whose survivors are walked again by the older generations' runs as
the heap grows. Kept records (a record, its ``UUID``, its metadata and its stream
id: four containers per event) once took half the CPU of a cached command on a
store of 100,000 events. Rows as plain tuples of atomic values halved that, but a
tuple is still a container when it is made, so every event still counted towards
a collection: about 1 in 700 appends paid a collection, and together they were
4.6-6.2 µs of a 29-37 µs command (``benchmarks/memory_store_gc.py``). Appending ints,
text and bytes to lists that already exist allocates no container at all, so a
store that is written and not read costs the collector nothing.

An event becomes a :class:`~eventcore.types.RecordedEvent` the first time it is
read, and that record is kept (``records``) so that every later read returns the
same object.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from eventcore.types import (
    EventMetadata,
    RecordedEvent,
    StreamId,
    trusted_metadata,
    trusted_recorded_event,
    trusted_uuid,
)

_NO_USER_METADATA: Final[Mapping[str, Any]] = MappingProxyType({})
# The stored form of metadata with no ids and no user data: shared, and read-only.
_NO_METADATA: Final = trusted_metadata(None, None, _NO_USER_METADATA)


class EventLog:
    """Column ``c[p - 1]`` holds that value of the event at position ``p``. Only
    :meth:`InMemoryEventStore.append` adds to it (one value to every column per
    event); nothing ever changes or removes a value but a record's first build."""

    __slots__ = (
        "_last_metadata",
        "causations",
        "correlations",
        "event_ids",
        "event_types",
        "payloads",
        "recorded_at",
        "records",
        "stream_numbers",
        "users",
        "versions",
    )

    def __init__(self) -> None:
        self.event_ids: list[int] = []  # the UUID's int: an int hashes in C
        # The stream's number: an index into InMemoryEventStore._stream_ids.
        self.stream_numbers: list[int] = []
        self.versions: list[int] = []
        self.event_types: list[str] = []
        self.payloads: list[bytes] = []
        self.correlations: list[str | None] = []
        self.causations: list[str | None] = []
        self.users: list[Mapping[str, Any] | None] = []  # None when there is none
        self.recorded_at: list[datetime] = []
        self.records: list[RecordedEvent | None] = []  # each built on its first read
        # The metadata of the record built last, with the column values it was
        # built from (see record).
        self._last_metadata: tuple[object, object, object, EventMetadata] = (
            None,
            None,
            None,
            _NO_METADATA,
        )

    def __len__(self) -> int:
        return len(self.versions)

    def record(self, position: int, stream_ids: list[StreamId]) -> RecordedEvent:
        """The record at ``position``, built and kept if it was not read before;
        ``stream_ids`` is the store's list of stream ids by number."""
        at = position - 1
        built = self.records[at]
        if built is not None:
            return built
        correlation, causation = self.correlations[at], self.causations[at]
        user = self.users[at]
        last = self._last_metadata
        if correlation is last[0] and causation is last[1] and user is last[2]:
            # The events of one append hold the same objects: they share one
            # metadata again, as their records did when built at the append.
            metadata = last[3]
        else:
            metadata = (
                trusted_metadata(
                    correlation, causation, _NO_USER_METADATA if user is None else user
                )
                if correlation is not None or causation is not None or user is not None
                else _NO_METADATA
            )
            self._last_metadata = (correlation, causation, user, metadata)
        # The values were checked when written: built through the slots.
        record = trusted_recorded_event(
            trusted_uuid(self.event_ids[at]),
            stream_ids[self.stream_numbers[at]],
            self.versions[at],
            position,
            self.event_types[at],
            self.payloads[at],
            metadata,
            self.recorded_at[at],
        )
        self.records[at] = record
        return record
