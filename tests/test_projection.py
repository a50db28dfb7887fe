"""The projection runner on every store: catch up, follow, checkpoint, fail, rebuild."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from eventcore import ProjectionFailed, StreamId, ValidationError
from eventcore.projection import (
    FailurePolicy,
    Projection,
    ProjectionRunner,
    ProjectionState,
    RunnerOptions,
    projection_status,
    rebuild_projection,
)
from eventcore.store import EventStore, ProjectionStore
from eventcore.testing.faults import FaultInjectingStore
from eventcore.types import AppendRequest, NewEvent, RecordedEvent

FAST = RunnerOptions(poll_interval=0.02, lease_ttl=5.0, checkpoint_every=3)


class Recorder(Projection):
    """Keeps (position, event id) by position: an idempotent read model."""

    def __init__(
        self,
        name: str = "recorder",
        *,
        fail_at: Sequence[int] = (),
        policy: FailurePolicy | None = None,
        stream_prefix: str | None = None,
    ) -> None:
        self.name = name
        self.stream_prefix = stream_prefix
        if policy is not None:
            self.failure_policy = policy
        self.fail_at = set(fail_at)
        self.seen: dict[int, str] = {}
        self.deliveries: list[int] = []
        self.resets = 0

    async def handle(self, event: RecordedEvent) -> None:
        self.deliveries.append(event.global_position)
        if event.global_position in self.fail_at:
            raise ValueError(f"cannot project position {event.global_position}")
        self.seen[event.global_position] = str(event.event_id)

    async def reset(self) -> None:
        self.resets += 1
        self.seen.clear()


async def _append(store: EventStore, stream: str, count: int = 1) -> None:
    for _ in range(count):
        version = await store.stream_version(stream)
        event = NewEvent(StreamId(stream), "Tick", b"{}")
        await store.append(AppendRequest.create({stream: version}, [event]))


async def _replay(store: EventStore) -> dict[int, str]:
    return {e.global_position: str(e.event_id) async for e in store.iter_all()}


def _as_projection_store(store: EventStore) -> ProjectionStore:
    assert isinstance(store, ProjectionStore)
    return store


# -- catch up, follow, stop, resume ---------------------------------------------------


async def test_runner_catches_up_then_follows_live_in_order(any_store: EventStore) -> None:
    store = _as_projection_store(any_store)
    await _append(any_store, "a", 5)
    projection = Recorder()
    async with ProjectionRunner(store, projection, options=FAST) as runner:
        assert await asyncio.wait_for(runner.caught_up(), 20) == 5
        assert runner.state is ProjectionState.LIVE
        await _append(any_store, "b", 4)
        await _append(any_store, "a", 3)
        assert await asyncio.wait_for(runner.caught_up(), 20) == 12
    assert projection.deliveries == list(range(1, 13))
    assert projection.seen == await _replay(any_store)


async def test_stop_saves_the_checkpoint_and_a_new_runner_resumes_after_it(
    any_store: EventStore,
) -> None:
    store = _as_projection_store(any_store)
    await _append(any_store, "a", 7)
    first = Recorder()
    async with ProjectionRunner(store, first, options=FAST) as runner:
        await asyncio.wait_for(runner.caught_up(), 20)
    assert await store.load_checkpoint("recorder") == 7
    assert runner.state is ProjectionState.STOPPED
    assert await store.lease_holder("recorder") is None  # released on stop
    await _append(any_store, "a", 2)
    second = Recorder()
    async with ProjectionRunner(store, second, options=FAST) as runner:
        await asyncio.wait_for(runner.caught_up(), 20)
    assert second.deliveries == [8, 9]


async def test_a_filtered_projection_checkpoints_the_scanned_position(
    any_store: EventStore,
) -> None:
    store = _as_projection_store(any_store)
    await _append(any_store, "mine-1", 2)
    await _append(any_store, "other", 5)
    projection = Recorder(stream_prefix="mine-")
    async with ProjectionRunner(store, projection, options=FAST) as runner:
        assert await asyncio.wait_for(runner.caught_up(), 20) == 7
    assert projection.deliveries == [1, 2]
    assert await store.load_checkpoint("recorder") == 7  # no rescan of 3..7


async def test_a_live_runner_with_nothing_new_waits_while_other_tasks_run(
    any_store: EventStore,
) -> None:
    store = FaultInjectingStore(any_store)
    await _append(any_store, "a", 3)
    options = RunnerOptions(poll_interval=60, lease_ttl=300)
    async with ProjectionRunner(store, Recorder(), options=options) as runner:
        await asyncio.wait_for(runner.caught_up(), 20)
        reads = store.log_read_calls
        ticks = 0
        for _ in range(20):  # another task keeps running while the runner waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20
        assert store.log_read_calls - reads <= 2


# -- failure policies -------------------------------------------------------------------


async def test_skip_policy_records_a_dead_letter_and_goes_on(any_store: EventStore) -> None:
    store = _as_projection_store(any_store)
    await _append(any_store, "a", 5)
    projection = Recorder(fail_at=[2, 4], policy=FailurePolicy.skip())
    async with ProjectionRunner(store, projection, options=FAST) as runner:
        await asyncio.wait_for(runner.caught_up(), 20)
        status = await runner.status()
    assert sorted(projection.seen) == [1, 3, 5]
    letters = await store.dead_letters("recorder")
    assert [(d.position, d.event_type) for d in letters] == [(2, "Tick"), (4, "Tick")]
    assert "ValueError: cannot project position 2" in letters[0].error
    assert status.dead_letters == 2


async def test_stop_policy_fails_the_runner_with_the_error_before_the_event(
    any_store: EventStore,
) -> None:
    store = _as_projection_store(any_store)
    await _append(any_store, "a", 5)
    projection = Recorder(fail_at=[3], policy=FailurePolicy.stop())
    runner = ProjectionRunner(store, projection, options=FAST)
    with pytest.raises(ProjectionFailed, match="position 3") as caught:
        await asyncio.wait_for(runner.run(), 20)
    assert caught.value.position == 2
    assert runner.state is ProjectionState.FAILED
    status = await runner.status()
    assert status.state is ProjectionState.FAILED
    assert "cannot project position 3" in (status.last_error or "")
    assert await store.load_checkpoint("recorder") == 2
    assert projection.deliveries == [1, 2, 3]


async def test_retry_policy_retries_then_succeeds(any_store: EventStore) -> None:
    store = _as_projection_store(any_store)
    await _append(any_store, "a", 3)

    class Flaky(Recorder):
        async def handle(self, event: RecordedEvent) -> None:
            if event.global_position == 2 and self.deliveries.count(2) < 2:
                self.deliveries.append(2)
                raise ConnectionError("read model briefly away")
            await super().handle(event)

    projection = Flaky(policy=FailurePolicy.retry(3, base_delay=0.001))
    async with ProjectionRunner(store, projection, options=FAST) as runner:
        await asyncio.wait_for(runner.caught_up(), 20)
    assert projection.deliveries == [1, 2, 2, 2, 3]
    assert sorted(projection.seen) == [1, 2, 3]


async def test_retry_policy_gives_up_after_its_limit_as_told(
    any_store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = _as_projection_store(any_store)
    await _append(any_store, "a", 2)
    policy = FailurePolicy.retry(2, base_delay=0.001, then="skip")
    projection = Recorder(fail_at=[1], policy=policy)
    with caplog.at_level(logging.WARNING, logger="eventcore.projection"):
        async with ProjectionRunner(store, projection, options=FAST) as runner:
            await asyncio.wait_for(runner.caught_up(), 20)
    assert projection.deliveries == [1, 1, 1, 2]
    assert [d.position for d in await store.dead_letters("recorder")] == [1]
    skipped = [r for r in caplog.records if "skipped event" in r.getMessage()]
    assert skipped
    assert "position 1" in skipped[0].getMessage()


async def test_a_failing_projection_does_not_block_another(any_store: EventStore) -> None:
    store = _as_projection_store(any_store)
    await _append(any_store, "a", 3)
    broken = ProjectionRunner(
        store, Recorder("broken", fail_at=[1], policy=FailurePolicy.stop()), options=FAST
    )
    healthy_projection = Recorder("healthy")
    healthy = ProjectionRunner(store, healthy_projection, options=FAST)
    async with broken, healthy:
        with pytest.raises(ProjectionFailed):
            await asyncio.wait_for(broken.caught_up(), 20)
        await _append(any_store, "b", 2)
        assert await asyncio.wait_for(healthy.caught_up(), 20) == 5
    assert sorted(healthy_projection.seen) == [1, 2, 3, 4, 5]
    assert broken.state is ProjectionState.FAILED


async def test_a_briefly_unreachable_store_is_ridden_out(any_store: EventStore) -> None:
    store = FaultInjectingStore(any_store)
    await _append(any_store, "a", 3)
    store.fail_next_log_reads(2)
    store.fail_next_calls("save_checkpoint", 1)
    projection = Recorder()
    async with ProjectionRunner(store, projection, options=FAST) as runner:
        await asyncio.wait_for(runner.caught_up(3), 20)
    assert sorted(projection.seen) == [1, 2, 3]
    assert await any_store.load_checkpoint("recorder") == 3  # type: ignore[attr-defined]


async def test_a_store_away_longer_than_the_retry_budget_fails_clearly(
    any_store: EventStore,
) -> None:
    store = FaultInjectingStore(any_store)
    await _append(any_store, "a", 1)
    store.fail_next_log_reads(1000)
    options = RunnerOptions(poll_interval=0.02, max_retry_time=0.2)
    runner = ProjectionRunner(store, Recorder(), options=options)
    with pytest.raises(ProjectionFailed, match="injected log read failure"):
        await asyncio.wait_for(runner.run(), 20)
    assert runner.state is ProjectionState.FAILED


# -- leases ------------------------------------------------------------------------------


async def test_a_second_runner_of_one_projection_stands_by(any_store: EventStore) -> None:
    store = _as_projection_store(any_store)
    await _append(any_store, "a", 2)
    active = Recorder()
    standby = Recorder()
    async with ProjectionRunner(store, active, options=FAST, holder="one") as first:
        await asyncio.wait_for(first.caught_up(), 20)
        async with ProjectionRunner(store, standby, options=FAST, holder="two") as second:
            await asyncio.wait_for(second.wait_for_state(ProjectionState.STANDBY), 20)
            assert (await second.status()).lease_holder == "one"
    assert standby.deliveries == []


async def test_a_runner_that_loses_its_lease_stops_processing_and_stands_by(
    any_store: EventStore,
) -> None:
    store = FaultInjectingStore(any_store)
    await _append(any_store, "a", 2)
    options = RunnerOptions(poll_interval=0.02, lease_ttl=0.3)
    async with ProjectionRunner(store, Recorder(), options=options, holder="one") as runner:
        await asyncio.wait_for(runner.caught_up(), 20)
        store.refuse_next_leases(1000)  # the renewal finds another holder
        await asyncio.wait_for(runner.wait_for_state(ProjectionState.STANDBY), 20)


# -- rebuild -------------------------------------------------------------------------------


async def test_rebuild_during_concurrent_writes_equals_a_replay(any_store: EventStore) -> None:
    store = _as_projection_store(any_store)
    await _append(any_store, "a", 20)
    projection = Recorder(fail_at=[4], policy=FailurePolicy.skip())
    async with ProjectionRunner(store, projection, options=FAST) as runner:
        await asyncio.wait_for(runner.caught_up(), 20)
    projection.fail_at.clear()
    projection.seen[999] = "stale"  # a read model gone wrong

    async def write() -> None:
        for n in range(15):
            await _append(any_store, f"w-{n % 3}")
            await asyncio.sleep(0)

    seen: list[tuple[int, int]] = []
    options = RunnerOptions(poll_interval=0.02, page_size=4)
    writer = asyncio.create_task(write())
    status = await asyncio.wait_for(
        rebuild_projection(
            store, projection, options=options, progress=lambda p, h: seen.append((p, h))
        ),
        30,
    )
    await writer
    assert projection.resets == 1
    assert status.position >= 20
    assert seen
    assert all(position <= head for position, head in seen)
    assert await store.dead_letters("recorder") == []
    async with ProjectionRunner(store, projection, options=FAST) as runner:
        await asyncio.wait_for(runner.caught_up(), 20)
    assert projection.seen == await _replay(any_store)


# -- status and bad input -------------------------------------------------------------------


async def test_status_reports_position_lag_and_holder(any_store: EventStore) -> None:
    store = _as_projection_store(any_store)
    await _append(any_store, "a", 4)
    await store.save_checkpoint("recorder", 1)
    status = await projection_status(store, "recorder")
    assert (status.position, status.head, status.lag, status.state) == (1, 4, 3, None)
    assert status.lag_seconds >= 0
    async with ProjectionRunner(store, Recorder(), options=FAST, holder="me") as runner:
        await asyncio.wait_for(runner.caught_up(), 20)
        status = await runner.status()
    assert (status.position, status.lag, status.lag_seconds) == (4, 0, 0.0)
    assert (status.state, status.lease_holder) == (ProjectionState.LIVE, "me")


async def test_status_of_a_projection_that_never_ran_names_it(any_store: EventStore) -> None:
    with pytest.raises(ValidationError, match="'nobody'"):
        await projection_status(_as_projection_store(any_store), "nobody")


async def test_a_checkpoint_past_the_head_fails_naming_both(any_store: EventStore) -> None:
    store = _as_projection_store(any_store)
    await _append(any_store, "a", 3)
    await store.save_checkpoint("recorder", 50)
    runner = ProjectionRunner(store, Recorder(), options=FAST)
    with pytest.raises(ProjectionFailed, match="checkpoint 50 is past the log's head 3"):
        await asyncio.wait_for(runner.run(), 20)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Recorder(""), "name"),
        (lambda: Recorder("  "), "name"),
        (lambda: Recorder("x" * 201), "name"),
        (lambda: Recorder("bad\x00name"), "NUL"),
        (lambda: Recorder(stream_prefix=""), "stream_prefix"),
    ],
)
async def test_a_bad_projection_is_refused_naming_the_value(
    any_store: EventStore, make: object, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        ProjectionRunner(_as_projection_store(any_store), make(), options=FAST)  # type: ignore[operator]


@pytest.mark.parametrize("ttl", [0, -1, 10**9, float("nan"), "5"])
def test_a_lease_ttl_out_of_range_is_refused(ttl: object) -> None:
    with pytest.raises(ValidationError, match="ttl"):
        RunnerOptions(lease_ttl=ttl)  # type: ignore[arg-type]


def test_a_projection_without_a_name_is_refused() -> None:
    class Nameless(Projection):
        async def handle(self, event: RecordedEvent) -> None: ...

        async def reset(self) -> None: ...

    from eventcore.backends.memory import InMemoryEventStore

    with pytest.raises(ValidationError, match=r"Nameless\.name"):
        ProjectionRunner(InMemoryEventStore(), Nameless())
