"""Shared fixtures: a fresh store of each backend kind."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from eventcore.backends.memory import InMemoryEventStore
from eventcore.store import EventStore

STORE_KINDS = ["memory", "sqlite"]

StoreFactory = Callable[[], Awaitable[EventStore]]


async def open_store(kind: str, tmp_path: Path) -> EventStore:
    if kind == "memory":
        return InMemoryEventStore()
    if kind == "sqlite":
        from eventcore.backends.sqlite import SQLiteEventStore

        return await SQLiteEventStore.open(tmp_path / "events.sqlite")
    raise ValueError(kind)


@pytest.fixture(params=STORE_KINDS)
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    """A fresh, empty store of every kind in turn."""
    store = await open_store(request.param, tmp_path)
    try:
        yield store
    finally:
        await store.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """With EVENTCORE_REQUIRE_POSTGRES set (as CI does), a skipped postgres test fails."""
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and os.environ.get("EVENTCORE_REQUIRE_POSTGRES")
        and item.get_closest_marker("postgres") is not None
    ):
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} was skipped, but EVENTCORE_REQUIRE_POSTGRES is set: "
            "PostgreSQL tests must run here"
        )
