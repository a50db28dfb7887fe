"""Each backend maps driver exceptions by one table; every row is checked here.

A driver exception raised inside the mapping must come out as the row's eventcore
error, chained (``__cause__``) to the original and carrying its message; for
PostgreSQL also whether the connection is discarded and whether a read may run
again. A last test per table proves that every row has an example, so a row
added without one fails. End-to-end cases against real databases live in
test_postgres_store.py and test_sqlite_store.py.
"""

# ruff: noqa: E501  (the example tables read best one row a line)

from __future__ import annotations

import asyncio
import sqlite3
import struct
from typing import Any

import asyncpg
import pytest

from eventcore.backends.postgres._errors import (
    ERROR_TABLE,
    keeps_connection,
    may_retry_read,
    rule_for,
    translated,
)
from eventcore.backends.sqlite._errors import (
    SQLITE_ERROR_TABLE,
    sqlite_mapped,
    sqlite_rule_for,
    sqlite_translated,
)
from eventcore.errors import (
    EventCoreError,
    StoreError,
    StoreUnavailable,
    ValidationError,
    VersionConflict,
)


def server(sqlstate: str, message: str, severity: str = "ERROR") -> asyncpg.PostgresError:
    """An error as asyncpg builds it from a server's ErrorResponse."""
    exc: asyncpg.PostgresError = asyncpg.PostgresError.new(
        {"S": severity, "V": severity, "C": sqlstate, "M": message}
    )
    return exc


LOST, KEPT = True, False
RETRIED, NOT_RETRIED = True, False

