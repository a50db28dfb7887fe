"""Observers: what the executor, the store wrapper and group commit report."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventcore import (
    Application,
    BusinessRuleViolation,
    InMemoryEventStore,
    RetriesExhausted,
    RetryPolicy,
    SQLiteEventStore,
    StoreClosed,
    ValidationError,
    execute,
    execute_all,
)
from eventcore.demo.bank import Deposit, Transfer, bank_codec
from eventcore.observe import (
    CommandReport,
    Observer,
    ObserverGroup,
    RecentStreams,
    report_command,
)
from eventcore.observed_store import observe_store
from eventcore.store import (
    BatchAppender,
    CheckpointStore,
    EventStore,
    LeaseStore,
    SnapshotStore,
)
from eventcore.subscription import AppendWaiter
from eventcore.testing.faults import FaultInjectingStore


class Recorder(Observer):
    def __init__(self) -> None:
        self.commands: list[CommandReport] = []
        self.retries: list[tuple[str, int, float]] = []
        self.appended: list[tuple[tuple[str, ...], int]] = []
        self.operations: list[tuple[str, Exception | None]] = []
        self.batches: list[int] = []

    def command_executed(self, report: CommandReport) -> None:
        self.commands.append(report)

    def conflict_retried(self, stream_id: str, attempt: int, delay: float) -> None:
        self.retries.append((stream_id, attempt, delay))

    def events_appended(self, stream_ids: tuple[str, ...], count: int) -> None:
        self.appended.append((stream_ids, count))

    def store_operation(self, operation: str, seconds: float, error: Exception | None) -> None:
        assert seconds >= 0
        self.operations.append((operation, error))

    def batch_committed(self, size: int) -> None:
        self.batches.append(size)


class Broken(Observer):
    def command_executed(self, report: CommandReport) -> None:
        raise RuntimeError("observer bug")


async def test_execute_reports_a_successful_command_with_its_type_attempts_and_events() -> None:
    recorder = Recorder()
    store = InMemoryEventStore()
    await execute(store, Deposit("alice", 30), codec=bank_codec, observer=recorder)
    await execute(store, Transfer("alice", "bob", 10), codec=bank_codec, observer=recorder)
    assert [(r.command_type, r.outcome, r.attempts, r.events) for r in recorder.commands] == [
        ("Deposit", "success", 1, 1),
        ("Transfer", "success", 1, 2),
    ]
    assert recorder.appended == [(("alice",), 1), (("alice", "bob"), 2)]


async def test_a_rejected_command_is_reported_as_rejected_and_still_raises() -> None:
    recorder = Recorder()
    with pytest.raises(BusinessRuleViolation):
        await execute(
            InMemoryEventStore(), Transfer("alice", "bob", 10), codec=bank_codec, observer=recorder
        )
    assert [(r.outcome, r.attempts, r.events) for r in recorder.commands] == [("rejected", 1, 0)]
    assert recorder.appended == []


async def test_each_retried_conflict_is_reported_with_stream_attempt_and_delay() -> None:
    recorder = Recorder()
    store = FaultInjectingStore(InMemoryEventStore())
    store.conflict_next_appends(2)
    retry = RetryPolicy.fixed(0.001, max_retries=3)
    await execute(store, Deposit("alice", 5), codec=bank_codec, retry=retry, observer=recorder)
    assert [(stream, attempt) for stream, attempt, _ in recorder.retries] == [
        ("alice", 1),
        ("alice", 2),
    ]
    assert all(delay == pytest.approx(0.001) for _, _, delay in recorder.retries)
    assert [(r.outcome, r.attempts) for r in recorder.commands] == [("success", 3)]


async def test_exhausted_retries_are_reported_as_a_conflict_outcome() -> None:
    recorder = Recorder()
    store = FaultInjectingStore(InMemoryEventStore())
    store.conflict_next_appends(5)
    retry = RetryPolicy.fixed(0, max_retries=1)
    with pytest.raises(RetriesExhausted):
        await execute(store, Deposit("alice", 5), codec=bank_codec, retry=retry, observer=recorder)
    assert len(recorder.retries) == 1
    assert [(r.outcome, r.attempts) for r in recorder.commands] == [("conflict", 2)]


async def test_a_store_error_is_reported_as_an_error_outcome() -> None:
    recorder = Recorder()
    store = InMemoryEventStore()
    await store.close()
    with pytest.raises(StoreClosed):
        await execute(store, Deposit("alice", 5), codec=bank_codec, observer=recorder)
    assert [r.outcome for r in recorder.commands] == ["error"]


async def test_retries_are_logged_at_debug_with_the_stream_and_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FaultInjectingStore(InMemoryEventStore())
    store.conflict_next_appends(1)
    with caplog.at_level(logging.DEBUG, logger="eventcore.execute"):
        await execute(store, Deposit("alice", 5), codec=bank_codec, retry=RetryPolicy.fixed(0))
    [record] = [r for r in caplog.records if r.name == "eventcore.execute"]
    assert record.levelno == logging.DEBUG
    assert "'alice'" in record.getMessage()
    assert "attempt 1" in record.getMessage()


async def test_nothing_is_logged_at_info_for_ordinary_commands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Application(InMemoryEventStore(), codec=bank_codec, observers=[Recorder()])
    with caplog.at_level(logging.INFO, logger="eventcore"):
        for _ in range(5):
            await app.execute(Deposit("alice", 5))
    assert caplog.records == []


async def test_an_observer_that_raises_never_breaks_a_command_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    group = ObserverGroup([Broken(), recorder])
    store = InMemoryEventStore()
    with caplog.at_level(logging.ERROR, logger="eventcore.observe"):
        for _ in range(3):
            await execute(store, Deposit("alice", 1), codec=bank_codec, observer=group)
    assert await store.stream_version("alice") == 3
    assert len(recorder.commands) == 3  # the observer after the broken one still hears
    assert group.failures == {("Broken", "command_executed"): 3}
    assert len([r for r in caplog.records if "Broken" in r.getMessage()]) == 1


async def test_a_single_observer_passed_to_execute_is_made_safe_too() -> None:
    store = InMemoryEventStore()
    result = await execute(store, Deposit("alice", 1), codec=bank_codec, observer=Broken())
    assert result.events_written == 1


def test_something_that_is_not_an_observer_is_refused_with_its_value() -> None:
    with pytest.raises(ValidationError, match="print"):
        ObserverGroup([print])  # type: ignore[list-item]


async def test_execute_refuses_an_observer_of_the_wrong_type() -> None:
    with pytest.raises(ValidationError, match="observer="):
        await execute(InMemoryEventStore(), Deposit("a", 1), observer="log")  # type: ignore[arg-type]


async def test_execute_all_reports_every_command_of_the_batch() -> None:
    recorder = Recorder()
    store = InMemoryEventStore()
    commands = [Deposit(f"account-{n % 3}", 1) for n in range(10)]
    await execute_all(store, commands, concurrency=4, codec=bank_codec, observer=recorder)
    assert len(recorder.commands) == 10
    assert {r.outcome for r in recorder.commands} == {"success"}


async def test_the_application_reports_commands_and_store_operations(
    any_store: EventStore,
) -> None:
    recorder = Recorder()
    app = Application(any_store, codec=bank_codec, observers=[recorder])
    await app.execute(Deposit("alice", 30))
    outcomes = await app.execute_all([Transfer("alice", "bob", 10)])
    assert not isinstance(outcomes[0], Exception)
    assert [r.command_type for r in recorder.commands] == ["Deposit", "Transfer"]
    operations = {name for name, _ in recorder.operations}
    assert {"read_streams", "append"} <= operations
    assert await app.store.head_position() == 3
    assert ("head_position", None) in recorder.operations


async def test_an_application_without_observers_keeps_its_store_unwrapped() -> None:
    store = InMemoryEventStore()
    app = Application(store)
    assert app.store is store
    assert app.observer is None


def test_the_application_refuses_a_lone_observer_in_place_of_a_list() -> None:
    with pytest.raises(ValidationError, match="list of Observer"):
        Application(InMemoryEventStore(), observers=Recorder())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "capability", [BatchAppender, SnapshotStore, CheckpointStore, LeaseStore, AppendWaiter]
)
async def test_the_observed_store_has_exactly_the_capabilities_of_the_store_it_wraps(
    capability: type,
) -> None:
    full = InMemoryEventStore()
    bare = FaultInjectingStore(full)  # reads, appends and snapshots only
    assert isinstance(observe_store(full, Recorder()), capability) == isinstance(full, capability)
    assert isinstance(observe_store(bare, Recorder()), capability) == isinstance(bare, capability)


async def test_the_observed_store_times_checkpoints_leases_and_snapshots() -> None:
    recorder = Recorder()
    store = observe_store(InMemoryEventStore(), recorder)
    assert isinstance(store, CheckpointStore)
    assert isinstance(store, LeaseStore)
    await store.save_checkpoint("projection", 3)
    assert await store.load_checkpoint("projection") == 3
    assert await store.acquire_lease("runner", "me", 10)
    assert await store.lease_holder("runner") == "me"
    await store.release_lease("runner", "me")
    assert [name for name, _ in recorder.operations] == [
        "save_checkpoint",
        "load_checkpoint",
        "acquire_lease",
        "lease_holder",
        "release_lease",
    ]


async def test_a_failed_store_call_is_reported_with_its_error_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    inner = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    store = observe_store(inner, recorder)
    await store.close()
    with caplog.at_level(logging.WARNING, logger="eventcore.store"), pytest.raises(StoreClosed):
        await store.read_stream("alice")
    [(operation, error)] = recorder.operations
    assert operation == "read_stream"
    assert isinstance(error, StoreClosed)
    [record] = caplog.records
    assert "read_stream" in record.getMessage()
    assert "'alice'" in record.getMessage()


async def test_group_commit_reports_each_batch_size(tmp_path: Path) -> None:
    recorder = Recorder()
    inner = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    async with observe_store(inner, recorder) as store:
        commands = [Deposit(f"account-{n}", 1) for n in range(20)]
        outcomes = await execute_all(store, commands, concurrency=20, codec=bank_codec)
    assert not [o for o in outcomes if isinstance(o, Exception)]
    assert sum(recorder.batches) == 20
    assert len(recorder.batches) == inner._committer.batches  # type: ignore[union-attr]


def test_recent_streams_forget_streams_outside_the_window() -> None:
    now = [0.0]
    recent = RecentStreams(window=10, clock=lambda: now[0])
    recent.touch(["a", "b"])
    now[0] = 5
    recent.touch(["b", "c"])
    assert recent.count() == 3
    now[0] = 12
    assert recent.count() == 2  # "a" was last touched at 0
    now[0] = 16
    assert recent.count() == 0


def test_recent_streams_count_a_touch_from_the_time_it_was_recorded() -> None:
    now = [100.0]
    recent = RecentStreams(window=10, clock=lambda: now[0])
    # Timed earlier, recorded late: "a" is already outside the window.
    recent.touch_each([["a"], ["b", "c"]], [85.0, 95.0])
    assert recent.count() == 2
    recent.touch(["a"])
    assert recent.count() == 3
    now[0] = 106
    assert recent.count() == 1


def test_recent_streams_remember_at_most_their_capacity() -> None:
    recent = RecentStreams(window=60, capacity=100)
    recent.touch(f"stream-{n}" for n in range(1000))
    assert recent.count() == 100


async def test_the_store_is_wrapped_only_when_an_observer_listens_to_store_calls() -> None:
    class CommandsOnly(Observer):
        def command_executed(self, report: CommandReport) -> None:
            pass

    store = InMemoryEventStore()
    assert Application(store, observers=[CommandsOnly()]).store is store
    assert Application(store, observers=[Recorder()]).store is not store


def test_the_executors_quick_report_equals_the_one_its_constructor_builds() -> None:
    args = ("Deposit", "success", 2, 0.25, 1, 3)
    quick = report_command(*args)  # type: ignore[arg-type]
    assert quick == CommandReport(*args)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        quick.outcome = "error"  # type: ignore[misc]  # still frozen


@given(
    writes=st.lists(
        st.tuples(
            st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=3),
            st.floats(min_value=0, max_value=5, allow_nan=False),
        ),
        max_size=60,
    ),
    capacity=st.integers(min_value=1, max_value=10),
)
def test_recent_streams_touched_in_bulk_end_as_touched_one_by_one(
    writes: list[tuple[list[str], float]], capacity: int
) -> None:
    writes = sorted(writes, key=lambda write: write[1])  # in the order they were timed
    bulk = RecentStreams(window=10, capacity=capacity)
    bulk.touch_each([streams for streams, _ in writes], [when for _, when in writes])
    now = [0.0]
    single = RecentStreams(window=10, capacity=capacity, clock=lambda: now[0])
    for streams, when in writes:
        now[0] = when
        single.touch(streams)
    # The same streams, with the same times, oldest touch first.
    assert list(bulk._seen.items()) == list(single._seen.items())
