"""Helpers for tests against the real PostgreSQL server (never mocked).

The server is EVENTCORE_TEST_POSTGRES_URL (default: the local test database). Each
test gets a schema of its own, created by the store's migrations and dropped by
the fixture. Without a reachable server the tests skip — except where
EVENTCORE_REQUIRE_POSTGRES is set (CI), where a skip is turned into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
from eventcore.backends.postgres._sql import Statements

PG_URL = os.environ.get("EVENTCORE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
_reachable: bool | None = None


async def require_server() -> None:
    global _reachable
    if _reachable is None:
        try:
            conn = await asyncpg.connect(PG_URL, timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            _reachable = False
        else:
            await conn.close()
            _reachable = True
    if not _reachable:
        pytest.skip(f"no PostgreSQL server at {PG_URL}")


def new_schema_name() -> str:
    return f"ectest_{uuid.uuid4().hex[:16]}"


def test_config(schema: str, **overrides: Any) -> PostgresConfig:
    settings: dict[str, Any] = {
        "max_connections": 10,
        "min_connections": 1,
        "acquire_timeout": 30.0,
        "application_name": "eventcore-tests",
    }
    settings.update(overrides)
    return PostgresConfig.development(PG_URL, schema=schema, **settings)


async def drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(PG_URL, timeout=5)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def fresh_store(schema: str, **overrides: Any) -> PostgresEventStore:
    return await PostgresEventStore.open(test_config(schema, **overrides))


async def schema_fixture() -> AsyncIterator[str]:
    await require_server()
    schema = new_schema_name()
    try:
        yield schema
    finally:
        await drop_schema(schema)


def test_statements(schema: str) -> Statements:
    """The store's SQL for ``schema``, to call its functions from a raw connection."""
    return Statements.for_schema(f'"{schema}"')
