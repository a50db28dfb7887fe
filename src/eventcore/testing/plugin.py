"""pytest fixtures for applications built on eventcore.

With the ``testing`` extra installed (``pip install 'eventcore[testing]'``) pytest
loads this plugin by itself, and a project's tests can ask for:

- ``eventcore_memory_store``: a fresh :class:`~eventcore.InMemoryEventStore`;
- ``eventcore_sqlite_store``: a :class:`~eventcore.SQLiteEventStore` in a new file
  under the test's ``tmp_path``;
- ``eventcore_postgres_store``: a
  :class:`~eventcore.backends.postgres.PostgresEventStore` in a schema of its own,
  dropped after the test, on the server named by ``--eventcore-postgres-url`` or
  the ``EVENTCORE_TEST_POSTGRES_URL`` environment variable (skipped when neither
  is given);
- ``eventcore_store``: each of those in turn (the test runs once per kind; the
  PostgreSQL kind only when a server is named);
- ``eventcore_given``: :func:`eventcore.testing.scenario.given`, for
  given/when/then tests of a command's decisions with no store at all.

Every store fixture is closed after its test. The fixtures are asyncio fixtures
(pytest-asyncio), usable from ``async def`` tests in any asyncio mode.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from eventcore.backends.memory import InMemoryEventStore
from eventcore.store import EventStore
from eventcore.testing.scenario import given

F = TypeVar("F", bound=Callable[..., Any])
_URL_OPTION = "--eventcore-postgres-url"
_URL_VARIABLE = "EVENTCORE_TEST_POSTGRES_URL"
_STORE_KINDS = ("memory", "sqlite", "postgres")


def _async_fixture(function: F) -> F:
    """An asyncio fixture; without pytest-asyncio, one that says what to install
    (pytest loads this plugin whenever eventcore is installed, extra or not)."""
    try:
        import pytest_asyncio
    except ImportError:

        @functools.wraps(function)
        def needs_pytest_asyncio(*args: object, **kwargs: object) -> None:
            pytest.fail(
                f"{function.__name__} needs pytest-asyncio: pip install 'eventcore[testing]'"
            )

        return cast(F, pytest.fixture(needs_pytest_asyncio))
    return cast(F, pytest_asyncio.fixture(function))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        _URL_OPTION,
        default=None,
        help=(
            "PostgreSQL server for eventcore's store fixtures, as postgresql://user@host/db "
            f"(default: ${_URL_VARIABLE}); each test gets a throw-away schema there"
        ),
    )


def _postgres_url(config: pytest.Config) -> str | None:
    url = config.getoption(_URL_OPTION) or os.environ.get(_URL_VARIABLE)
    return str(url) if url else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "eventcore_store" in metafunc.fixturenames:
        kinds = [k for k in _STORE_KINDS if k != "postgres" or _postgres_url(metafunc.config)]
        metafunc.parametrize("eventcore_store", kinds, indirect=True)


async def _open(kind: str, tmp_path: Path, config: pytest.Config) -> AsyncIterator[EventStore]:
    """Yield a fresh store of ``kind``; close it (and drop its schema) afterwards."""
    if kind == "memory":
        async with InMemoryEventStore() as memory:
            yield memory
        return
    if kind == "sqlite":
        from eventcore.backends.sqlite import SQLiteEventStore

        async with await SQLiteEventStore.open(tmp_path / "eventcore.sqlite") as sqlite:
            yield sqlite
        return
    url = _postgres_url(config)
    if url is None:
        pytest.skip(f"no PostgreSQL server named ({_URL_OPTION} or ${_URL_VARIABLE})")
    async for postgres in _throwaway_postgres_store(url):
        yield postgres


async def _throwaway_postgres_store(url: str) -> AsyncIterator[EventStore]:
    import asyncpg

    from eventcore.backends.postgres import PostgresConfig, PostgresEventStore

    schema = f"eventcore_test_{uuid.uuid4().hex[:12]}"
    store = await PostgresEventStore.open(PostgresConfig.development(url, schema=schema))
    try:
        yield store
    finally:
        await store.close()
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


@_async_fixture
async def eventcore_memory_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[EventStore]:
    async for store in _open("memory", tmp_path, request.config):
        yield store


@_async_fixture
async def eventcore_sqlite_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[EventStore]:
    async for store in _open("sqlite", tmp_path, request.config):
        yield store


@_async_fixture
async def eventcore_postgres_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[EventStore]:
    async for store in _open("postgres", tmp_path, request.config):
        yield store


@_async_fixture
async def eventcore_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[EventStore]:
    async for store in _open(request.param, tmp_path, request.config):
        yield store


@pytest.fixture
def eventcore_given() -> Callable[..., Any]:
    return given
