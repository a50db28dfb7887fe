"""Mapping asyncpg's exceptions into eventcore's error tree: one table.

Each row names a driver exception class (optionally narrowed by a test on the
instance), the eventcore error it becomes, whether the connection that raised it
must be discarded, and whether a read may run once more on another connection.
The first matching row wins, so more specific rows come first.

The rules behind the rows:

- A lost connection or a timeout is :class:`StoreUnavailable`; anything else the
  database refused is :class:`StoreError` carrying the database's message.
- A client-side argument error (a value asyncpg could not encode) is a
  :class:`ValidationError`: it is never reported as a lost connection and never
  retried, since it would fail the same way again.
- Only a clean server error (the server answered, the protocol is back at ready
  for query) leaves a connection fit for reuse. After anything else raised while
  holding a connection (a lost connection, a client-side failure, a cancelled
  task) its state is unknown: it is terminated, never released for reuse.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import asyncpg
from asyncpg import exceptions as pg

from eventcore.errors import EventCoreError, StoreError, StoreUnavailable, ValidationError


def _from_server(exc: BaseException) -> bool:
    """A server's error carries the severity it was sent with; asyncpg builds the
    same classes client-side (an argument it cannot encode) without one."""
    return getattr(exc, "severity", None) is not None


def _from_client(exc: BaseException) -> bool:
    return not _from_server(exc)


def _conflicts_with_recovery(exc: BaseException) -> bool:
    # A hot standby cancels a query (or ends a session) whose snapshot, locks or
    # pinned pages replay needs; the same SQLSTATE on a primary is a real
    # serialization failure, which only the message tells apart.
    return "conflict with recovery" in str(exc)


def _says_connection_closed(exc: BaseException) -> bool:
    # asyncpg has one InterfaceError for misuse and for using a closed connection;
    # only its message tells them apart.
    text = str(exc)
    return "connection is closed" in text or "connection was closed" in text


@dataclass(frozen=True, slots=True)
class ErrorRule:
    driver: type[BaseException]
    error: type[EventCoreError]
    # The connection is suspect: terminate it rather than give it back.
    discard: bool
    # A read may run once more on a fresh connection.
    retry_read: bool
    # What happened, for the message.
    what: str
    # Narrows the row to some instances of ``driver``.
    when: Callable[[BaseException], bool] | None = None

    def matches(self, exc: BaseException) -> bool:
        return isinstance(exc, self.driver) and (self.when is None or self.when(exc))


_LOST = "failed: the connection to PostgreSQL was lost or refused"
_REFUSED_ARGUMENT = "failed: the driver could not encode an argument; check the value"

_MISUSE = "failed: the driver refused the call"

ERROR_TABLE: tuple[ErrorRule, ...] = (
    # -- the server, cleanly: the connection stays usable ---------------------------
    ErrorRule(
        pg.QueryCanceledError,
        StoreUnavailable,
        discard=False,
        retry_read=False,
        what="was cancelled by the server (statement timeout?)",
    ),
    # -- a standby cancelled a read that replay had to overtake: ask again ----------
    ErrorRule(
        pg.SerializationError,
        StoreUnavailable,
        discard=True,
        retry_read=True,
        what="was cancelled by the standby (a conflict with recovery; "
        "hot_standby_feedback=on on the standby avoids most)",
        when=_conflicts_with_recovery,
    ),
    # -- the server ended the session, or the connection is gone --------------------
    ErrorRule(pg.AdminShutdownError, StoreUnavailable, True, True, _LOST),
    ErrorRule(pg.CrashShutdownError, StoreUnavailable, True, True, _LOST),
    ErrorRule(pg.CannotConnectNowError, StoreUnavailable, True, True, _LOST),
    ErrorRule(pg.IdleSessionTimeoutError, StoreUnavailable, True, True, _LOST),
    ErrorRule(pg.IdleInTransactionSessionTimeoutError, StoreUnavailable, True, True, _LOST),
    ErrorRule(pg.DatabaseDroppedError, StoreUnavailable, True, False, _LOST),
    ErrorRule(pg.PostgresConnectionError, StoreUnavailable, True, True, _LOST),
    # -- connecting again was refused: retrying at once would be refused again ------
    ErrorRule(pg.TooManyConnectionsError, StoreUnavailable, True, False, _LOST),
    ErrorRule(pg.InvalidAuthorizationSpecificationError, StoreUnavailable, True, False, _LOST),
    ErrorRule(pg.InvalidCatalogNameError, StoreUnavailable, True, False, _LOST),
    # -- an argument asyncpg could not encode (nothing was sent) --------------------
    ErrorRule(pg.DataError, ValidationError, True, False, _REFUSED_ARGUMENT, when=_from_client),
    ErrorRule(OverflowError, ValidationError, True, False, _REFUSED_ARGUMENT),
    ErrorRule(struct.error, ValidationError, True, False, _REFUSED_ARGUMENT),
    # -- any other server error: its message says what was wrong --------------------
    ErrorRule(asyncpg.PostgresError, StoreError, False, False, "failed in PostgreSQL"),
    # -- the client side of the connection ------------------------------------------
    ErrorRule(
        asyncpg.InterfaceError, StoreUnavailable, True, True, _LOST, when=_says_connection_closed
    ),
    ErrorRule(asyncpg.InterfaceError, StoreError, True, False, _MISUSE),
    # A multi-host DSN (target_session_attrs=read-write) reached hosts, none of
    # them writable: a failover is under way, or every node is a standby. Retrying
    # at once would meet the same hosts; the caller's retry, a moment later, may not.
    ErrorRule(
        pg.TargetServerAttributeNotMatched,
        StoreUnavailable,
        True,
        False,
        "failed: no host of the DSN accepts writes now (a failover under way?); retry "
        "shortly, or check target_session_attrs",
    ),
    # The protocol is in a state it did not expect ("cannot switch to state ..."):
    # this connection is broken, a fresh one is not.
    ErrorRule(pg.InternalClientError, StoreUnavailable, True, True, _LOST),
    # A client-side timeout leaves a query behind that the server may still run.
    ErrorRule(TimeoutError, StoreUnavailable, True, False, "timed out"),
    ErrorRule(OSError, StoreUnavailable, True, True, _LOST),
)

# Every exception the driver, or the network under it, may raise to us.
DRIVER_ERRORS: tuple[type[BaseException], ...] = tuple(
    dict.fromkeys(rule.driver for rule in ERROR_TABLE)
)
# What closing a pool or a connection may meet (suppressed there).
CONNECTION_ERRORS = DRIVER_ERRORS


def rule_for(exc: BaseException | None) -> ErrorRule | None:
    """The table's row for a driver exception; None for anything else."""
    if exc is None:
        return None
    return next((rule for rule in ERROR_TABLE if rule.matches(exc)), None)


