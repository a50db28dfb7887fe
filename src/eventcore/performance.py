"""Live performance figures, and targets to hold them against.

::

    metrics = PerformanceMetrics()
    app = Application(store, observers=[metrics])
    ...
    snapshot = metrics.snapshot()
    report = PerformanceTargets.production().check(snapshot)
    for check in report.missed:
        print(check.describe())

:class:`PerformanceMetrics` is an observer: it keeps the commands of the last
``window`` seconds (at most ``max_samples`` of them) and turns them into a
:class:`PerformanceSnapshot` on demand: throughput, latency percentiles, memory,
CPU, active streams, projection lag. No third-party import.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from eventcore.errors import ValidationError
from eventcore.observe import CommandReport, Observer, RecentStreams


def process_memory_bytes() -> int:
    """The resident memory of this process (its peak where the current size
    cannot be read, as on macOS)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident_pages = int(statm.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes there, KiB here


@dataclass(frozen=True, slots=True)
class PerformanceSnapshot:
    """The figures of the last ``window_seconds``; latencies in milliseconds
    (``None`` when no command ran in the window)."""

    at: float  # time.time() when taken
    window_seconds: float
    commands: int
    commands_per_second: float
    events_per_second: float
    latency_avg_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    memory_mb: float
    cpu_percent: float
    active_streams: int
    failed_commands: int
    projection_lag: Mapping[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["projection_lag"] = dict(self.projection_lag)
        return data


def _percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ordered, non-empty list."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class PerformanceMetrics(Observer):
    """An observer keeping a sliding window of command latencies and writes."""

    def __init__(
        self,
        window: float = 60.0,
        *,
        max_samples: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(window, bool) or not isinstance(window, int | float) or not window > 0:
            raise ValidationError(f"window must be a positive number of seconds, got {window!r}")
        if type(max_samples) is not int or max_samples < 1:
            raise ValidationError(f"max_samples must be a positive int, got {max_samples!r}")
        self._window = float(window)
        self._clock = clock
        self._started = clock()
        # (time, seconds, events, failed) per command; bounded so a burst cannot grow it.
        self._commands: deque[tuple[float, float, int, bool]] = deque(maxlen=max_samples)
        self._streams = RecentStreams(self._window, max_samples, clock)
        self._lag: dict[str, int] = {}
        self._cpu_mark = (clock(), time.process_time())

    def command_executed(self, report: CommandReport) -> None:
        self._commands.append(
            (self._clock(), report.seconds, report.events, report.outcome == "error")
        )

    def events_appended(self, stream_ids: tuple[str, ...], count: int) -> None:
        self._streams.touch(stream_ids)

    def projection_advanced(self, name: str, position: int, head: int) -> None:
        self._lag[name] = max(0, head - position)

    def _cpu_percent(self, now: float) -> float:
        """CPU time this process used since the previous snapshot, per wall second."""
        cpu = time.process_time()
        then, cpu_then = self._cpu_mark
        self._cpu_mark = (now, cpu)
        return 100.0 * (cpu - cpu_then) / (now - then) if now > then else 0.0

    def snapshot(self) -> PerformanceSnapshot:
        now = self._clock()
        horizon = now - self._window
        samples = self._commands
        while samples and samples[0][0] < horizon:
            samples.popleft()
        # A process younger than the window has not had the whole window to work in.
        span = max(min(self._window, now - self._started), 1e-9)
        latencies = sorted(seconds * 1000 for _, seconds, _, _ in samples)
        events = sum(count for _, _, count, _ in samples)
        has = bool(latencies)
        return PerformanceSnapshot(
            at=time.time(),
            window_seconds=self._window,
            commands=len(latencies),
            commands_per_second=len(latencies) / span,
            events_per_second=events / span,
            latency_avg_ms=sum(latencies) / len(latencies) if has else None,
            latency_p50_ms=_percentile(latencies, 0.50) if has else None,
            latency_p95_ms=_percentile(latencies, 0.95) if has else None,
            latency_p99_ms=_percentile(latencies, 0.99) if has else None,
            memory_mb=process_memory_bytes() / 2**20,
            cpu_percent=self._cpu_percent(now),
            active_streams=self._streams.count(),
            failed_commands=sum(1 for *_, failed in samples if failed),
            projection_lag=dict(self._lag),
        )


Status = Literal["met", "missed", "no data"]


@dataclass(frozen=True, slots=True)
class TargetCheck:
    """One target against one figure. ``margin`` is how far the figure is on the
    good side of the limit (negative: by how much it misses), in the figure's unit."""

    name: str
    value: float | None
    limit: float
    kind: Literal["min", "max"]
    unit: str
    status: Status
    margin: float | None

    def describe(self) -> str:
        if self.value is None:
            return f"{self.name}: no data (target {self._bound()})"
        verdict = "meets" if self.status == "met" else "misses"
        return (
            f"{self.name}: {self.value:.4g} {self.unit} {verdict} the target {self._bound()} "
            f"by {abs(self.margin or 0.0):.4g} {self.unit}"
        )

    def _bound(self) -> str:
        return f"{'>=' if self.kind == 'min' else '<'} {self.limit:g} {self.unit}"


@dataclass(frozen=True, slots=True)
class TargetReport:
    checks: tuple[TargetCheck, ...]

    @property
    def missed(self) -> tuple[TargetCheck, ...]:
        return tuple(c for c in self.checks if c.status == "missed")

    @property
    def ok(self) -> bool:
        return not self.missed


# (target field, snapshot field, kind, unit)
_TARGETS: tuple[tuple[str, str, Literal["min", "max"], str], ...] = (
    ("min_commands_per_second", "commands_per_second", "min", "commands/s"),
    ("min_events_per_second", "events_per_second", "min", "events/s"),
    ("max_p50_ms", "latency_p50_ms", "max", "ms"),
    ("max_p95_ms", "latency_p95_ms", "max", "ms"),
    ("max_p99_ms", "latency_p99_ms", "max", "ms"),
    ("max_memory_mb", "memory_mb", "max", "MB"),
    ("max_cpu_percent", "cpu_percent", "max", "%"),
)


@dataclass(frozen=True, slots=True)
class PerformanceTargets:
    """Limits a snapshot should stay within.

    Throughput minimums measure capacity: they are judged only over a window in
    which commands ran ("no data" otherwise), and mean something only under load.
    """

    min_commands_per_second: float = 100.0
    min_events_per_second: float = 1000.0
    max_p50_ms: float = 10.0
    max_p95_ms: float = 50.0
    max_p99_ms: float = 100.0
    max_memory_mb: float = 1024.0
    max_cpu_percent: float = 70.0

    def __post_init__(self) -> None:
        for name, *_ in _TARGETS:
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value >= 0)
            ):
                raise ValidationError(f"{name} must be a finite number >= 0, got {value!r}")

    @classmethod
    def production(cls) -> PerformanceTargets:
        """>= 100 commands/s, >= 1,000 events/s, p50 < 10 ms, p95 < 50 ms,
        p99 < 100 ms, < 1 GB memory, < 70 % CPU."""
        return cls()

    @classmethod
    def development(cls) -> PerformanceTargets:
        """For a laptop, a debugger, SQLite on a slow disk: >= 10 commands/s,
        >= 100 events/s, p50 < 50 ms, p95 < 250 ms, p99 < 500 ms, < 2 GB memory,
        < 90 % CPU."""
        return cls(10.0, 100.0, 50.0, 250.0, 500.0, 2048.0, 90.0)

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name, *_ in _TARGETS}

    def check(self, snapshot: PerformanceSnapshot) -> TargetReport:
        """Which targets ``snapshot`` meets, misses, or has no figure for."""
        checks = []
        for name, figure, kind, unit in _TARGETS:
            limit = float(getattr(self, name))
            value: float | None = getattr(snapshot, figure)
            if kind == "min" and snapshot.commands == 0:
                value = None  # an idle window says nothing about capacity
            if value is None:
                checks.append(TargetCheck(figure, None, limit, kind, unit, "no data", None))
                continue
            margin = value - limit if kind == "min" else limit - value
            met = margin >= 0 if kind == "min" else margin > 0
            status: Status = "met" if met else "missed"
            checks.append(TargetCheck(figure, value, limit, kind, unit, status, margin))
        return TargetReport(tuple(checks))
