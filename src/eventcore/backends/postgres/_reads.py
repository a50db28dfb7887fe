"""The read half of the PostgreSQL store: its read methods, and rows into records.

:class:`PostgresReads` holds the reads of :class:`PostgresEventStore`, which
supplies the connection handling (``_rows``: one statement on a pooled
connection, run once more if that connection turned out to be lost).

The read before a command's append is on every command's path that its state
cache cannot serve, so it is kept lean (figures in docs/benchmarks.md, "Hot
path"): a read of one stream, the usual case, is a plain keyset query on the
``(stream_id, stream_version)`` index, without the ``unnest``/``LATERAL`` of the
many-stream query and its slot numbers; rows become records with no checks, as
they were checked on the way in.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import asyncpg

from eventcore._stream_list import check_list_streams
from eventcore.backends._common import (
    check_log_read,
    check_stream_read,
    check_stream_tail,
    check_streams_read,
)
from eventcore.backends.postgres._group_read import GroupReader
from eventcore.backends.postgres._replica import ReadPools
from eventcore.backends.postgres._sql import Statements
from eventcore.codec import EMPTY_METADATA_JSON, decode_metadata
from eventcore.store import LogFilter, PagedReads, StreamSummary, check_event_ids
from eventcore.types import (
    EMPTY_METADATA,
    RecordedEvent,
    StreamId,
    trusted_recorded_event,
    trusted_stream_id,
)


class PostgresReads(PagedReads):
    """The store's reads. The store provides ``_sql``, ``_group_reader``, ``_reads``
    (which pool each kind of read uses), ``_check_open`` and ``_rows`` (a mixin,
    so that a read costs no extra call)."""

    __slots__ = ()

    _sql: Statements
    _group_reader: GroupReader | None
    _reads: ReadPools

    def _check_open(self) -> None:
        raise NotImplementedError  # pragma: no cover - the store's

    async def _rows(
        self, operation: str, sql: str, *args: object, pool: asyncpg.Pool | None = None
    ) -> list[Any]:
        """The rows of ``sql`` run with ``args`` (on the primary unless ``pool``
        says), driver errors translated."""
        raise NotImplementedError  # pragma: no cover - the store's

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        stream, start, limit = check_stream_read(stream_id, from_version, limit)
        rows = await self._rows(
            "read_stream", self._sql.read_stream, stream, start, limit, pool=self._reads.command
        )
        return decode_rows(rows, stream)

    async def read_stream_tail(self, stream_id: str, *, count: int = 1) -> list[RecordedEvent]:
        stream, count = check_stream_tail(stream_id, count)
        rows = await self._rows(
            "read_stream_tail", self._sql.read_stream_tail, stream, count, pool=self._reads.command
        )
        events = decode_rows(rows, stream)
        events.reverse()
        return events

    async def read_streams(
        self,
        stream_ids: Iterable[str],
        *,
        from_versions: Mapping[str, int] | None = None,
        limit: int | None = None,
    ) -> dict[str, list[RecordedEvent]]:
        starts, limit = check_streams_read(stream_ids, from_versions, limit)
        streams = [s for s, _ in starts]
        firsts = [v for _, v in starts]
        if self._group_reader is not None:
            return await self._group_reader.read(streams, firsts, limit)
        return await self._read_streams_now(streams, firsts, limit)

    async def _read_streams_now(
        self, streams: list[StreamId], firsts: list[int], limit: int | None
    ) -> dict[str, list[RecordedEvent]]:
        """One query for these streams: the single-stream one for one stream."""
        if len(streams) == 1:
            stream = streams[0]
            rows = await self._rows(
                "read_streams",
                self._sql.read_stream,
                stream,
                firsts[0],
                limit,
                pool=self._reads.command,
            )
            return {stream: decode_rows(rows, stream)}
        slots = await self._fetch_slots(streams, firsts, limit)
        return {stream: slots.get(n, []) for n, stream in enumerate(streams, 1)}

    async def _fetch_slots(
        self, streams: Sequence[str], firsts: list[int], limit: int | None
    ) -> dict[int, list[RecordedEvent]]:
        rows = await self._rows(
            "read_streams", self._sql.read_streams, streams, firsts, limit, pool=self._reads.command
        )
        return decode_slots(rows)

    async def stream_version(self, stream_id: str) -> int:
        stream = StreamId(stream_id)
        rows = await self._rows(
            "stream_version", self._sql.stream_version, stream, pool=self._reads.command
        )
        return int(rows[0][0] or 0) if rows else 0

    async def head_position(self) -> int:
        rows = await self._rows("head_position", self._sql.head_position, pool=self._reads.log)
        return int(rows[0][0])

    async def list_streams(
        self, *, prefix: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[StreamSummary]:
        self._check_open()
        start, cursor, limit = check_list_streams(prefix, after, limit)
        rows = await self._rows("list_streams", self._sql.list_streams, start, cursor, limit)
        return [StreamSummary(row[0], int(row[1])) for row in rows]

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        stream_prefix: str | None = None,
        stream_pattern: str | None = None,
        event_types: Collection[str] | None = None,
        stop: int | None = None,
    ) -> list[RecordedEvent]:
        after, limit, stop = check_log_read(after, limit, stop)
        log_filter = LogFilter.create(stream_prefix, stream_pattern, event_types)
        return await self._read_log(after, limit, log_filter, stop)

    async def _read_log(
        self, after: int, limit: int | None, log_filter: LogFilter, stop: int | None
    ) -> list[RecordedEvent]:
        self._check_open()
        query = self._sql.read_log(after, limit, log_filter, stop)
        if query is None or (stop is not None and stop <= after):
            return []
        sql, params = query
        return decode_rows(await self._rows("read_all", sql, *params, pool=self._reads.log))

    async def events_by_id(self, event_ids: Iterable[uuid.UUID]) -> list[RecordedEvent]:
        self._check_open()
        ids = check_event_ids(event_ids)
        if not ids:
            return []
        return decode_rows(await self._rows("events_by_id", self._sql.events_by_id, ids))


def decode_slots(rows: Iterable[Any]) -> dict[int, list[RecordedEvent]]:
    """Rows of the read_streams query (``_COLUMNS`` plus the slot number) into
    records per slot."""
    slots: dict[int, list[RecordedEvent]] = {}
    for row in rows:
        position, event_id, stream_id, version, event_type, payload, meta, recorded, n = row
        metadata = EMPTY_METADATA if meta == EMPTY_METADATA_JSON else decode_metadata(meta)
        record = trusted_recorded_event(
            event_id,
            trusted_stream_id(stream_id),
            version,
            position,
            event_type,
            payload,
            metadata,
            recorded,
        )
        slots.setdefault(n, []).append(record)
    return slots


def decode_rows(rows: list[Any], stream: StreamId | None = None) -> list[RecordedEvent]:
    """Rows of ``_COLUMNS`` into records; ``stream``: the one stream they all
    belong to, if the query says so (its id is then not wrapped per row)."""
    # Equal ids are wrapped once: the first row's differs from "" (ids are not empty).
    last_stream: str = "" if stream is None else stream
    current = trusted_stream_id("-") if stream is None else stream
    events: list[RecordedEvent] = []
    append = events.append
    for position, event_id, stream_id, version, event_type, payload, meta, recorded in rows:
        if stream_id != last_stream:
            current = trusted_stream_id(stream_id)
            last_stream = stream_id
        metadata = EMPTY_METADATA if meta == EMPTY_METADATA_JSON else decode_metadata(meta)
        append(  # trusted: as stored, checked on the way in (once per row read)
            trusted_recorded_event(
                event_id, current, version, position, event_type, payload, metadata, recorded
            )
        )
    return events
