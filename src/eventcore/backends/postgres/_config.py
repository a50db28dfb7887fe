"""Connection settings for the PostgreSQL store, with production and development presets."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, fields, replace
from typing import Any, Final

from eventcore.backends._group_commit import GroupCommitSettings
from eventcore.errors import ValidationError

DATABASE_URL_VARIABLE: Final = "EVENTCORE_DATABASE_URL"
READ_DATABASE_URL_VARIABLE: Final = "EVENTCORE_READ_DATABASE_URL"
LISTEN_DATABASE_URL_VARIABLE: Final = "EVENTCORE_LISTEN_DATABASE_URL"
# Lower-case identifiers only: they need no quoting rules beyond double quotes,
# and the notification channel built from them stays under 63 bytes.
_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,47}")
# Connection strings, which may carry a password: never printed.
_DSNS: Final = ("dsn", "listen_dsn", "read_dsn")
_SECRET_FIELDS: Final = frozenset(_DSNS)
# Two batches in flight: the next is built and sent while one commits. Measured
# against one: lower open-loop latency, 64 writers as fast or faster, a lone
# writer no slower (docs/benchmarks.md).
PIPELINED_GROUP_COMMIT: Final = GroupCommitSettings(max_in_flight=2)
_DURATIONS: Final = (
    "acquire_timeout",
    "idle_timeout",
    "max_lifetime",
    "connect_timeout",
    "command_timeout",
)


@dataclass(frozen=True, slots=True)
class PostgresConfig:
    """How :class:`PostgresEventStore` connects. Durations are in seconds.

    ``dsn`` is a ``postgresql://`` URL; when ``None``, the ``EVENTCORE_DATABASE_URL``
    environment variable is read when the store opens (and ``read_dsn`` /
    ``listen_dsn``, when not given, come from ``EVENTCORE_READ_DATABASE_URL`` /
    ``EVENTCORE_LISTEN_DATABASE_URL``). ``schema`` names the
    PostgreSQL schema holding the store's tables, so several applications can share
    a database. ``max_payload_bytes`` bounds one event's encoded payload.
    ``group_commit``: concurrent appends share one transaction and one round trip
    (on by default, with two batches in flight: the next is sent while one
    commits; see :class:`~eventcore.backends.GroupCommitSettings`);
    ``group_reads``: reads made while another is in flight share the next query
    (on by default; a lone read is sent at once as it would be without; see
    docs/benchmarks.md). ``copy_threshold``: a batch (one ``append_many`` call,
    or one group commit) of at least this many events is streamed to the server by
    binary COPY instead of as array parameters, with the same checks and results;
    ``None`` (the default) never uses COPY (see docs/adr/0008-copy-appends.md).

    ``statement_cache_size``: how many prepared statements asyncpg keeps per
    connection; 0 sends every query as an unnamed statement, which a pooler in
    transaction mode (PgBouncer before 1.21) needs. ``listen_dsn``: where the
    one connection that LISTENs for appends connects (default: ``dsn``); LISTEN
    holds a session, so behind a transaction pooler it must reach the server
    directly. ``statement_timeout_at_connect``: send ``statement_timeout`` (the
    ``command_timeout``) when connecting, so the server cancels a statement its
    client abandoned; PgBouncer refuses that startup parameter. See
    :meth:`behind_pgbouncer` and docs/pgbouncer.md.

    ``read_dsn``: a hot standby (streaming replica) of the same database. When set,
    reads of the global log (``read_all``, ``iter_all``, ``head_position``,
    following, projections) go there; appends, checkpoints, leases and everything
    else stay on ``dsn``. ``command_reads_on_replica``: a command's stream reads go
    to the standby too (a stale read costs a retried command; see docs/replicas.md).
    """

    dsn: str | None = None
    schema: str = "eventcore"
    max_connections: int = 20
    min_connections: int = 5
    acquire_timeout: float = 30.0
    idle_timeout: float = 600.0
    max_lifetime: float = 1800.0
    connect_timeout: float = 5.0
    command_timeout: float = 30.0
    application_name: str = "eventcore"
    max_payload_bytes: int = 16 * 1024 * 1024
    group_commit: GroupCommitSettings = PIPELINED_GROUP_COMMIT
    group_reads: bool = True
    # Off: slower than the array path below a few thousand events, at most ~10%
    # faster beyond (benchmarks/copy_appends.py, docs/adr/0008-copy-appends.md).
    copy_threshold: int | None = None
    statement_cache_size: int = 100
    listen_dsn: str | None = None
    statement_timeout_at_connect: bool = True
    read_dsn: str | None = None
    command_reads_on_replica: bool = False

    def __post_init__(self) -> None:
        _check_dsns_and_replica(self)
        _check_schema(self.schema)
        _check_sizes(self)
        _check_durations(self)
        _check_copy_threshold(self.copy_threshold)
        if not isinstance(self.application_name, str) or len(self.application_name) > 63:
            raise ValidationError(
                f"application_name must be a str of at most 63 characters, "
                f"got {self.application_name!r}"
            )
        if not isinstance(self.statement_timeout_at_connect, bool):
            raise ValidationError(
                f"statement_timeout_at_connect must be a bool, "
                f"got {self.statement_timeout_at_connect!r}"
            )

    @classmethod
    def production(cls, dsn: str | None = None, **overrides: Any) -> PostgresConfig:
        """The production pool, which is also the default: 20/5 connections, 30 s
        acquire, 10 min idle, 30 min lifetime, 5 s connect, 30 s command timeout."""
        return replace(cls(dsn=dsn), **overrides)

    @classmethod
    def development(cls, dsn: str | None = None, **overrides: Any) -> PostgresConfig:
        """A small pool for a laptop or a test run: 5/1 connections, 5 s acquire,
        1 min idle, 5 min lifetime, 2 s connect, 10 s command timeout."""
        base = cls(
            dsn=dsn,
            max_connections=5,
            min_connections=1,
            acquire_timeout=5.0,
            idle_timeout=60.0,
            max_lifetime=300.0,
            connect_timeout=2.0,
            command_timeout=10.0,
            application_name="eventcore-dev",
        )
        return replace(base, **overrides)

    @classmethod
    def behind_pgbouncer(
        cls, dsn: str | None = None, *, listen_dsn: str | None, **overrides: Any
    ) -> PostgresConfig:
        """The production pool, through PgBouncer in transaction pooling mode.

        No prepared statements are kept (a named statement lives in one server
        session, and the next transaction may run on another), no
        ``statement_timeout`` is sent when connecting (PgBouncer refuses startup
        parameters it does not know; set it on the role or in PgBouncer's
        ``connect_query``), and LISTEN goes to ``listen_dsn``: the server itself,
        or a PgBouncer database in session mode. ``listen_dsn=None`` is allowed
        only to say so explicitly; followers then LISTEN through ``dsn``, which
        works only if that pool is in session mode. See docs/pgbouncer.md.
        """
        base = cls(
            dsn=dsn,
            listen_dsn=listen_dsn,
            statement_cache_size=0,
            statement_timeout_at_connect=False,
        )
        return replace(base, **overrides)

    def resolved(self) -> PostgresConfig:
        """This configuration, its connection strings completed from the environment
        when it has no ``dsn``: ``EVENTCORE_DATABASE_URL``, and
        ``EVENTCORE_READ_DATABASE_URL`` / ``EVENTCORE_LISTEN_DATABASE_URL`` for a
        ``read_dsn`` / ``listen_dsn`` it does not give (unset or empty: none)."""
        if self.dsn is not None:
            return self
        return replace(
            self,
            dsn=self.resolved_dsn(),
            read_dsn=self.read_dsn or os.environ.get(READ_DATABASE_URL_VARIABLE) or None,
            listen_dsn=self.listen_dsn or os.environ.get(LISTEN_DATABASE_URL_VARIABLE) or None,
        )

    def resolved_dsn(self) -> str:
        """The DSN to connect to: the configured one, else the environment's."""
        dsn = self.dsn if self.dsn is not None else os.environ.get(DATABASE_URL_VARIABLE)
        if not dsn:
            raise ValidationError(
                f"no database given: pass dsn= or set {DATABASE_URL_VARIABLE} "
                "(e.g. postgresql://user@127.0.0.1:5432/mydb)"
            )
        return dsn

    @property
    def quoted_schema(self) -> str:
        return f'"{self.schema}"'

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel on which appends announce new positions."""
        return f"eventcore_{self.schema}"

    def __repr__(self) -> str:
        # Never print a password that may be in a DSN.
        shown = ", ".join(f"{f.name}={self._shown(f.name)}" for f in fields(self))
        return f"PostgresConfig({shown})"

    def _shown(self, name: str) -> str:
        value = getattr(self, name)
        return f"<{name}>" if name in _SECRET_FIELDS and value else repr(value)


def _check_schema(schema: object) -> None:
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise ValidationError(
            f"schema must be a lower-case SQL identifier of at most 48 characters "
            f"([a-z_][a-z0-9_]*), got {schema!r}"
        )
    if schema.startswith("pg_"):
        raise ValidationError(
            f"schema {schema!r} starts with 'pg_', which PostgreSQL reserves "
            "for system schemas; choose another name"
        )


def _check_sizes(config: PostgresConfig) -> None:
    for name in (
        "max_connections",
        "min_connections",
        "max_payload_bytes",
        "statement_cache_size",
    ):
        value = getattr(config, name)
        least = 0 if name in ("min_connections", "statement_cache_size") else 1
        if type(value) is not int or value < least:
            raise ValidationError(f"{name} must be an int of at least {least}, got {value!r}")
    if config.min_connections > config.max_connections:
        raise ValidationError(
            f"min_connections ({config.min_connections}) exceeds "
            f"max_connections ({config.max_connections})"
        )


def _check_durations(config: PostgresConfig) -> None:
    for name in _DURATIONS:
        value = getattr(config, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (math.isfinite(value) and value > 0)
        ):
            raise ValidationError(f"{name} must be a positive number of seconds, got {value!r}")


def _check_copy_threshold(value: object) -> None:
    if value is not None and (type(value) is not int or value < 1):
        raise ValidationError(
            "copy_threshold must be None (never use COPY) or an int of at least 1 "
            f"(the events in a batch from which on it goes by COPY), got {value!r}"
        )


def _check_dsns_and_replica(config: PostgresConfig) -> None:
    for name in _DSNS:
        value = getattr(config, name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValidationError(f"{name} must be a non-empty str or None, got {value!r}")
    if not isinstance(config.command_reads_on_replica, bool):
        raise ValidationError(
            f"command_reads_on_replica must be a bool, got {config.command_reads_on_replica!r}"
        )
    if config.command_reads_on_replica and config.read_dsn is None:
        raise ValidationError(
            "command_reads_on_replica=True needs a replica to read from: set read_dsn"
        )
