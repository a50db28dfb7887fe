"""PerformanceMetrics (a live snapshot) and PerformanceTargets (what it should meet)."""

from __future__ import annotations

import pytest

from eventcore import Application, InMemoryEventStore, ValidationError
from eventcore.demo.bank import Deposit, bank_codec
from eventcore.observe import CommandReport
from eventcore.performance import (
    PerformanceMetrics,
    PerformanceSnapshot,
    PerformanceTargets,
    process_memory_bytes,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def report(ms: float, events: int = 1, outcome: str = "success") -> CommandReport:
    return CommandReport("Deposit", outcome, 1, ms / 1000, events)  # type: ignore[arg-type]


def snapshot(**figures: float | None) -> PerformanceSnapshot:
    base: dict[str, float | None] = {
        "commands_per_second": 500.0,
        "events_per_second": 5000.0,
        "latency_p50_ms": 2.0,
        "latency_p95_ms": 10.0,
        "latency_p99_ms": 20.0,
        "memory_mb": 100.0,
        "cpu_percent": 10.0,
    }
    base.update(figures)
    return PerformanceSnapshot(
        at=0.0,
        window_seconds=60.0,
        commands=100,
        latency_avg_ms=3.0,
        active_streams=1,
        failed_commands=0,
        **base,  # type: ignore[arg-type]
    )


def test_a_snapshot_gives_throughput_and_latency_percentiles_over_the_window() -> None:
    clock = Clock()
    metrics = PerformanceMetrics(window=10, clock=clock)
    clock.now += 10  # the process has been up for the whole window
    for ms in range(1, 101):  # 1 ms .. 100 ms, 2 events each
        metrics.command_executed(report(ms, events=2))
    snap = metrics.snapshot()
    assert snap.commands == 100
    assert snap.commands_per_second == pytest.approx(10.0)
    assert snap.events_per_second == pytest.approx(20.0)
    assert snap.latency_p50_ms == pytest.approx(50.0)
    assert snap.latency_p95_ms == pytest.approx(95.0)
    assert snap.latency_p99_ms == pytest.approx(99.0)
    assert snap.latency_avg_ms == pytest.approx(50.5)


def test_commands_older_than_the_window_drop_out_of_the_snapshot() -> None:
    clock = Clock()
    metrics = PerformanceMetrics(window=10, clock=clock)
    metrics.command_executed(report(5))
    clock.now += 11
    snap = metrics.snapshot()
    assert snap.commands == 0
    assert snap.latency_p50_ms is None


def test_a_snapshot_counts_failed_commands_active_streams_and_projection_lag() -> None:
    metrics = PerformanceMetrics()
    metrics.command_executed(report(1, outcome="error"))
    metrics.events_appended(("a", "b"), 2)
    metrics.projection_advanced("balances", 40, 100)
    snap = metrics.snapshot()
    assert snap.failed_commands == 1
    assert snap.active_streams == 2
    assert snap.projection_lag == {"balances": 60}
    assert snap.memory_mb == pytest.approx(process_memory_bytes() / 2**20, rel=0.5)


async def test_the_metrics_hear_an_applications_commands() -> None:
    metrics = PerformanceMetrics()
    app = Application(InMemoryEventStore(), codec=bank_codec, observers=[metrics])
    for _ in range(10):
        await app.execute(Deposit("alice", 1))
    snap = metrics.snapshot()
    assert snap.commands == 10
    assert snap.active_streams == 1
    assert snap.latency_p99_ms is not None


def test_the_production_targets_are_the_agreed_figures() -> None:
    targets = PerformanceTargets.production()
    assert targets.as_dict() == {
        "min_commands_per_second": 100.0,
        "min_events_per_second": 1000.0,
        "max_p50_ms": 10.0,
        "max_p95_ms": 50.0,
        "max_p99_ms": 100.0,
        "max_memory_mb": 1024.0,
        "max_cpu_percent": 70.0,
    }


def test_development_targets_are_looser_than_production_everywhere() -> None:
    dev, prod = (
        PerformanceTargets.development().as_dict(),
        PerformanceTargets.production().as_dict(),
    )
    for name in prod:
        looser = dev[name] < prod[name] if name.startswith("min") else dev[name] > prod[name]
        assert looser, name


def test_a_snapshot_within_every_target_meets_them_all() -> None:
    report_ = PerformanceTargets.production().check(snapshot())
    assert report_.ok
    assert {c.status for c in report_.checks} == {"met"}


def test_a_check_names_the_missed_target_and_by_how_much() -> None:
    report_ = PerformanceTargets.production().check(
        snapshot(latency_p95_ms=80.0, commands_per_second=40.0)
    )
    missed = {c.name: c for c in report_.missed}
    assert set(missed) == {"latency_p95_ms", "commands_per_second"}
    assert missed["latency_p95_ms"].margin == pytest.approx(-30.0)
    assert missed["commands_per_second"].margin == pytest.approx(-60.0)
    text = missed["latency_p95_ms"].describe()
    assert "80" in text
    assert "< 50 ms" in text
    assert "by 30 ms" in text


def test_throughput_is_not_judged_over_an_idle_window() -> None:
    idle = PerformanceMetrics().snapshot()
    checks = {c.name: c for c in PerformanceTargets.production().check(idle).checks}
    assert checks["commands_per_second"].status == "no data"
    assert checks["latency_p50_ms"].status == "no data"
    assert checks["memory_mb"].status in ("met", "missed")


def test_a_target_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(ValidationError, match="max_p50_ms"):
        PerformanceTargets(max_p50_ms=float("nan"))
