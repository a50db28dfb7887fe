"""Shared fixtures: a fresh store of each backend kind."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from eventcore.backends.memory import InMemoryEventStore
from eventcore.store import EventStore
from tests import pg

STORE_KINDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

StoreFactory = Callable[[], Awaitable[EventStore]]


async def open_store(kind: str, tmp_path: Path, pg_schema: str | None = None) -> EventStore:
    if kind == "memory":
        return InMemoryEventStore()
    if kind == "sqlite":
        from eventcore.backends.sqlite import SQLiteEventStore

        return await SQLiteEventStore.open(tmp_path / "events.sqlite")
    if kind == "postgres":
        assert pg_schema is not None
        return await pg.fresh_store(pg_schema)
    raise ValueError(kind)


@pytest.fixture(params=STORE_KINDS)
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    """A fresh, empty store of every kind in turn."""
    if request.param != "postgres":
        store = await open_store(request.param, tmp_path)
        try:
            yield store
        finally:
            await store.close()
        return
    async for schema in pg.schema_fixture():
        store = await open_store("postgres", tmp_path, schema)
        try:
            yield store
        finally:
            await store.close()


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    """A fresh schema name in the test PostgreSQL database, dropped afterwards."""
    async for schema in pg.schema_fixture():
        yield schema


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """With EVENTCORE_REQUIRE_POSTGRES set (as CI does), a skipped postgres test fails."""
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and not hasattr(report, "wasxfail")  # an expected failure ran; it did not skip
        and os.environ.get("EVENTCORE_REQUIRE_POSTGRES")
        and item.get_closest_marker("postgres") is not None
    ):
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} was skipped, but EVENTCORE_REQUIRE_POSTGRES is set: "
            "PostgreSQL tests must run here"
        )