def keeps_connection(exc: BaseException) -> bool:
    """Whether the connection that raised ``exc`` may serve another request.

    An eventcore error raised by our own code (a version conflict, a duplicate
    id) follows a clean answer of the server, unless it was made from a driver
    exception whose row says otherwise. Anything else (a cancelled task, an
    unexpected exception) leaves the connection in an unknown state.
    """
    if isinstance(exc, EventCoreError):
        rule = rule_for(exc.__cause__)
        return rule is None or not rule.discard
    rule = rule_for(exc)
    return rule is not None and not rule.discard


def may_retry_read(exc: StoreError) -> bool:
    """Whether a read that failed with ``exc`` may run once more."""
    rule = rule_for(exc.__cause__)
    return rule is not None and rule.retry_read


def has_free_connection(pool: asyncpg.Pool) -> bool:
    """Whether ``pool`` would hand out a connection at once, without waiting.

    asyncpg keeps its free connections in a queue it does not expose (its
    ``get_idle_size()`` walks every connection, which costs as much as what a
    caller saves by asking). Without that queue, this says no: the caller then
    waits with its timeout, as it always may. A test checks both answers."""
    queue = getattr(pool, "_queue", None)
    return isinstance(queue, asyncio.Queue) and not queue.empty()


def describe_target(dsn: str) -> str:
    """host:port/database of a ``postgresql://`` DSN, for messages; every host of
    a multi-host DSN (``host1:port1,host2:port2``). Nothing of any other string is
    echoed: it may be a key=value DSN or a URL without its scheme, where the
    password sits outside the parts a URL parser keeps apart."""
    unparsable = "<unparsable DSN>"
    try:
        parts = urlsplit(dsn)
        if parts.scheme not in ("postgresql", "postgres") or "@" in parts.path:
            return unparsable
        # The user and password end at the last "@"; the hosts follow, comma-separated.
        listed = parts.netloc.rpartition("@")[2]
        hosts = _query_hosts(parts.query) if not listed else []
        for host in listed.split(",") if listed else ():
            one = urlsplit(f"//{host}")
            port = f":{one.port}" if one.port else ""
            hosts.append(f"{one.hostname or 'localhost'}{port}")
    except ValueError:
        return unparsable
    return f"{','.join(hosts) or 'localhost'}{parts.path}"


def _query_hosts(query: str) -> list[str]:
    """``host:port`` for each host of ``?host=a,b&port=1,2`` (libpq's other way
    of listing hosts); one port may serve them all."""
    given = dict(parse_qsl(query))
    hosts = [host for host in given.get("host", "").split(",") if host]
    ports = given["port"].split(",") if "port" in given else []
    if len(ports) == 1:
        ports = ports * len(hosts)
    if len(ports) != len(hosts):
        return hosts
    return [f"{host}:{port}" for host, port in zip(hosts, ports, strict=True)]


def mapped(operation: str, exc: BaseException, rule: ErrorRule) -> EventCoreError:
    """The eventcore error for ``exc`` under ``rule`` (the caller chains it)."""
    return rule.error(f"{operation} {rule.what} ({type(exc).__name__}: {exc})")


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """Run a block, turning driver exceptions into eventcore errors by the table."""
    try:
        yield
    except DRIVER_ERRORS as exc:
        rule = rule_for(exc)
        if rule is None:  # only if a class had nothing but narrowed rows
            raise
        raise mapped(operation, exc, rule) from exc
