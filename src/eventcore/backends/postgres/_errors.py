"""Mapping asyncpg's exceptions into eventcore's error tree.

Callers never see a driver exception: connection trouble becomes
StoreUnavailable, a timeout says which timeout, anything else the server refused
becomes StoreError, always chained (``raise ... from``) for the traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import asyncpg

from eventcore.errors import StoreError, StoreUnavailable

# Errors after which the connection (or the server) is gone: worth a reconnect.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.InterfaceError,
    ConnectionError,
    OSError,
)


def describe_target(dsn: str) -> str:
    """host:port/database of a ``postgresql://`` DSN, for messages. Nothing of any
    other string is echoed: it may be a key=value DSN or a URL without its scheme,
    where the password sits outside the parts a URL parser keeps apart."""
    unparsable = "<unparsable DSN>"
    try:
        parts = urlsplit(dsn)
        if parts.scheme not in ("postgresql", "postgres") or "@" in parts.path:
            return unparsable
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return unparsable
    return f"{host}{port}{parts.path}"


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """Run a block, turning driver exceptions into eventcore errors."""
    try:
        yield
    except asyncpg.exceptions.QueryCanceledError as exc:
        raise StoreUnavailable(
            f"{operation} was cancelled by the server (statement timeout?): {exc}"
        ) from exc
    except TimeoutError as exc:
        raise StoreUnavailable(f"{operation} timed out") from exc
    except CONNECTION_ERRORS as exc:
        raise StoreUnavailable(
            f"{operation} failed: the connection to PostgreSQL was lost or refused "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    except asyncpg.PostgresError as exc:
        raise StoreError(f"{operation} failed in PostgreSQL: {exc}") from exc
