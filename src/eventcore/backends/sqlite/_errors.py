"""Mapping sqlite3's exceptions into eventcore's error tree: one table.

Each row names an exception class, optionally narrowed to SQLite's extended
result codes (``sqlite_errorname``, matched by prefix so ``SQLITE_BUSY`` covers
``SQLITE_BUSY_SNAPSHOT``), and the eventcore error it becomes. The first match
wins. The rules, as for PostgreSQL: waiting out a lock or not reaching the file
is :class:`StoreUnavailable`; anything else SQLite refused is :class:`StoreError`
with SQLite's message; a value the driver cannot bind is a
:class:`ValidationError`. There is no "discard the connection" column: a
connection is a handle on a local file, and SQLite rolls back a failed
statement itself, so the connection stays fit for the next one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from eventcore.errors import EventCoreError, StoreError, StoreUnavailable, ValidationError


@dataclass(frozen=True, slots=True)
class SQLiteErrorRule:
    driver: type[BaseException]
    error: type[EventCoreError]
    # What happened; may name {busy_timeout}.
    what: str
    # SQLite result code names this row is limited to (prefixes); () for all.
    names: tuple[str, ...] = ()

    def matches(self, exc: BaseException) -> bool:
        if not isinstance(exc, self.driver):
            return False
        name = str(getattr(exc, "sqlite_errorname", ""))
        return not self.names or name.startswith(self.names)


_LOCKED = (
    "stayed locked by another connection for longer than busy_timeout={busy_timeout}s; "
    "retry later or raise busy_timeout"
)
_UNREACHABLE = "could not be read or written; check the file, its directory and the disk"
_ARGUMENT = "could not store a value; check it"

SQLITE_ERROR_TABLE: tuple[SQLiteErrorRule, ...] = (
    SQLiteErrorRule(sqlite3.Error, StoreUnavailable, _LOCKED, ("SQLITE_BUSY", "SQLITE_LOCKED")),
    SQLiteErrorRule(sqlite3.Error, StoreUnavailable, _UNREACHABLE, ("SQLITE_IOERR",)),
    SQLiteErrorRule(sqlite3.Error, StoreUnavailable, _UNREACHABLE, ("SQLITE_CANTOPEN",)),
    SQLiteErrorRule(sqlite3.Error, StoreError, "is not a database", ("SQLITE_NOTADB",)),
    SQLiteErrorRule(sqlite3.Error, StoreError, "is corrupt", ("SQLITE_CORRUPT",)),
    SQLiteErrorRule(sqlite3.Error, StoreError, "is read-only here", ("SQLITE_READONLY",)),
    SQLiteErrorRule(sqlite3.Error, StoreError, "is full (or its disk is)", ("SQLITE_FULL",)),
    # A constraint refused a write (the stored log is append-only, say); the
    # operations turn the cases they expect (a duplicate event id) into their
    # own errors first.
    SQLiteErrorRule(sqlite3.IntegrityError, StoreError, "refused a write"),
    # Values the driver cannot bind: a type it does not know, an int past 64 bits,
    # a string or blob past SQLite's limit.
    SQLiteErrorRule(sqlite3.InterfaceError, ValidationError, _ARGUMENT),
    SQLiteErrorRule(OverflowError, ValidationError, _ARGUMENT),
    SQLiteErrorRule(sqlite3.DataError, ValidationError, _ARGUMENT),
    SQLiteErrorRule(sqlite3.Error, StoreError, "failed"),
)

# Every exception the sqlite3 module may raise to us.
SQLITE_DRIVER_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, OverflowError)


def sqlite_rule_for(exc: BaseException) -> SQLiteErrorRule | None:
    """The table's row for a driver exception; None for anything else."""
    return next((rule for rule in SQLITE_ERROR_TABLE if rule.matches(exc)), None)


def sqlite_mapped(exc: BaseException, path: str, busy_timeout: float) -> EventCoreError:
    """The eventcore error for a driver exception (the caller chains it with
    ``from``); anything the table does not know becomes a StoreError."""
    rule = sqlite_rule_for(exc) or SQLITE_ERROR_TABLE[-1]
    what = rule.what.format(busy_timeout=busy_timeout)
    return rule.error(f"SQLite file {path!r} {what} ({type(exc).__name__}: {exc})")


@contextmanager
def sqlite_translated(path: str, busy_timeout: float) -> Iterator[None]:
    """Run a block, turning driver exceptions into eventcore errors by the table."""
    try:
        yield
    except SQLITE_DRIVER_ERRORS as exc:
        raise sqlite_mapped(exc, path, busy_timeout) from exc
