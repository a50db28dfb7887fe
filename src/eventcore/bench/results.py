"""The benchmark's records: one measured run, the medians of several, a scenario's
full result, and the suite's JSON form.

Everything here is a frozen dataclass that msgspec encodes to JSON and decodes
back to the same value (tests/test_bench.py checks the round trip), so the JSON
written by ``--json`` has exactly the shape of these classes.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

import msgspec

Verdict: TypeAlias = Literal["PASS", "MISS", "not run"]
RatioBasis: TypeAlias = Literal["operations", "events", "p50"]
RssScope: TypeAlias = Literal["scenario", "process"]

_PERCENTILES = (50, 95, 99)


@dataclass(frozen=True, slots=True)
class Latency:
    """Latency percentiles of one run, in milliseconds (nearest-rank method)."""

    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        if not seconds:
            return cls(0.0, 0.0, 0.0, 0.0)
        ordered = sorted(seconds)
        p50, p95, p99 = (_nearest_rank(ordered, p) * 1000 for p in _PERCENTILES)
        return cls(p50, p95, p99, ordered[-1] * 1000)

    @classmethod
    def median_of(cls, latencies: Sequence[Latency]) -> Latency:
        # The median is monotone, so medians of ordered percentiles stay ordered.
        return cls(
            statistics.median(x.p50 for x in latencies),
            statistics.median(x.p95 for x in latencies),
            statistics.median(x.p99 for x in latencies),
            statistics.median(x.max for x in latencies),
        )


def _nearest_rank(ordered: Sequence[float], percent: float) -> float:
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Run:
    """One measured run of a scenario or of its baseline.

    ``operations`` counts successful operations (commands, appends, page reads);
    ``errors`` the ones that raised an eventcore error; ``retries`` the extra
    attempts commands needed after version conflicts. The heap figures are set
    only for runs traced with tracemalloc (the memory scenario).

    ``cpu_seconds`` is the process's CPU time over the run (the client's: for
    SQLite that includes its engine, which runs in-process). The store's counters
    over the run are set where the store has them: ``cache_hits``,
    ``cache_misses`` and ``turn_waits`` (commands that waited for a turn on a
    stream, see ``Command.takes_turns``) of its state cache, ``commit_batches``
    and ``committed_appends`` of its group committer.
    """

    seconds: float
    operations: int
    events: int
    errors: int
    retries: int
    ops_per_s: float
    events_per_s: float
    latency_ms: Latency
    heap_growth_bytes: int | None = None
    heap_peak_bytes: int | None = None
    cpu_seconds: float = 0.0
    cache_hits: int | None = None
    cache_misses: int | None = None
    commit_batches: int | None = None
    committed_appends: int | None = None
    turn_waits: int | None = None

    @property
    def cpu_us_per_op(self) -> float | None:
        return self.cpu_seconds / self.operations * 1e6 if self.operations else None

    @classmethod
    def measured(
        cls,
        seconds: float,
        latencies: Sequence[float],
        *,
        events: int,
        errors: int = 0,
        retries: int = 0,
        cpu_seconds: float = 0.0,
    ) -> Run:
        elapsed = max(seconds, 1e-9)
        return cls(
            cpu_seconds=cpu_seconds,
            seconds=seconds,
            operations=len(latencies),
            events=events,
            errors=errors,
            retries=retries,
            ops_per_s=len(latencies) / elapsed,
            events_per_s=events / elapsed,
            latency_ms=Latency.of(latencies),
        )


@dataclass(frozen=True, slots=True)
class Summary:
    """Medians over repetitions (rates, latencies, heap, CPU per operation) and
    totals (counts); ``cache_hit_rate`` and ``mean_batch`` are over all runs
    (``None`` where the store has no cache or no group commit)."""

    ops_per_s: float
    events_per_s: float
    latency_ms: Latency
    operations: int
    events: int
    errors: int
    retries: int
    heap_growth_bytes: int | None = None
    heap_peak_bytes: int | None = None
    cpu_us_per_op: float | None = None
    cache_hit_rate: float | None = None
    mean_batch: float | None = None
    turn_waits: int | None = None

    @classmethod
    def of(cls, runs: Sequence[Run]) -> Summary:
        if not runs:
            raise ValueError("a summary needs at least one run")
        return cls(
            ops_per_s=statistics.median(r.ops_per_s for r in runs),
            events_per_s=statistics.median(r.events_per_s for r in runs),
            latency_ms=Latency.median_of([r.latency_ms for r in runs]),
            operations=sum(r.operations for r in runs),
            events=sum(r.events for r in runs),
            errors=sum(r.errors for r in runs),
            retries=sum(r.retries for r in runs),
            heap_growth_bytes=_median_or_none([r.heap_growth_bytes for r in runs]),
            heap_peak_bytes=_median_or_none([r.heap_peak_bytes for r in runs]),
            cpu_us_per_op=_median_float([r.cpu_us_per_op for r in runs]),
            cache_hit_rate=_share(runs, "cache_hits", "cache_misses"),
            mean_batch=_per(runs, "committed_appends", "commit_batches"),
            turn_waits=_total([r.turn_waits for r in runs]),
        )


def _total(values: Sequence[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _median_float(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _share(runs: Sequence[Run], part: str, rest: str) -> float | None:
    """``part`` as a share of ``part`` + ``rest``, summed over the runs."""
    parts = sum(getattr(r, part) or 0 for r in runs)
    whole = parts + sum(getattr(r, rest) or 0 for r in runs)
    return parts / whole if whole else None


def _per(runs: Sequence[Run], numerator: str, denominator: str) -> float | None:
    """Sum of ``numerator`` over sum of ``denominator``, over the runs."""
    below = sum(getattr(r, denominator) or 0 for r in runs)
    return sum(getattr(r, numerator) or 0 for r in runs) / below if below else None


def _median_or_none(values: Sequence[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return int(statistics.median(known)) if known else None


@dataclass(frozen=True, slots=True)
class Baseline:
    """What the scenario was compared with, measured interleaved with it."""

    kind: str
    description: str
    summary: Summary
    runs: tuple[Run, ...]


@dataclass(frozen=True, slots=True)
class Params:
    """How a scenario was run. Fields that do not apply to a scenario are None."""

    concurrency: int | None
    batch_size: int | None = None
    rate_per_s: float | None = None
    duration_s: float | None = None
    operations_per_run: int | None = None
    events_per_stream: int | None = None
    log_events: int | None = None
    accounts: int | None = None
    warmup_s: float = 0.0
    store_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TargetOutcome:
    """One speed target, checked against a measured figure."""

    description: str
    metric: str
    comparison: Literal[">=", "<"]
    threshold: float
    value: float | None
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """Everything measured for one scenario on one backend.

    ``ratio`` is the median, over repetitions, of the scenario's figure divided by
    the baseline's figure from the run next to it; ``ratio_basis`` says which
    figure. It reads "times as fast as the baseline": for throughput it is
    scenario/baseline, for latency (``p50``) baseline/scenario. ``cpu_ratio`` is
    likewise the median of the scenario's CPU per operation over the baseline's
    (how many times the baseline's client CPU an operation costs).
    """

    backend: str
    scenario: str
    label: str
    operation: str
    params: Params
    repetitions: int
    summary: Summary
    runs: tuple[Run, ...]
    baseline: Baseline | None
    ratio: float | None
    ratio_basis: RatioBasis
    peak_rss_bytes: int
    peak_rss_scope: RssScope
    targets: tuple[TargetOutcome, ...] = ()
    cpu_ratio: float | None = None

    @property
    def commands_per_s(self) -> float | None:
        return self.summary.ops_per_s if self.operation == "command" else None


@dataclass(frozen=True, slots=True)
class MachineInfo:
    cpu_count: int | None
    python: str
    platform: str
    eventcore_version: str
    postgres_server_version: str | None


@dataclass(frozen=True, slots=True)
class Failure:
    """A scenario that raised instead of finishing; the rest of the run went on."""

    backend: str
    label: str
    error: str


@dataclass(frozen=True, slots=True)
class SuiteResult:
    """The whole run, as ``--json`` writes it."""

    machine: MachineInfo
    settings: dict[str, Any]
    started_at: str
    total_seconds: float
    results: tuple[ScenarioResult, ...]
    targets: tuple[TargetOutcome, ...]
    failures: tuple[Failure, ...] = ()


def to_json(suite: SuiteResult) -> bytes:
    """The suite as indented JSON; each scenario also carries ``commands_per_s``."""
    raw = msgspec.to_builtins(suite)
    for encoded, result in zip(raw["results"], suite.results, strict=True):
        encoded["commands_per_s"] = result.commands_per_s
    return msgspec.json.format(msgspec.json.encode(raw), indent=2) + b"\n"


def from_json(data: bytes | str) -> SuiteResult:
    """Read back what :func:`to_json` wrote (derived fields are recomputed)."""
    raw = msgspec.json.decode(data)
    for encoded in raw.get("results", ()):
        encoded.pop("commands_per_s", None)
    return msgspec.convert(raw, SuiteResult)


def write_json(suite: SuiteResult, path: Path) -> None:
    path.write_bytes(to_json(suite))
