"""Rows in and out of the ``events`` table, and the SQL of log queries.

Decoding is the hot path of every read, so it works on plain tuples, with one
module-level msgspec decoder and small caches for values that repeat from row to
row (an append's events share their time; a stream read shares its stream id).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

import msgspec

from eventcore._glob import literal_prefix
from eventcore.backends.sqlite._schema import FNMATCH_FUNCTION
from eventcore.codec import EMPTY_METADATA_JSON, decode_metadata, encode_metadata
from eventcore.errors import DeserializationError
from eventcore.store import LogFilter
from eventcore.types import (
    EMPTY_METADATA,
    AppendRequest,
    RecordedEvent,
    trusted_recorded_event,
    trusted_stream_id,
)

# Positions 0 and 7 (position, recorded_at) are filled in inside the write
# transaction; everything else is prepared before it, off the critical section.
INSERT_SQL: Final = (
    "INSERT INTO events (position, event_id, stream_id, stream_version, event_type,"
    " payload, metadata, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
POSITION_COLUMN: Final = 0
RECORDED_AT_COLUMN: Final = 7

# CAST(payload AS BLOB) hands back the stored UTF-8 bytes as they are, so a JSON
# payload stored as TEXT comes back as ``bytes`` without a Python-side encode.
_SELECT: Final = (
    "SELECT position, event_id, stream_id, stream_version, event_type,"
    " CAST(payload AS BLOB), metadata, recorded_at FROM events"
)
STREAM_SQL: Final = (
    f"{_SELECT} WHERE stream_id = ? AND stream_version >= ? ORDER BY stream_version LIMIT ?"
)
# The same index walked backwards from the stream's end; the caller reverses the rows.
STREAM_TAIL_SQL: Final = f"{_SELECT} WHERE stream_id = ? ORDER BY stream_version DESC LIMIT ?"
STREAM_VERSION_SQL: Final = (
    "SELECT stream_version FROM events WHERE stream_id = ? ORDER BY stream_version DESC LIMIT 1"
)
HEAD_SQL: Final = "SELECT max(position) FROM events"
NO_LIMIT: Final = -1  # LIMIT -1 means "no limit" in SQLite

Row = list[object]


_EMPTY_METADATA_JSON: Final = EMPTY_METADATA_JSON.decode()


def _payload_value(payload: bytes) -> str | bytes:
    # JSON payloads are stored as TEXT so the file can be read with the sqlite3
    # CLI; bytes that are not UTF-8 are stored as a BLOB and round-trip exactly.
    try:
        return payload.decode()
    except UnicodeDecodeError:
        return bytes(payload)


def encode_rows(request: AppendRequest) -> tuple[list[Row], dict[str, int]]:
    """The rows to insert, and every participating stream's version after the append.

    Each event's stream version is known before the transaction: if the append
    succeeds, each stream was at its expected version.
    """
    versions: dict[str, int] = dict(request.expected)
    rows: list[Row] = []
    for new in request.events:
        version = versions[new.stream_id] + 1
        versions[new.stream_id] = version
        rows.append(
            [
                0,
                str(new.event_id),
                new.stream_id,
                version,
                new.event_type,
                _payload_value(new.payload),
                encode_metadata(new.metadata).decode(),
                "",
            ]
        )
    return rows, versions


def decode_rows(rows: Iterable[tuple[Any, ...]]) -> list[RecordedEvent]:
    events: list[RecordedEvent] = []
    append = events.append
    last_stream = last_time = ""
    stream = trusted_stream_id("-")
    recorded_at = datetime.min
    row: tuple[Any, ...] = ()
    try:
        for row in rows:
            position, event_id, stream_id, version, event_type, payload, meta, time = row
            if stream_id != last_stream:
                stream = trusted_stream_id(stream_id)
                last_stream = stream_id
            if time != last_time:
                recorded_at = datetime.fromisoformat(time)
                last_time = time
            metadata = EMPTY_METADATA if meta == _EMPTY_METADATA_JSON else decode_metadata(meta)
            append(  # trusted: as stored, checked on the way in (once per row read)
                trusted_recorded_event(
                    uuid.UUID(event_id),
                    stream,
                    version,
                    position,
                    event_type,
                    payload,
                    metadata,
                    recorded_at,
                )
            )
    except (ValueError, TypeError, msgspec.DecodeError) as exc:
        # Only a row written around this library (events are never updated) gets here.
        raise DeserializationError(
            str(row[2]), row[3], str(row[4]), f"the row at position {row[0]} is malformed: {exc}"
        ) from exc
    return events


def log_query(
    after: int, limit: int | None, log_filter: LogFilter, stop: int | None = None
) -> tuple[str, list[object]]:
    """SQL and parameters for the log after ``after`` (up to ``stop``, inclusive),
    filters applied before LIMIT.

    The query always walks the log by position (the rowid): the filters are plain
    expressions, never index lookups, so a tailing reader's cost is the rows it
    scans, not the size of the matching streams. ``stop`` ends that range scan.
    """
    conditions = ["position > ?"]
    params: list[object] = [after]
    if stop is not None:
        conditions.append("position <= ?")
        params.append(stop)
    # substr(...) = ? rather than LIKE: LIKE is case-insensitive for ASCII and
    # treats % and _ as wildcards; this is an exact, case-sensitive prefix test.
    prefixes = [log_filter.stream_prefix or ""]
    pattern = log_filter.stream_pattern
    if pattern is not None:
        prefixes.append(literal_prefix(pattern))
    for prefix in filter(None, prefixes):
        conditions.append("substr(stream_id, 1, ?) = ?")
        params += (len(prefix), prefix)
    if pattern is not None:
        # GLOB agrees exactly with fnmatchcase on '*' and '?', and is case-sensitive,
        # but its sets differ ('[^a]' vs '[!a]'), so sets go to eventcore's
        # own matcher (eventcore._glob, the reference semantics).
        # The unary '+' keeps the planner from switching to the stream_id index.
        if "[" in pattern:
            conditions.append(f"{FNMATCH_FUNCTION}(stream_id, ?)")
        else:
            conditions.append("+stream_id GLOB ?")
        params.append(pattern)
    if log_filter.event_types:
        types = sorted(log_filter.event_types)
        conditions.append(f"event_type IN ({', '.join('?' * len(types))})")
        params += types
    params.append(NO_LIMIT if limit is None else limit)
    return f"{_SELECT} WHERE {' AND '.join(conditions)} ORDER BY position LIMIT ?", params


# The ids travel as one JSON array, so the statement text never varies with their
# number; each is found through the UNIQUE index on event_id.
EVENTS_BY_ID_SQL: Final = (
    f"{_SELECT} WHERE event_id IN (SELECT value FROM json_each(?)) ORDER BY position"
)
