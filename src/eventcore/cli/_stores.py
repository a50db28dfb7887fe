"""Opening the store a command names, the same way for every command."""

from __future__ import annotations

from eventcore.application import open_store
from eventcore.errors import StoreUnavailable
from eventcore.store import EventStore


async def open_existing(url: str) -> EventStore:
    """The store ``url`` names, which must already exist; nothing is written (no
    SQLite file created, no PostgreSQL migration applied)."""
    store = await open_store(url, create=False)
    try:
        await _check_schema(store, url)
    except BaseException:
        await store.close()
        raise
    return store


async def _check_schema(store: EventStore, url: str) -> None:
    schema_version = getattr(store, "schema_version", None)
    if schema_version is not None and await schema_version() == 0:
        raise StoreUnavailable(
            f"no eventcore schema at {url!r} yet: create it with eventcore migrate"
        )


def describe(store: EventStore) -> str:
    """A store in a few words, for a command's first line."""
    path = getattr(store, "path", None)
    if isinstance(path, str):
        return f"SQLite at {path}"
    config = getattr(store, "config", None)
    schema = getattr(config, "schema", None)
    if isinstance(schema, str):
        return f"PostgreSQL (schema {schema})"
    return "the in-memory store"