# (driver exception, eventcore error, connection discarded, read retried)
POSTGRES_EXAMPLES: list[tuple[BaseException, type[EventCoreError], bool, bool]] = [
    (server("57014", "canceling statement due to statement timeout"), StoreUnavailable, KEPT, NOT_RETRIED),
    (server("40001", "canceling statement due to conflict with recovery"), StoreUnavailable, LOST, RETRIED),
    (server("40001", "could not serialize access due to concurrent update"), StoreError, KEPT, NOT_RETRIED),
    (server("57P01", "terminating connection due to administrator command", "FATAL"), StoreUnavailable, LOST, RETRIED),
    (server("57P02", "terminating connection because of crash of another server process", "FATAL"), StoreUnavailable, LOST, RETRIED),
    (server("57P03", "the database system is starting up", "FATAL"), StoreUnavailable, LOST, RETRIED),
    (server("57P05", "terminating connection due to idle-session timeout", "FATAL"), StoreUnavailable, LOST, RETRIED),
    (server("25P03", "terminating connection due to idle-in-transaction timeout", "FATAL"), StoreUnavailable, LOST, RETRIED),
    (server("57P04", 'database "app" does not exist', "FATAL"), StoreUnavailable, LOST, NOT_RETRIED),
    (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"), StoreUnavailable, LOST, RETRIED),
    (server("08006", "could not receive data from client", "FATAL"), StoreUnavailable, LOST, RETRIED),
    (server("53300", "sorry, too many clients already", "FATAL"), StoreUnavailable, LOST, NOT_RETRIED),
    (server("28P01", 'password authentication failed for user "app"', "FATAL"), StoreUnavailable, LOST, NOT_RETRIED),
    (server("3D000", 'database "gone" does not exist', "FATAL"), StoreUnavailable, LOST, NOT_RETRIED),
    # asyncpg raises DataError itself for an argument it cannot encode ...
    (asyncpg.exceptions.DataError("invalid input for query argument $1: 'x' (expected int)"), ValidationError, LOST, NOT_RETRIED),
    (OverflowError("value out of int64 range"), ValidationError, LOST, NOT_RETRIED),
    (struct.error("'q' format requires -9223372036854775808 <= number"), ValidationError, LOST, NOT_RETRIED),
    # ... while the server's data errors, subclasses of it, are the database's answer.
    (server("22012", "division by zero"), StoreError, KEPT, NOT_RETRIED),
    (server("22021", 'invalid byte sequence for encoding "UTF8": 0x00'), StoreError, KEPT, NOT_RETRIED),
    (server("23505", 'duplicate key value violates unique constraint "events_event_id_key"'), StoreError, KEPT, NOT_RETRIED),
    (server("53100", "could not extend file: No space left on device"), StoreError, KEPT, NOT_RETRIED),
    (server("42P01", 'relation "events" does not exist'), StoreError, KEPT, NOT_RETRIED),
    (asyncpg.InterfaceError("cannot perform operation: connection is closed"), StoreUnavailable, LOST, RETRIED),
    (asyncpg.InterfaceError("cannot perform operation: another operation is in progress"), StoreError, LOST, NOT_RETRIED),
    (asyncpg.InterfaceError("the server expects 1 argument for this query, 2 were passed"), StoreError, LOST, NOT_RETRIED),
    (asyncpg.exceptions.TargetServerAttributeNotMatched("None of the hosts match the target attribute requirement <SessionAttribute.read_write: 'read-write'>"), StoreUnavailable, LOST, NOT_RETRIED),
    (asyncpg.exceptions.InternalClientError("cannot switch to state 12; another operation (2) is in progress"), StoreUnavailable, LOST, RETRIED),
    (TimeoutError(), StoreUnavailable, LOST, NOT_RETRIED),
    (ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"), StoreUnavailable, LOST, RETRIED),
    (ConnectionResetError(104, "Connection reset by peer"), StoreUnavailable, LOST, RETRIED),
    (OSError(113, "No route to host"), StoreUnavailable, LOST, RETRIED),
]  # fmt: skip


def _id(value: Any) -> str:
    if isinstance(value, BaseException):
        return f"{type(value).__name__}:{str(value)[:30]}"
    return ""


@pytest.mark.parametrize(("exc", "error", "discarded", "retried"), POSTGRES_EXAMPLES, ids=_id)
def test_a_postgres_driver_exception_maps_by_its_row(
    exc: BaseException, error: type[EventCoreError], discarded: bool, retried: bool
) -> None:
    with pytest.raises(EventCoreError) as caught, translated("read_all"):
        raise exc
    assert type(caught.value) is error
    assert caught.value.__cause__ is exc
    assert str(caught.value).startswith("read_all ")
    assert str(exc) in str(caught.value)
    assert keeps_connection(exc) is not discarded
    assert keeps_connection(caught.value) is not discarded
    if isinstance(caught.value, StoreError):
        assert may_retry_read(caught.value) is retried
    else:
        assert not retried


def test_every_row_of_the_postgres_table_has_an_example() -> None:
    assert {rule_for(exc) for exc, *_ in POSTGRES_EXAMPLES} == set(ERROR_TABLE)


def test_every_postgres_driver_class_has_a_row_without_conditions() -> None:
    # So that translated() maps every instance of every class it catches.
    unconditional = [rule.driver for rule in ERROR_TABLE if rule.when is None]
    for rule in ERROR_TABLE:
        assert any(issubclass(rule.driver, other) for other in unconditional)


def test_a_cancelled_task_or_an_unexpected_exception_discards_the_connection() -> None:
    assert not keeps_connection(asyncio.CancelledError())
    assert not keeps_connection(RuntimeError("a bug"))
    assert not keeps_connection(KeyboardInterrupt())


def test_an_error_of_ours_after_a_clean_server_answer_keeps_the_connection() -> None:
    conflict = VersionConflict("s", 1, 2)
    assert keeps_connection(conflict)
    duplicate = ValidationError("event id already stored")
    duplicate.__cause__ = server("23505", "duplicate key value")
    assert keeps_connection(duplicate)
    lost = StoreUnavailable("append failed")
    lost.__cause__ = server("57P01", "terminating connection", "FATAL")
    assert not keeps_connection(lost)


def test_an_exception_that_is_not_the_drivers_passes_through_unmapped() -> None:
    with pytest.raises(KeyError), translated("read_all"):
        raise KeyError("ours")


# -- SQLite ---------------------------------------------------------------------------


def sqlite_error(cls: type[sqlite3.Error], name: str, message: str) -> sqlite3.Error:
    """An exception as the sqlite3 module raises it, with its result code name."""
    exc = cls(message)
    exc.sqlite_errorname = name
    return exc


SQLITE_EXAMPLES: list[tuple[BaseException, type[EventCoreError]]] = [
    (sqlite_error(sqlite3.OperationalError, "SQLITE_BUSY", "database is locked"), StoreUnavailable),
    (sqlite_error(sqlite3.OperationalError, "SQLITE_BUSY_SNAPSHOT", "database is locked"), StoreUnavailable),
    (sqlite_error(sqlite3.OperationalError, "SQLITE_LOCKED", "database table is locked"), StoreUnavailable),
    (sqlite_error(sqlite3.OperationalError, "SQLITE_IOERR_WRITE", "disk I/O error"), StoreUnavailable),
    (sqlite_error(sqlite3.OperationalError, "SQLITE_CANTOPEN", "unable to open database file"), StoreUnavailable),
    (sqlite_error(sqlite3.DatabaseError, "SQLITE_NOTADB", "file is not a database"), StoreError),
    (sqlite_error(sqlite3.DatabaseError, "SQLITE_CORRUPT", "database disk image is malformed"), StoreError),
    (sqlite_error(sqlite3.OperationalError, "SQLITE_READONLY", "attempt to write a readonly database"), StoreError),
    (sqlite_error(sqlite3.OperationalError, "SQLITE_FULL", "database or disk is full"), StoreError),
    (sqlite_error(sqlite3.IntegrityError, "SQLITE_CONSTRAINT_TRIGGER", "events are append-only"), StoreError),
    (sqlite3.InterfaceError("Error binding parameter 1: type 'object' is not supported"), ValidationError),
    (OverflowError("Python int too large to convert to SQLite INTEGER"), ValidationError),
    (sqlite_error(sqlite3.DataError, "SQLITE_TOOBIG", "string or blob too big"), ValidationError),
    (sqlite_error(sqlite3.OperationalError, "SQLITE_ERROR", "no such table: events"), StoreError),
    (sqlite3.ProgrammingError("Cannot operate on a closed database."), StoreError),
]  # fmt: skip


@pytest.mark.parametrize(("exc", "error"), SQLITE_EXAMPLES, ids=_id)
def test_a_sqlite_driver_exception_maps_by_its_row(
    exc: BaseException, error: type[EventCoreError]
) -> None:
    with pytest.raises(EventCoreError) as caught, sqlite_translated("/data/events.sqlite", 2.5):
        raise exc
    assert type(caught.value) is error
    assert caught.value.__cause__ is exc
    assert "'/data/events.sqlite'" in str(caught.value)
    assert str(exc) in str(caught.value)


def test_a_sqlite_lock_timeout_names_the_busy_timeout() -> None:
    exc = SQLITE_EXAMPLES[0][0]
    assert "busy_timeout=2.5s" in str(sqlite_mapped(exc, "events.sqlite", 2.5))


def test_every_row_of_the_sqlite_table_has_an_example() -> None:
    assert {sqlite_rule_for(exc) for exc, _ in SQLITE_EXAMPLES} == set(SQLITE_ERROR_TABLE)
