"""Prometheus metrics, read back through the registry after known work."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from eventcore import (
    Application,
    BusinessRuleViolation,
    InMemoryEventStore,
    RetryPolicy,
    SQLiteEventStore,
    StoreError,
)
from eventcore.demo.bank import Deposit, Transfer, bank_codec
from eventcore.execute import execute
from eventcore.observe import CommandReport, ObserverGroup
from eventcore.observed_store import ObservedStore, observe_store
from eventcore.prometheus import _FOLD_AT, LATENCY_BUCKETS, PrometheusObserver, _Histogram
from eventcore.testing.faults import FaultInjectingStore
from eventcore.types import AppendRequest, AppendResult

# How the exposition writes a bucket's bound ("0.0001", "+Inf"); untyped there.
_bound = cast("Callable[[float], str]", floatToGoString)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    assert found is not None, f"no sample {name} {labels}"
    return found


async def test_ten_commands_count_ten_and_fill_the_latency_histogram_ten_times() -> None:
    registry = CollectorRegistry()
    app = Application(
        InMemoryEventStore(), codec=bank_codec, observers=[PrometheusObserver(registry)]
    )
    for n in range(10):
        await app.execute(Deposit(f"account-{n % 4}", 1))
    ok = {"command": "Deposit", "outcome": "success"}
    assert value(registry, "eventcore_commands_total", **ok) == 10
    assert value(registry, "eventcore_command_duration_seconds_count", command="Deposit") == 10
    assert value(registry, "eventcore_events_written_total") == 10
    assert value(registry, "eventcore_active_streams") == 4
    assert value(registry, "eventcore_process_memory_bytes") > 0
    appends = value(
        registry, "eventcore_store_operation_duration_seconds_count", operation="append"
    )
    assert appends == 10


async def test_outcomes_and_retried_conflicts_are_counted_apart() -> None:
    registry = CollectorRegistry()
    store = FaultInjectingStore(InMemoryEventStore())
    app = Application(
        store,
        codec=bank_codec,
        retry=RetryPolicy.fixed(0),
        observers=[PrometheusObserver(registry)],
    )
    store.conflict_next_appends(2)
    await app.execute(Deposit("alice", 5))
    with pytest.raises(BusinessRuleViolation):
        await app.execute(Transfer("alice", "bob", 50))
    assert value(registry, "eventcore_version_conflicts_retried_total") == 2
    assert value(registry, "eventcore_commands_total", command="Transfer", outcome="rejected") == 1
    assert value(registry, "eventcore_commands_total", command="Deposit", outcome="success") == 1


async def test_group_commit_batch_sizes_are_observed(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    async with Application(
        store, codec=bank_codec, observers=[PrometheusObserver(registry)]
    ) as app:
        await app.execute_all([Deposit(f"a-{n}", 1) for n in range(12)], concurrency=12)
    assert value(registry, "eventcore_group_commit_batch_size_sum") == 12


def test_projection_position_and_lag_are_gauges_by_projection() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    observer.projection_advanced("balances", 70, 100)
    assert value(registry, "eventcore_projection_position", projection="balances") == 70
    assert value(registry, "eventcore_projection_lag_events", projection="balances") == 30


async def test_no_label_ever_carries_a_stream_id() -> None:
    registry = CollectorRegistry()
    app = Application(
        InMemoryEventStore(), codec=bank_codec, observers=[PrometheusObserver(registry)]
    )
    await app.execute(Deposit("stream-id-that-must-not-leak", 1))
    assert b"stream-id-that-must-not-leak" not in generate_latest(registry)


def test_each_observer_gets_a_fresh_registry_by_default() -> None:
    # Two observers on the global registry would collide on the metric names.
    first, second = PrometheusObserver(), PrometheusObserver()
    assert first.registry is not second.registry


async def test_a_running_projection_reports_its_position_lag_and_failures() -> None:
    from eventcore import Application, InMemoryEventStore
    from eventcore.demo.bank import Deposit, bank_codec
    from eventcore.projection import FailurePolicy, Projection, RunnerOptions
    from eventcore.types import RecordedEvent

    class Balances(Projection):
        name = "balances"
        failure_policy = FailurePolicy.skip()

        async def handle(self, event: RecordedEvent) -> None:
            if event.global_position == 2:
                raise ValueError("cannot project position 2")

        async def reset(self) -> None:
            pass

    observer = PrometheusObserver()
    app = Application(InMemoryEventStore(), codec=bank_codec, observers=[observer])
    for n in range(5):
        await app.execute(Deposit(f"acc-{n}", 10))
    options = RunnerOptions(poll_interval=0.02, checkpoint_every=2)
    async with app.projection_runner(Balances(), options=options) as runner:
        assert await asyncio.wait_for(runner.caught_up(), 20) == 5
    registry = observer.registry
    labels = {"projection": "balances"}
    assert registry.get_sample_value("eventcore_projection_position", labels) == 5
    assert registry.get_sample_value("eventcore_projection_lag_events", labels) == 0
    assert registry.get_sample_value("eventcore_projection_failures_total", labels) == 1


def test_a_store_call_on_a_bucket_bound_counts_in_that_bucket_and_every_later_one() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    observer.store_operation("append", 0.001, None)
    observer.store_operation("append", 0.003, None)
    name = "eventcore_store_operation_duration_seconds_bucket"
    assert value(registry, name, operation="append", le="0.0005") == 0
    assert value(registry, name, operation="append", le="0.001") == 1
    assert value(registry, name, operation="append", le="0.0025") == 1
    assert value(registry, name, operation="append", le="0.005") == 2
    assert value(registry, name, operation="append", le="+Inf") == 2
    assert value(
        registry, "eventcore_store_operation_duration_seconds_sum", operation="append"
    ) == (pytest.approx(0.004))


def test_store_errors_are_counted_by_operation_beside_their_latency() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    observer.store_operation("read_streams", 0.01, OSError("gone"))
    observer.store_operation("read_streams", 0.01, None)
    assert value(registry, "eventcore_store_operation_errors_total", operation="read_streams") == 1
    count = "eventcore_store_operation_duration_seconds_count"
    assert value(registry, count, operation="read_streams") == 2


async def test_the_exposition_parses_with_every_metric_typed_and_described() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    app = Application(InMemoryEventStore(), codec=bank_codec, observers=[observer])
    await app.execute(Deposit("alice", 1))
    observer.projection_failed("balances", 1, ValueError("bad event"))
    observer.projection_advanced("balances", 1, 1)
    text = generate_latest(registry).decode()
    # The text format shows each counter's and histogram's _created series as a gauge.
    families = {
        family.name: family
        for family in text_string_to_metric_families(text)
        if not family.name.endswith("_created")
    }
    assert {name: family.type for name, family in families.items()} == {
        "eventcore_commands": "counter",
        "eventcore_command_duration_seconds": "histogram",
        "eventcore_events_written": "counter",
        "eventcore_version_conflicts_retried": "counter",
        "eventcore_store_operation_duration_seconds": "histogram",
        "eventcore_store_operation_errors": "counter",
        "eventcore_group_commit_batch_size": "histogram",
        "eventcore_projection_position": "gauge",
        "eventcore_projection_lag_events": "gauge",
        "eventcore_projection_failures": "counter",
        "eventcore_active_streams": "gauge",
        "eventcore_process_memory_bytes": "gauge",
    }
    assert all(family.documentation for family in families.values())


def test_a_second_observer_with_the_same_names_on_one_registry_is_refused() -> None:
    registry = CollectorRegistry()
    PrometheusObserver(registry)
    with pytest.raises(ValueError, match="eventcore_commands_total"):
        PrometheusObserver(registry)
    PrometheusObserver(registry, namespace="other")  # other names: welcome


# The per-command hooks buffer what they are told and fold it in at scrape time,
# or when a buffer fills: the values read must not depend on when that happens.


def _latency_buckets(registry: CollectorRegistry, operation: str) -> dict[str, float]:
    name = "eventcore_store_operation_duration_seconds_bucket"
    return {
        sample.labels["le"]: sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name and sample.labels["operation"] == operation
    }


async def test_commands_past_a_full_buffer_are_each_counted_once_however_often_scraped() -> None:
    registry = CollectorRegistry()
    app = Application(
        InMemoryEventStore(), codec=bank_codec, observers=[PrometheusObserver(registry)]
    )
    for n in range(1000):  # several buffers' worth
        await app.execute(Deposit(f"account-{n % 7}", 1))
        if n % 300 == 0:
            generate_latest(registry)  # a scrape in between folds what is buffered
    for _ in range(2):  # reading twice counts nothing twice
        assert value(
            registry, "eventcore_commands_total", command="Deposit", outcome="success"
        ) == (1000)
        assert value(registry, "eventcore_command_duration_seconds_count", command="Deposit") == (
            1000
        )
        assert value(registry, "eventcore_events_written_total") == 1000
        assert value(registry, "eventcore_active_streams") == 7
        count = "eventcore_store_operation_duration_seconds_count"
        assert value(registry, count, operation="append") == 1000
        assert value(registry, count, operation="read_streams") == 1000


@given(
    calls=st.lists(
        st.one_of(
            st.tuples(
                st.sampled_from(["append", "read_streams"]),
                st.floats(min_value=0, max_value=20, allow_nan=False),
                st.booleans(),
            ),
            st.none(),  # a scrape
        ),
        max_size=700,
    )
)
@settings(max_examples=30, deadline=None)
def test_store_latencies_read_the_same_whenever_scrapes_fold_them(
    calls: list[tuple[str, float, bool] | None],
) -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    for call in calls:
        if call is None:
            generate_latest(registry)
        else:
            operation, seconds, failed = call
            observer.store_operation(operation, seconds, OSError("gone") if failed else None)
    for operation in ("append", "read_streams"):
        mine = [call for call in calls if call is not None and call[0] == operation]
        if not mine:
            assert _latency_buckets(registry, operation) == {}
            continue
        bounds = [*LATENCY_BUCKETS, float("inf")]
        expected = {
            _bound(bound): float(sum(1 for _, seconds, _ in mine if seconds <= bound))
            for bound in bounds
        }
        assert _latency_buckets(registry, operation) == expected
        total = value(
            registry, "eventcore_store_operation_duration_seconds_sum", operation=operation
        )
        assert total == pytest.approx(sum(seconds for _, seconds, _ in mine))
        failures = sum(1 for _, _, failed in mine if failed)
        errors = registry.get_sample_value(
            "eventcore_store_operation_errors_total", {"operation": operation}
        )
        assert (errors or 0) == failures


def test_hooks_called_from_many_threads_during_scrapes_lose_and_double_count_nothing() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    report = CommandReport("Deposit", "success", 1, 0.002, 1, 1)
    threads, calls = 4, 5000
    start = threading.Barrier(threads + 1)

    def hammer(thread: int) -> None:
        start.wait()
        for n in range(calls):
            observer.command_executed(report)
            observer.events_appended((f"stream-{thread}-{n % 10}",), 1)
            observer.store_operation("append", 0.001, None)

    workers = [threading.Thread(target=hammer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    while any(worker.is_alive() for worker in workers):
        # Every scrape is consistent: a histogram's count is its +Inf bucket.
        samples = {
            (sample.name, sample.labels.get("le")): sample.value
            for family in registry.collect()
            for sample in family.samples
            if sample.name.startswith("eventcore_command_duration_seconds")
        }
        inf = samples.get(("eventcore_command_duration_seconds_bucket", "+Inf"))
        assert samples.get(("eventcore_command_duration_seconds_count", None)) == inf
    for worker in workers:
        worker.join()
    total = threads * calls
    ok = {"command": "Deposit", "outcome": "success"}
    assert value(registry, "eventcore_commands_total", **ok) == total
    assert value(registry, "eventcore_command_duration_seconds_count", command="Deposit") == total
    assert value(registry, "eventcore_events_written_total") == total
    assert value(registry, "eventcore_active_streams") == threads * 10
    count = "eventcore_store_operation_duration_seconds_count"
    assert value(registry, count, operation="append") == total


def test_a_lone_prometheus_observer_is_reported_to_without_the_group_guard() -> None:
    observer = PrometheusObserver()
    assert ObserverGroup([observer]).direct is observer
    group = ObserverGroup([observer, PrometheusObserver(namespace="other")])
    assert group.direct is group  # several members: the group calls each in turn


async def test_a_subclass_of_the_prometheus_observer_is_still_guarded() -> None:
    class Broken(PrometheusObserver):
        def command_executed(self, report: CommandReport) -> None:
            raise RuntimeError("broken hook")

    app = Application(InMemoryEventStore(), codec=bank_codec, observers=[Broken()])
    result = await app.execute(Deposit("alice", 1))
    assert result.events_written == 1
    assert app.observer is not None
    assert app.observer.direct is app.observer
    assert app.observer.failures == {
        (
            "test_a_subclass_of_the_prometheus_observer_is_still_guarded.<locals>.Broken",
            "command_executed",
        ): 1
    }


# -- the executor's recording of a successful command (ObserverGroup.recording) ---


class _HookedPrometheus(PrometheusObserver):
    """Overrides a hook, so the executor calls every hook one by one."""

    def command_executed(self, report: CommandReport) -> None:
        super().command_executed(report)


def _counts(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample that does not depend on timing: counters, histogram counts,
    active streams."""
    counts = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name.endswith(("_total", "_count")) or sample.name.endswith("active_streams"):
                counts[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return counts


async def _mixed_work(observer: PrometheusObserver) -> None:
    store = FaultInjectingStore(InMemoryEventStore())
    app = Application(store, codec=bank_codec, retry=RetryPolicy.fixed(0), observers=[observer])
    for n in range(10):
        await app.execute(Deposit(f"account-{n % 4}", 5))
    store.conflict_next_appends(2)
    await app.execute(Transfer("account-0", "account-1", 1))
    with pytest.raises(BusinessRuleViolation):
        await app.execute(Transfer("account-2", "account-3", 500))
    store.fail_next_appends(1)
    with pytest.raises(StoreError):
        await app.execute(Deposit("account-5", 1))
    store.fail_next_reads(1)
    with pytest.raises(StoreError):
        await app.execute(Deposit("account-6", 1))


async def test_the_one_call_report_counts_what_the_hooks_count() -> None:
    recorded, hooked = PrometheusObserver(), _HookedPrometheus()
    assert ObserverGroup([recorded]).recording is not None
    assert ObserverGroup([hooked]).recording is None
    await _mixed_work(recorded)
    await _mixed_work(hooked)
    counts = _counts(recorded.registry)
    assert counts == _counts(hooked.registry)
    # And the figures are the work's, not merely equal.
    assert (
        value(recorded.registry, "eventcore_commands_total", command="Deposit", outcome="success")
        == 10
    )
    assert (
        value(recorded.registry, "eventcore_commands_total", command="Deposit", outcome="error")
        == 2
    )
    assert value(recorded.registry, "eventcore_version_conflicts_retried_total") == 2
    assert value(recorded.registry, "eventcore_events_written_total") == 12
    errors = "eventcore_store_operation_errors_total"
    assert value(recorded.registry, errors, operation="append") == 3  # 2 conflicts, 1 failure
    assert value(recorded.registry, errors, operation="read_streams") == 1
    assert value(recorded.registry, "eventcore_active_streams") == 4


async def test_a_store_error_on_the_one_call_path_is_logged_with_its_streams(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FaultInjectingStore(InMemoryEventStore())
    observer = PrometheusObserver()
    app = Application(store, codec=bank_codec, observers=[observer])
    store.fail_next_appends(1)
    with caplog.at_level("WARNING", logger="eventcore.store"), pytest.raises(StoreError):
        await app.execute(Deposit("alice", 1))
    [line] = [r.getMessage() for r in caplog.records if r.name == "eventcore.store"]
    assert "append" in line
    assert "alice" in line
    errors = "eventcore_store_operation_errors_total"
    assert value(observer.registry, errors, operation="append") == 1
    # The read that succeeded before the failed append is still timed.
    count = "eventcore_store_operation_duration_seconds_count"
    assert value(observer.registry, count, operation="read_streams") == 1


async def test_a_store_observed_by_another_observer_keeps_reporting_to_it() -> None:
    other, prometheus = _HookedPrometheus(), PrometheusObserver()
    store = observe_store(InMemoryEventStore(), other)
    await execute(store, Deposit("alice", 1), codec=bank_codec, observer=prometheus)
    count = "eventcore_store_operation_duration_seconds_count"
    assert value(other.registry, count, operation="append") == 1
    assert value(prometheus.registry, "eventcore_events_written_total") == 1


async def test_an_observed_store_subclass_that_changes_append_is_called_as_it_is() -> None:
    seen: list[str] = []

    class Audited(ObservedStore):
        async def append(self, request: AppendRequest) -> AppendResult:
            seen.append("append")
            return await super().append(request)

    observer = PrometheusObserver()
    group = ObserverGroup([observer])
    store = Audited(InMemoryEventStore(), group.direct)
    await execute(store, Deposit("alice", 1), codec=bank_codec, observer=group)
    assert seen == ["append"]
    count = "eventcore_store_operation_duration_seconds_count"
    assert value(observer.registry, count, operation="append") == 1


@given(
    latencies=st.lists(st.floats(min_value=0, max_value=20, allow_nan=False), max_size=300),
    bounds=st.sampled_from([LATENCY_BUCKETS, (1.0, 2.0, 4.0)]),
)
def test_a_histogram_counts_the_same_in_bulk_as_value_by_value(
    latencies: list[float], bounds: tuple[float, ...]
) -> None:
    bulk, single = _Histogram(bounds), _Histogram(bounds)
    bulk.observe_all(list(latencies))
    for latency in latencies:
        single.observe(latency)
    assert bulk.counts == single.counts
    assert bulk.sum == pytest.approx(single.sum)


async def test_the_recording_is_folded_once_it_holds_a_fold_s_worth() -> None:
    observer = PrometheusObserver()
    app = Application(InMemoryEventStore(), codec=bank_codec, observers=[observer])
    recording = observer._recording
    for n in range(_FOLD_AT):
        await app.execute(Deposit(f"account-{n}", 1))
        assert len(recording.successes) == (n + 1) % _FOLD_AT  # folded at the last
    assert (recording.read_seconds, recording.append_seconds) == ([], [])
    assert recording.appends == []
    [[counter, histogram]] = observer._successes.values()
    assert counter.value == _FOLD_AT
    assert sum(histogram.counts) == _FOLD_AT
