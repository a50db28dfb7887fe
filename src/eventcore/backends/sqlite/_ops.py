"""The blocking transaction bodies, one function per store operation.

They take a connection and run on the store's writer or reader threads, never on
the event loop; they know nothing of asyncio.

Why a reader tailing ``read_all(after=P)`` never misses an event, whatever the
number of writer threads and processes: SQLite admits one writer at a time per
file (``BEGIN IMMEDIATE`` takes the write lock before anything is read), and an
append reads ``max(position)`` and inserts ``max + 1 ...`` while holding that
lock, until ``COMMIT``. So a transaction can only number its events after every
earlier writer has committed or rolled back, and commit order equals position
order. A reader's snapshot (WAL: one per statement or read transaction) that
contains position p therefore contains every position below p. A rolled-back
append frees its numbers for the next writer, so the log has no gaps either.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Final, TypeVar

import msgspec

from eventcore.backends.sqlite._rows import (
    EVENTS_BY_ID_SQL,
    HEAD_SQL,
    INSERT_SQL,
    NO_LIMIT,
    POSITION_COLUMN,
    RECORDED_AT_COLUMN,
    STREAM_SQL,
    STREAM_VERSION_SQL,
    Row,
    decode_rows,
    encode_rows,
    log_query,
)
from eventcore.codec import json_encode
from eventcore.errors import (
    DuplicateEventId,
    EventCoreError,
    LeaseLost,
    ValidationError,
    VersionConflict,
)
from eventcore.store import AppendOutcome, DeadLetter, Fence, LogFilter
from eventcore.types import (
    AppendRequest,
    AppendResult,
    RecordedEvent,
    Snapshot,
    StreamId,
    trusted_stream_id,
)

T = TypeVar("T")


def _in_transaction(conn: sqlite3.Connection, begin: str, body: Callable[[], T]) -> T:
    conn.execute(begin)
    try:
        result = body()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _version(conn: sqlite3.Connection, stream: str) -> int:
    row = conn.execute(STREAM_VERSION_SQL, (stream,)).fetchone()
    return 0 if row is None else int(row[0])


def _apply(conn: sqlite3.Connection, request: AppendRequest, rows: list[Row]) -> tuple[int, ...]:
    """Inside the write transaction: check every expected version, insert the rows."""
    for stream, version in request.expected:
        actual = _version(conn, stream)
        if actual != version:
            raise VersionConflict(stream, version, actual)
    if not rows:
        return ()
    head = conn.execute(HEAD_SQL).fetchone()[0] or 0
    now = datetime.now(UTC).isoformat(timespec="microseconds")
    for position, row in enumerate(rows, head + 1):
        row[POSITION_COLUMN] = position
        row[RECORDED_AT_COLUMN] = now
    try:
        conn.executemany(INSERT_SQL, rows)
    except sqlite3.IntegrityError as exc:
        # The UNIQUE index or the trigger refusing replacements: ask which ids.
        duplicates = _duplicate_ids(conn, rows, head)
        if not duplicates:
            raise
        raise DuplicateEventId(uuid.UUID(str(i)) for i in duplicates) from exc
    return tuple(range(head + 1, head + 1 + len(rows)))


def append(conn: sqlite3.Connection, request: AppendRequest) -> AppendResult:
    """Check every expected version and insert the events, in one transaction."""
    # Rows are encoded before BEGIN, so the write lock is held only for the SQL.
    rows, versions = encode_rows(request)
    # A pure check (no events) needs only a consistent snapshot, not the write lock.
    begin = "BEGIN IMMEDIATE" if rows else "BEGIN"
    positions = _in_transaction(conn, begin, lambda: _apply(conn, request, rows))
    return AppendResult(versions, positions)


def append_many(conn: sqlite3.Connection, requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
    """Several appends in one transaction (one commit, one fsync), each inside its
    own savepoint: a request that conflicts or is refused is rolled back alone and
    its error returned in its place."""
    encoded: list[tuple[list[Row], dict[str, int]] | EventCoreError] = []
    for request in requests:
        try:
            encoded.append(encode_rows(request))
        except EventCoreError as exc:  # metadata that is not JSON, say
            encoded.append(exc)

    def body() -> list[AppendOutcome]:
        outcomes: list[AppendOutcome] = []
        for request, prepared in zip(requests, encoded, strict=True):
            if isinstance(prepared, EventCoreError):
                outcomes.append(prepared)
                continue
            rows, versions = prepared
            conn.execute("SAVEPOINT eventcore_append")
            try:
                positions = _apply(conn, request, rows)
            except (VersionConflict, ValidationError) as exc:
                conn.execute("ROLLBACK TO eventcore_append")
                outcomes.append(exc)
            else:
                outcomes.append(AppendResult(versions, positions))
            conn.execute("RELEASE eventcore_append")
        return outcomes

    return _in_transaction(conn, "BEGIN IMMEDIATE", body)


def _duplicate_ids(conn: sqlite3.Connection, rows: list[Row], head: int) -> list[object]:
    """The ids of ``rows`` stored before this append (at or below ``head``) or
    repeated among them, each once, in order."""
    seen: set[object] = set()
    duplicates: dict[object, None] = {}
    for row in rows:
        event_id = row[1]
        stored = conn.execute(
            "SELECT 1 FROM events WHERE event_id = ? AND position <= ?", (event_id, head)
        ).fetchone()
        if stored is not None or event_id in seen:
            duplicates[event_id] = None
        seen.add(event_id)
    return list(duplicates)


def read_stream(
    conn: sqlite3.Connection, stream: StreamId, start: int, limit: int | None
) -> list[RecordedEvent]:
    cursor = conn.execute(STREAM_SQL, (stream, start, NO_LIMIT if limit is None else limit))
    return decode_rows(cursor)


def read_streams(
    conn: sqlite3.Connection, streams: Sequence[tuple[StreamId, int]], limit: int | None
) -> dict[str, list[RecordedEvent]]:
    """Several streams (each from its start version) in one read transaction: a
    mutually consistent snapshot."""
    page = NO_LIMIT if limit is None else limit

    def body() -> dict[str, list[RecordedEvent]]:
        return {s: decode_rows(conn.execute(STREAM_SQL, (s, start, page))) for s, start in streams}

    if len(streams) == 1:
        return body()
    return _in_transaction(conn, "BEGIN", body)


def stream_version(conn: sqlite3.Connection, stream: StreamId) -> int:
    return _version(conn, stream)


def head_position(conn: sqlite3.Connection) -> int:
    return int(conn.execute(HEAD_SQL).fetchone()[0] or 0)


def head_if_changed(conn: sqlite3.Connection, seen: int | None) -> tuple[int, int | None]:
    """``(data_version, head)``: the head is read only when the data version
    differs from ``seen``. SQLite changes a connection's ``data_version`` whenever
    another connection (in any process) commits; reading it touches no table, so a
    watcher can ask often for almost nothing."""
    version = int(conn.execute("PRAGMA data_version").fetchone()[0])
    return version, (head_position(conn) if version != seen else None)


def read_log(
    conn: sqlite3.Connection, after: int, limit: int | None, log_filter: LogFilter
) -> list[RecordedEvent]:
    sql, params = log_query(after, limit, log_filter)
    return decode_rows(conn.execute(sql, params))


# -- lookup by event id --------------------------------------------------------------


def events_by_id(conn: sqlite3.Connection, event_ids: Sequence[str]) -> list[RecordedEvent]:
    return decode_rows(conn.execute(EVENTS_BY_ID_SQL, (json_encode(event_ids).decode(),)))


# -- checkpoints --------------------------------------------------------------------


def save_checkpoint(conn: sqlite3.Connection, name: str, position: int) -> None:
    conn.execute(
        "INSERT INTO checkpoints (name, position) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
        (name, position),
    )


def save_fenced_checkpoint(
    conn: sqlite3.Connection, name: str, position: int, fence: Fence
) -> None:
    def body() -> None:
        check_fence(conn, fence)
        save_checkpoint(conn, name, position)

    _in_transaction(conn, "BEGIN IMMEDIATE", body)


def check_fence(conn: sqlite3.Connection, fence: Fence) -> None:
    """Inside a write transaction: the write lock keeps the lease from changing
    hands until COMMIT, so a fence that holds here holds at the commit."""
    row = conn.execute("SELECT fence FROM leases WHERE name = ?", (fence.lease,)).fetchone()
    token = None if row is None else int(row[0])
    if token != fence.token:
        raise LeaseLost(fence.lease, fence.token, token)


def load_checkpoint(conn: sqlite3.Connection, name: str) -> int | None:
    row = conn.execute("SELECT position FROM checkpoints WHERE name = ?", (name,)).fetchone()
    return None if row is None else int(row[0])


def delete_checkpoint(conn: sqlite3.Connection, name: str) -> None:
    conn.execute("DELETE FROM checkpoints WHERE name = ?", (name,))


def checkpoint_names(conn: sqlite3.Connection) -> list[str]:
    return [str(row[0]) for row in conn.execute("SELECT name FROM checkpoints ORDER BY name")]


# -- leases: wall-clock expiry, because the holders may be different processes ------


def acquire_lease(conn: sqlite3.Connection, name: str, holder: str, ttl: float) -> int | None:
    """Take the lease if it is free, expired, or already ours (which renews it);
    return its fence token, or None if another holder has it. One statement, so one
    atomic transaction; fetchall() steps it to completion, which commits it."""
    now = time.time()
    rows = conn.execute(
        "INSERT INTO leases (name, holder, expires_at, fence) VALUES (?, ?, ?, 1)"
        " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
        " expires_at = excluded.expires_at,"
        " fence = leases.fence + (leases.holder <> excluded.holder)"
        " WHERE leases.holder = excluded.holder OR leases.expires_at <= ?"
        " RETURNING fence",
        (name, holder, now + ttl, now),
    ).fetchall()
    return int(rows[0][0]) if rows else None


def release_lease(conn: sqlite3.Connection, name: str, holder: str) -> None:
    # Kept with no holder, expired: its fence token must outlive it.
    conn.execute(
        "UPDATE leases SET holder = '', expires_at = 0 WHERE name = ? AND holder = ?",
        (name, holder),
    )


def lease_holder(conn: sqlite3.Connection, name: str) -> str | None:
    row = conn.execute(
        "SELECT holder FROM leases WHERE name = ? AND expires_at > ?", (name, time.time())
    ).fetchone()
    return None if row is None else str(row[0])


_versions_decoder: Final = msgspec.json.Decoder(list[tuple[str, int]])
_SNAPSHOT_SQL: Final = "SELECT key, versions, state FROM snapshots WHERE key = ?"


def _snapshot_row(row: tuple[str, str, bytes]) -> Snapshot:
    key, versions, state = row
    pairs = tuple((trusted_stream_id(s), v) for s, v in _versions_decoder.decode(versions))
    return Snapshot(key, pairs, bytes(state))


def save_snapshot(conn: sqlite3.Connection, snapshot: Snapshot) -> bool:
    """Store the snapshot unless a newer one is there, read and written under the
    write lock so two processes cannot both think theirs is the newest."""

    def body() -> bool:
        row = conn.execute(_SNAPSHOT_SQL, (snapshot.key,)).fetchone()
        if row is not None and not snapshot.supersedes(_snapshot_row(row)):
            return False
        conn.execute(
            "INSERT INTO snapshots (key, versions, state, taken_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET versions = excluded.versions, "
            "state = excluded.state, taken_at = excluded.taken_at",
            (
                snapshot.key,
                json_encode(snapshot.versions).decode(),
                snapshot.state,
                datetime.now(UTC).isoformat(timespec="microseconds"),
            ),
        )
        return True

    return _in_transaction(conn, "BEGIN IMMEDIATE", body)


def load_snapshot(conn: sqlite3.Connection, key: str) -> Snapshot | None:
    row = conn.execute(
        "SELECT key, versions, state FROM snapshots WHERE key = ?", (key,)
    ).fetchone()
    return None if row is None else _snapshot_row(row)


# -- dead letters ---------------------------------------------------------------------


def record_dead_letter(conn: sqlite3.Connection, letter: DeadLetter) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO dead_letters (projection, position, event_id, stream_id,"
        " event_type, error, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            letter.projection,
            letter.position,
            str(letter.event_id),
            letter.stream_id,
            letter.event_type,
            letter.error,
            letter.failed_at.astimezone(UTC).isoformat(),
        ),
    )


def dead_letters(conn: sqlite3.Connection, projection: str) -> list[DeadLetter]:
    rows = conn.execute(
        "SELECT position, event_id, stream_id, event_type, error, failed_at FROM dead_letters"
        " WHERE projection = ? ORDER BY position",
        (projection,),
    )
    return [
        DeadLetter(
            projection,
            int(position),
            uuid.UUID(event_id),
            stream_id,
            event_type,
            error,
            datetime.fromisoformat(failed_at),
        )
        for position, event_id, stream_id, event_type, error, failed_at in rows
    ]


def clear_dead_letters(conn: sqlite3.Connection, projection: str) -> None:
    conn.execute("DELETE FROM dead_letters WHERE projection = ?", (projection,))
