"""The PostgreSQL event store (install the ``postgres`` extra: asyncpg)."""

from eventcore.backends.postgres._config import (
    DATABASE_URL_VARIABLE,
    LISTEN_DATABASE_URL_VARIABLE,
    READ_DATABASE_URL_VARIABLE,
    PostgresConfig,
)
from eventcore.backends.postgres._store import PostgresEventStore

__all__ = [
    "DATABASE_URL_VARIABLE",
    "LISTEN_DATABASE_URL_VARIABLE",
    "READ_DATABASE_URL_VARIABLE",
    "PostgresConfig",
    "PostgresEventStore",
]
