"""Prometheus metrics for eventcore (the ``metrics`` extra: ``prometheus_client``).

::

    registry = CollectorRegistry()
    app = Application(store, observers=[PrometheusObserver(registry)])

The metrics go on the registry given (a fresh one by default, never the global
registry unless it is passed). Labels are bounded: command type names, outcomes,
store operation names, projection names; stream ids never. See
docs/operations.md for the full list.
"""

from __future__ import annotations

import time
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from eventcore.observe import CommandReport, Observer, RecentStreams
from eventcore.performance import process_memory_bytes

__all__ = ["PrometheusObserver"]

# Commands and store calls run from well under a millisecond (memory) to seconds
# (a loaded database): the default buckets stop too early at the low end.
LATENCY_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class PrometheusObserver(Observer):
    """An observer that keeps eventcore's metrics on a Prometheus registry.

    ``active_window`` is how recent a write must be for its stream to count as
    active (seconds); at most ``max_tracked_streams`` are remembered for that.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "eventcore",
        active_window: float = 60.0,
        max_tracked_streams: int = 100_000,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._recent = RecentStreams(active_window, max_tracked_streams, time.monotonic)
        registry = self.registry
        self.commands = Counter(
            "commands",
            "Commands executed, by type and outcome",
            ["command", "outcome"],
            namespace=namespace,
            registry=registry,
        )
        self.command_seconds = Histogram(
            "command_duration_seconds",
            "Time from start to outcome of a command, retries included",
            ["command"],
            buckets=LATENCY_BUCKETS,
            namespace=namespace,
            registry=registry,
        )
        self.events = Counter(
            "events_written", "Events appended by commands", namespace=namespace, registry=registry
        )
        self.conflicts = Counter(
            "version_conflicts_retried",
            "Version conflicts after which a command ran again",
            namespace=namespace,
            registry=registry,
        )
        self.store_seconds = Histogram(
            "store_operation_duration_seconds",
            "Time of a store call, by operation",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            namespace=namespace,
            registry=registry,
        )
        self.store_errors = Counter(
            "store_operation_errors",
            "Store calls that raised, by operation",
            ["operation"],
            namespace=namespace,
            registry=registry,
        )
        self.batch_size = Histogram(
            "group_commit_batch_size",
            "Appends sent in one group-commit transaction",
            buckets=BATCH_BUCKETS,
            namespace=namespace,
            registry=registry,
        )
        self.projection_position = Gauge(
            "projection_position",
            "Last log position a projection handled",
            ["projection"],
            namespace=namespace,
            registry=registry,
        )
        self.projection_lag = Gauge(
            "projection_lag_events",
            "Events in the log a projection has not handled yet",
            ["projection"],
            namespace=namespace,
            registry=registry,
        )
        self.projection_failures = Counter(
            "projection_failures",
            "Failures of a projection's handler",
            ["projection"],
            namespace=namespace,
            registry=registry,
        )
        active = Gauge(
            "active_streams",
            f"Streams written within the last {active_window:g} s (at most "
            f"{max_tracked_streams} tracked)",
            namespace=namespace,
            registry=registry,
        )
        active.set_function(lambda: float(self._recent.count()))
        memory = Gauge(
            "process_memory_bytes",
            "Resident memory of this process",
            namespace=namespace,
            registry=registry,
        )
        memory.set_function(lambda: float(process_memory_bytes()))

        # labels() takes a lock and builds a key on every call: keep each child once
        # (the label values are bounded, so these dicts are too).
        self._command_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._store_children: dict[str, Any] = {}

    def command_executed(self, report: CommandReport) -> None:
        key = (report.command_type, report.outcome)
        children = self._command_children.get(key)
        if children is None:
            children = self._command_children[key] = (
                self.commands.labels(*key),
                self.command_seconds.labels(report.command_type),
            )
        children[0].inc()
        children[1].observe(report.seconds)

    def conflict_retried(self, stream_id: str, attempt: int, delay: float) -> None:
        self.conflicts.inc()

    def events_appended(self, stream_ids: tuple[str, ...], count: int) -> None:
        self.events.inc(count)
        self._recent.touch(stream_ids)

    def store_operation(self, operation: str, seconds: float, error: Exception | None) -> None:
        child = self._store_children.get(operation)
        if child is None:
            child = self._store_children[operation] = self.store_seconds.labels(operation)
        child.observe(seconds)
        if error is not None:
            self.store_errors.labels(operation).inc()

    def batch_committed(self, size: int) -> None:
        self.batch_size.observe(size)

    def projection_advanced(self, name: str, position: int, head: int) -> None:
        self.projection_position.labels(name).set(position)
        self.projection_lag.labels(name).set(max(0, head - position))

    def projection_failed(self, name: str, position: int, error: Exception) -> None:
        self.projection_failures.labels(name).inc()
