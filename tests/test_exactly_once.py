"""Exactly-once projections: the read model and the checkpoint in one transaction,
on SQLite and PostgreSQL (the in-memory store refuses them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventcore.backends.memory import InMemoryEventStore
from eventcore.errors import LeaseLost, ProjectionFailed, ValidationError
from eventcore.projection import (
    ExactlyOnceRunner,
    FailurePolicy,
    ProjectionState,
    RunnerOptions,
    rebuild_projection,
)
from eventcore.store import Fence, ProjectionStore
from eventcore.testing.contract import append_new
from tests.ledger import Dialect, Ledger, ledger_database

OPTIONS = RunnerOptions(page_size=7, poll_interval=0.05, lease_ttl=2.0)
BOUND = 30.0  # seconds: a test that waits longer has hung


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[ProjectionStore, Dialect]]:
    async for opened in ledger_database(request.param, tmp_path):
        yield opened


async def append_events(store: ProjectionStore, count: int) -> None:
    for n in range(count):
        await append_new(store, f"account-{n % 3}")  # type: ignore[arg-type]


async def test_events_before_and_during_the_run_arrive_once_each_in_order(
    db: tuple[ProjectionStore, Dialect],
) -> None:
    store, dialect = db
    await append_events(store, 30)
    async with ExactlyOnceRunner(store, Ledger(dialect), options=OPTIONS) as runner:
        await asyncio.wait_for(runner.caught_up(), BOUND)
        await append_events(store, 20)
        await asyncio.wait_for(runner.caught_up(), BOUND)
    assert await dialect.positions() == list(range(1, 51))
    assert await store.load_checkpoint("ledger") == 50


async def test_a_restarted_runner_applies_nothing_twice(
    db: tuple[ProjectionStore, Dialect],
) -> None:
    store, dialect = db
    await append_events(store, 10)
    async with ExactlyOnceRunner(store, Ledger(dialect), options=OPTIONS) as runner:
        await asyncio.wait_for(runner.caught_up(), BOUND)
    await append_events(store, 5)
    async with ExactlyOnceRunner(store, Ledger(dialect), options=OPTIONS) as runner:
        await asyncio.wait_for(runner.caught_up(), BOUND)
    assert await dialect.positions() == list(range(1, 16))


async def test_a_handler_failing_mid_transaction_leaves_neither_changes_nor_checkpoint(
    db: tuple[ProjectionStore, Dialect],
) -> None:
    store, dialect = db
    await store.save_checkpoint("ledger", 0)

    async def write_then_fail() -> None:
        async with store.checkpoint_transaction("ledger", 3) as tx:  # type: ignore[attr-defined]
            await tx.execute(dialect.insert, 1, "account-0")
            await tx.execute(dialect.insert, 2, "account-1")
            raise RuntimeError("mid-batch")

    with pytest.raises(RuntimeError, match="mid-batch"):
        await write_then_fail()
    assert await dialect.positions() == []
    assert await store.load_checkpoint("ledger") == 0


async def test_a_runner_whose_handler_fails_mid_page_commits_only_whole_events(
    db: tuple[ProjectionStore, Dialect],
) -> None:
    store, dialect = db
    await append_events(store, 6)
    projection = Ledger(dialect, fail_at=4)
    projection.failure_policy = FailurePolicy.stop()
    runner = ExactlyOnceRunner(store, projection, options=OPTIONS)
    with pytest.raises(ProjectionFailed, match="refusing event 4"):
        await asyncio.wait_for(runner.run(), BOUND)
    # The page 1-6 was rolled back; then one transaction per event up to the failure.
    assert await dialect.positions() == [1, 2, 3]
    assert await store.load_checkpoint("ledger") == 3


async def test_a_skipped_event_leaves_no_change_and_a_dead_letter(
    db: tuple[ProjectionStore, Dialect],
) -> None:
    store, dialect = db
    await append_events(store, 6)
    projection = Ledger(dialect, fail_at=4)
    projection.failure_policy = FailurePolicy.skip()
    async with ExactlyOnceRunner(store, projection, options=OPTIONS) as runner:
        await asyncio.wait_for(runner.caught_up(), BOUND)
    assert await dialect.positions() == [1, 2, 3, 5, 6]
    assert [letter.position for letter in await store.dead_letters("ledger")] == [4]


async def test_a_commit_under_a_lost_fence_writes_nothing(
    db: tuple[ProjectionStore, Dialect],
) -> None:
    store, dialect = db
    old = await store.acquire_fenced_lease("ledger", "A", 60.0)  # type: ignore[attr-defined]
    await store.release_lease("ledger", "A")
    assert await store.acquire_fenced_lease("ledger", "B", 60.0) is not None  # type: ignore[attr-defined]

    async def write_under_old_fence() -> None:
        async with store.checkpoint_transaction(  # type: ignore[attr-defined]
            "ledger", 2, fence=Fence("ledger", old)
        ) as tx:
            await tx.execute(dialect.insert, 1, "account-0")

    with pytest.raises(LeaseLost):
        await write_under_old_fence()
    assert await dialect.positions() == []
    assert await store.load_checkpoint("ledger") is None


async def test_rebuild_empties_the_read_model_with_the_checkpoint(
    db: tuple[ProjectionStore, Dialect],
) -> None:
    store, dialect = db
    await append_events(store, 5)
    async with ExactlyOnceRunner(store, Ledger(dialect), options=OPTIONS) as runner:
        await asyncio.wait_for(runner.caught_up(), BOUND)
    status = await rebuild_projection(store, Ledger(dialect), options=OPTIONS)
    assert status.position == 5
    assert await dialect.positions() == [1, 2, 3, 4, 5]


async def test_the_memory_store_refuses_exactly_once(tmp_path: Path) -> None:
    store = InMemoryEventStore()
    with pytest.raises(ValidationError, match="exactly-once projection 'ledger' needs a store"):
        ExactlyOnceRunner(store, Ledger(Dialect("sqlite", str(tmp_path / "x"))))


async def test_an_exactly_once_runner_stops_cleanly(db: tuple[ProjectionStore, Dialect]) -> None:
    store, dialect = db
    runner = ExactlyOnceRunner(store, Ledger(dialect), options=OPTIONS)
    runner.start()
    await asyncio.wait_for(runner.wait_for_state(ProjectionState.LIVE), BOUND)
    await runner.stop()
    assert runner.state is ProjectionState.STOPPED
    assert await store.lease_holder("ledger") is None


async def test_an_application_with_observers_runs_a_transactional_projection_exactly_once(
    db: tuple[ProjectionStore, Dialect],
) -> None:
    # Observers that time store calls wrap the store; the wrapper must still carry
    # fenced leases and checkpoint transactions through to the database.
    from eventcore import Application
    from eventcore.prometheus import PrometheusObserver

    store, dialect = db
    await append_events(store, 12)
    observer = PrometheusObserver()
    app = Application(store, observers=[observer])  # type: ignore[arg-type]
    async with app.projection_runner(Ledger(dialect), options=OPTIONS) as runner:
        assert isinstance(runner, ExactlyOnceRunner)
        await asyncio.wait_for(runner.caught_up(), BOUND)
    assert await dialect.positions() == list(range(1, 13))
    labels = {"projection": "ledger"}
    assert observer.registry.get_sample_value("eventcore_projection_position", labels) == 12
    labels = {"operation": "acquire_lease"}
    timed = observer.registry.get_sample_value(
        "eventcore_store_operation_duration_seconds_count", labels
    )
    assert timed is not None
    assert timed >= 1
