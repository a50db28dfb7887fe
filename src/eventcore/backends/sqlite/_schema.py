"""The SQLite store's schema, its version, and how its connections are opened.

The file stays inspectable with the ``sqlite3`` command-line tool: payloads and
metadata are JSON text, times are ISO-8601 UTC text.
"""

from __future__ import annotations

import sqlite3
from typing import Final, Literal

from eventcore._glob import matches as glob_matches
from eventcore.errors import StoreUnavailable

# Kept in PRAGMA user_version; 0 means "no schema yet". Migration n (below) takes a
# file from version n - 1 to n.
SCHEMA_VERSION: Final = 5

Synchronous = Literal["FULL", "NORMAL"]

# ``position`` is the rowid: the global position. Writers assign it explicitly as
# max + 1 inside their write transaction (see _ops.append), so the log is gapless.
# The UNIQUE (stream_id, stream_version) index serves read_stream and the
# one-seek-per-stream version check; a separate ``streams`` table would cost an
# extra upsert per written stream and buy nothing, since the newest version of a
# stream is the last entry of that index. There is no event_type index: read_all
# walks the log in position order anyway, and every index slows every append.
_VERSION_1: Final = (
    """
    CREATE TABLE IF NOT EXISTS events (
        position       INTEGER PRIMARY KEY,
        event_id       TEXT    NOT NULL UNIQUE,
        stream_id      TEXT    NOT NULL,
        stream_version INTEGER NOT NULL,
        event_type     TEXT    NOT NULL,
        payload        TEXT    NOT NULL,
        metadata       TEXT    NOT NULL,
        recorded_at    TEXT    NOT NULL,
        UNIQUE (stream_id, stream_version)
    )
    """,
    """
    CREATE TRIGGER IF NOT EXISTS events_are_not_updated BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'eventcore: stored events are immutable'); END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS events_are_not_deleted BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'eventcore: stored events are immutable'); END
    """,
    """
    CREATE TABLE IF NOT EXISTS checkpoints (
        name     TEXT    PRIMARY KEY,
        position INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE IF NOT EXISTS leases (
        name       TEXT PRIMARY KEY,
        holder     TEXT NOT NULL,
        expires_at REAL NOT NULL  -- wall-clock Unix seconds: shared by processes
    ) WITHOUT ROWID
    """,
)

# Snapshots of folded command state; ``versions`` is a JSON list of
# [stream_id, version] pairs, the streams the state was folded from.
_VERSION_2: Final = (
    """
    CREATE TABLE IF NOT EXISTS snapshots (
        key      TEXT PRIMARY KEY,
        versions TEXT NOT NULL,
        state    BLOB NOT NULL,
        taken_at TEXT NOT NULL
    ) WITHOUT ROWID
    """,
)

# INSERT OR REPLACE (and REPLACE INTO) deletes a conflicting row without firing
# DELETE triggers (unless a connection turns recursive_triggers on), so a stored
# event could be rewritten in place. This refuses, before any conflict resolution,
# an insert that collides with a stored event on any of its unique keys; the store
# itself never inserts such a row (a reused event id is reported as one).
_VERSION_3: Final = (
    """
    CREATE TRIGGER IF NOT EXISTS events_are_not_replaced BEFORE INSERT ON events
    WHEN EXISTS (SELECT 1 FROM events WHERE position = NEW.position)
      OR EXISTS (SELECT 1 FROM events WHERE event_id = NEW.event_id)
      OR EXISTS (
          SELECT 1 FROM events
           WHERE stream_id = NEW.stream_id AND stream_version = NEW.stream_version)
    BEGIN
        SELECT RAISE(ABORT, 'eventcore: stored events are immutable (insert over one refused)');
    END
    """,
)

# Events a projection skipped, with the error; one letter per projection and
# position (a redelivered event overwrites its letter).
_VERSION_4: Final = (
    """
    CREATE TABLE IF NOT EXISTS dead_letters (
        projection TEXT    NOT NULL,
        position   INTEGER NOT NULL,
        event_id   TEXT    NOT NULL,
        stream_id  TEXT    NOT NULL,
        event_type TEXT    NOT NULL,
        error      TEXT    NOT NULL,
        failed_at  TEXT    NOT NULL,
        PRIMARY KEY (projection, position)
    ) WITHOUT ROWID
    """,
)

# Fencing tokens: ``fence`` grows by one each time a lease changes hands; a fenced
# write commits only while it is unchanged. Released leases keep their row (holder
# '' and expired) so that tokens never repeat.
_VERSION_5: Final = ("ALTER TABLE leases ADD COLUMN fence INTEGER NOT NULL DEFAULT 0",)

_MIGRATIONS: Final = (_VERSION_1, _VERSION_2, _VERSION_3, _VERSION_4, _VERSION_5)

FNMATCH_FUNCTION: Final = "eventcore_fnmatch"


def _fnmatch(stream_id: str, pattern: str) -> bool:
    return glob_matches(stream_id, pattern)


def _connect(path: str, busy_timeout: float, *, check_same_thread: bool) -> sqlite3.Connection:
    # isolation_level=None: the driver never opens transactions behind our back;
    # every transaction here is an explicit BEGIN ... COMMIT.
    return sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=check_same_thread
    )


def connect_writer(path: str, busy_timeout: float, synchronous: Synchronous) -> sqlite3.Connection:
    """Open the writer connection (used only on the thread that opens it), switch the
    file to WAL and create or check the schema."""
    conn = _connect(path, busy_timeout, check_same_thread=True)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreUnavailable(
                f"SQLite file {path!r} cannot use WAL journal mode (got {mode!r}); "
                "use a file on a local file system"
            )
        # FULL syncs the WAL on every commit: durable against power loss. NORMAL
        # (safe in WAL mode) syncs only at checkpoints: durable against an
        # application crash, but the last transactions may be lost on power loss.
        conn.execute(f"PRAGMA synchronous={synchronous}")
        _ensure_schema(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def connect_reader(path: str, busy_timeout: float) -> sqlite3.Connection:
    """Open a read-only connection for one reader thread. check_same_thread=False only
    because close() closes it from another thread once the reader pool has stopped."""
    conn = _connect(path, busy_timeout, check_same_thread=False)
    try:
        conn.execute("PRAGMA query_only=ON")
        conn.create_function(FNMATCH_FUNCTION, 2, _fnmatch, deterministic=True)
    except BaseException:
        conn.close()
        raise
    return conn


def _ensure_schema(conn: sqlite3.Connection, path: str) -> None:
    if _user_version(conn, path) == SCHEMA_VERSION:
        return  # the common case: no write lock taken on open
    # Several processes may open a new file at once: the IMMEDIATE transaction
    # makes exactly one of them create the schema; the others see it done.
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statements in _MIGRATIONS[_user_version(conn, path) :]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _user_version(conn: sqlite3.Connection, path: str) -> int:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreUnavailable(
            f"SQLite file {path!r} has schema version {version}, newer than the "
            f"{SCHEMA_VERSION} this eventcore understands; upgrade eventcore"
        )
    return version
