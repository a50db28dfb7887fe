"""Connecting through a multi-host DSN, one host at a time, each within its own timeout.

A failover cluster is reached with ``postgresql://user@host1:port1,host2:port2/db
?target_session_attrs=read-write``. asyncpg tries the hosts in turn, but under one
``timeout`` for them all, and moves on only when a host refuses: a host that does
not answer (its machine down, a network partition) spends the whole timeout, so the
next host, the new primary, is never tried. libpq gives each host its own
``connect_timeout``; so does :class:`HostOrder`, which splits the DSN into one DSN
per host and connects to them in turn.

It also starts from the host that answered last: after a failover, new
connections go straight to the new primary instead of first waiting on the old one.
And it remembers which host each connection it made is on, so that a long-lived
connection (the listener's) can tell when the pool has moved to another host: a
primary that hangs, rather than dies, never closes its connections.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any, Final
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from asyncpg import exceptions as pg

from eventcore.backends.postgres._errors import describe_target

# A host that is down, starting, shutting down or not writable: the next may do.
# Anything else (a wrong password, a missing database) is the same on every host.
_NEXT_HOST: Final = (
    OSError,
    TimeoutError,
    pg.TargetServerAttributeNotMatched,
    pg.CannotConnectNowError,
    pg.PostgresConnectionError,
)


def split_hosts(dsn: str) -> list[str] | None:
    """One DSN per host of a multi-host ``postgresql://`` URL, in order; ``None``
    for a single host or any other form (asyncpg reads those as they are).

    The hosts may be listed in the URL (``postgresql://app@db1:5432,db2:5433/app``)
    or, as libpq also allows, in its query (``postgresql://app@/app?host=db1,db2
    &port=5432,5433``; one port for every host, or one port per host). Hosts in the
    URL win over hosts in the query, as they do for asyncpg.
    """
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return None
    if parts.scheme not in ("postgresql", "postgres"):
        return None
    login, at, hosts = parts.netloc.rpartition("@")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not hosts:
        return _split_query_hosts(parts, query)
    if "," not in hosts or {key for key, _ in query} & {"host", "port"}:
        return None
    return [
        urlunsplit((parts.scheme, f"{login}{at}{host}", parts.path, parts.query, parts.fragment))
        for host in hosts.split(",")
    ]


def _split_query_hosts(parts: SplitResult, query: list[tuple[str, str]]) -> list[str] | None:
    """The hosts of ``?host=a,b&port=1,2``, each in a DSN of its own; ``None`` for
    one host, or for a query asyncpg would refuse (it then says why)."""
    given = dict(query)
    if len(given) != len(query):
        return None  # a key given twice: left to the driver's reading
    hosts = given.get("host", "").split(",")
    ports = given["port"].split(",") if "port" in given else []
    if len(hosts) < 2 or len(ports) not in (0, 1, len(hosts)):
        return None
    if len(ports) == 1:
        ports = ports * len(hosts)
    rest = [(key, value) for key, value in query if key not in ("host", "port")]
    dsns = []
    for index, host in enumerate(hosts):
        own = [("host", host), *([("port", ports[index])] if ports else []), *rest]
        # Not urlunsplit: it drops the "//" of an empty host part, and asyncpg
        # would then read the database name as a host.
        fragment = f"#{parts.fragment}" if parts.fragment else ""
        encoded = urlencode(own, safe="/")
        dsns.append(f"{parts.scheme}://{parts.netloc}{parts.path}?{encoded}{fragment}")
    return dsns


class HostOrder:
    """Connects to the hosts of a multi-host DSN in turn, starting with the one that
    answered last; each attempt has the full ``timeout`` it is given."""

    def __init__(self, dsns: Sequence[str]) -> None:
        self._dsns = list(dsns)
        self._first = 0
        self._host_of: weakref.WeakKeyDictionary[asyncpg.Connection, int] = (
            weakref.WeakKeyDictionary()
        )
        self._on_move: list[Callable[[], None]] = []

    @classmethod
    def of(cls, dsn: str) -> HostOrder | None:
        """For a multi-host DSN; ``None`` for a single host (asyncpg connects)."""
        dsns = split_hosts(dsn)
        return None if dsns is None else cls(dsns)

    @property
    def count(self) -> int:
        return len(self._dsns)

    def when_moved(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` whenever new connections start going to another host."""
        self._on_move.append(hook)

    def on_current_host(self, conn: asyncpg.Connection) -> bool:
        """Whether ``conn`` is on the host new connections go to now (the one
        that answered last); a connection made elsewhere counts as current."""
        return self._host_of.get(conn, self._first) == self._first

    async def connect(
        self,
        dsn: str | None = None,
        *,
        answers: list[tuple[str, BaseException]] | None = None,
        **kwargs: Any,
    ) -> asyncpg.Connection:
        """asyncpg's ``connect`` (the pool calls it with the full DSN first, which
        is ignored: each host's own DSN is used). ``answers``, if given, receives
        each host that failed, as ``host:port/database``, with its exception."""
        count = len(self._dsns)
        not_writable: BaseException | None = None
        last: BaseException | None = None
        for step in range(count):
            index = (self._first + step) % count
            try:
                conn: asyncpg.Connection = await asyncpg.connect(self._dsns[index], **kwargs)
            except _NEXT_HOST as exc:
                if isinstance(exc, pg.TargetServerAttributeNotMatched):
                    not_writable = exc
                last = exc
                if answers is not None:
                    answers.append((describe_target(self._dsns[index]), exc))
                continue
            self._host_of[conn] = index
            if index != self._first:
                self._first = index
                for hook in self._on_move:
                    hook()
            return conn
        # "None writable" says more than the last host's refusal: a failover is on.
        assert last is not None
        raise not_writable or last
