"""A PostgreSQL store's settings as :func:`eventcore.open_store` takes them: URLs.

The store's URL may carry two query parameters of eventcore's own, taken out
before the URL reaches the driver: ``schema=name`` (the schema holding the
store's tables) and ``pooler=pgbouncer`` (the URL reaches PgBouncer in
transaction pooling mode: :meth:`PostgresConfig.behind_pgbouncer`'s settings).
A read replica's URL and the URL the listener for appends connects to are given
apart, as arguments or environment variables. Nothing here imports asyncpg: the
PostgreSQL backend is imported only when such a store is opened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from eventcore.errors import ValidationError

POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")
# The PostgreSQL backend's names for these, repeated: that package needs the
# postgres extra, and opening a SQLite store must not.
READ_URL_VARIABLE: Final = "EVENTCORE_READ_DATABASE_URL"
LISTEN_URL_VARIABLE: Final = "EVENTCORE_LISTEN_DATABASE_URL"
_OWN_PARAMETERS: Final = ("schema", "pooler")
_POOLERS: Final = ("pgbouncer",)


def is_postgres(url: str) -> bool:
    return url.startswith(POSTGRES_SCHEMES)


@dataclass(frozen=True, slots=True)
class PostgresUrls:
    """The DSNs of a PostgreSQL store and eventcore's own query parameters."""

    dsn: str
    schema: str | None
    pooler: str | None
    read_dsn: str | None
    listen_dsn: str | None

    @classmethod
    def of(cls, url: str, read_url: str | None, listen_url: str | None) -> PostgresUrls:
        """``url`` with ``read_url`` and ``listen_url``, each of those taken from the
        environment when ``None`` (unset or empty there: none)."""
        dsn, own = _split_own_parameters(url, "the database URL")
        schema, pooler = own.get("schema"), own.get("pooler")
        if pooler is not None and pooler not in _POOLERS:
            raise ValidationError(
                f"pooler={pooler!r} in the database URL is not one eventcore knows: "
                f"use pooler=pgbouncer (transaction pooling mode), or leave it out"
            )
        others = {
            "read_url": read_url if read_url is not None else _from_environment(READ_URL_VARIABLE),
            "listen_url": (
                listen_url if listen_url is not None else _from_environment(LISTEN_URL_VARIABLE)
            ),
        }
        dsns = {name: _other_dsn(name, other, own) for name, other in others.items()}
        if pooler is not None and dsns["listen_url"] is None:
            raise ValidationError(
                "pooler=pgbouncer needs listen_url (or $EVENTCORE_LISTEN_DATABASE_URL): "
                "LISTEN holds a session, so it must reach the server itself or a "
                "session-mode pool (see docs/pgbouncer.md)"
            )
        return cls(dsn, schema, pooler, dsns["read_url"], dsns["listen_url"])

    def config_settings(self) -> dict[str, Any]:
        """Keyword arguments for ``PostgresConfig`` (or ``behind_pgbouncer``)."""
        settings: dict[str, Any] = {"read_dsn": self.read_dsn, "listen_dsn": self.listen_dsn}
        if self.schema is not None:
            settings["schema"] = self.schema
        return settings


def _from_environment(variable: str) -> str | None:
    return os.environ.get(variable) or None


def _other_dsn(name: str, url: object, store_own: dict[str, str]) -> str | None:
    """A replica's or the listener's URL as a DSN; its own parameters, if any,
    must repeat the store URL's (they are the store's, not the connection's)."""
    if url is None:
        return None
    if not isinstance(url, str) or not is_postgres(url):
        raise ValidationError(f"{name} must be a postgresql:// URL, got {url!r}")
    dsn, own = _split_own_parameters(url, name)
    for key, value in own.items():
        if store_own.get(key) != value:
            raise ValidationError(
                f"{name} names {key}={value!r}, which the store's URL does not: "
                f"{key}= belongs in the store's URL alone"
            )
    return dsn


def _split_own_parameters(url: str, what: str) -> tuple[str, dict[str, str]]:
    """``url`` without eventcore's query parameters, and those parameters."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    own: dict[str, str] = {}
    for key in _OWN_PARAMETERS:
        values = [value for name, value in query if name == key]
        if len(values) > 1:
            raise ValidationError(f"{what} names {key}= {len(values)} times: {values!r}")
        if values:
            own[key] = values[0]
    rest = urlencode([(name, value) for name, value in query if name not in _OWN_PARAMETERS])
    return urlunsplit(parts._replace(query=rest)), own
