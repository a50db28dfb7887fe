"""eventcore's speed targets, and their check against measured results.

A target names a backend, a scenario (and its concurrency or batch size where
that matters), a figure and a threshold. Ratios are to the same run's baseline
(see :mod:`eventcore.bench.baselines`), so they hold up on a noisy machine;
absolute figures (events/s, milliseconds) are as measured on this machine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from eventcore.bench.results import ScenarioResult, TargetOutcome
from eventcore.bench.stores import cache_enabled

_MB: Final = 1024 * 1024


def _ratio(result: ScenarioResult) -> float | None:
    return result.ratio


def _events_per_s(result: ScenarioResult) -> float | None:
    return result.summary.events_per_s


def _ops_per_s(result: ScenarioResult) -> float | None:
    return result.summary.ops_per_s


def _p50_ms(result: ScenarioResult) -> float | None:
    return result.summary.latency_ms.p50


def _p99_ms(result: ScenarioResult) -> float | None:
    return result.summary.latency_ms.p99


def _heap_growth_mb(result: ScenarioResult) -> float | None:
    growth = result.summary.heap_growth_bytes
    return None if growth is None else growth / _MB


_METRICS: Final[dict[str, Callable[[ScenarioResult], float | None]]] = {
    "ratio": _ratio,
    "events/s": _events_per_s,
    "commands/s": _ops_per_s,
    "p50 ms": _p50_ms,
    "p99 ms": _p99_ms,
    "heap growth MB": _heap_growth_mb,
}


@dataclass(frozen=True, slots=True)
class Target:
    description: str
    backend: str
    scenario: str
    metric: str
    comparison: Literal[">=", "<"]
    threshold: float
    concurrency: int | None = None
    batch_size: int | None = None
    operations_per_run: int | None = None
    # True / False: only for runs with / without the state cache (--option cache=).
    cache: bool | None = None

    def applies_to(self, result: ScenarioResult) -> bool:
        params = result.params
        return (
            result.backend == self.backend
            and result.scenario == self.scenario
            and self.concurrency in (None, params.concurrency)
            and self.batch_size in (None, params.batch_size)
            and self.operations_per_run in (None, params.operations_per_run)
            and self.cache in (None, cache_enabled(params.store_options))
        )

    def check(self, result: ScenarioResult | None) -> TargetOutcome:
        value = None if result is None else _METRICS[self.metric](result)
        if value is None:
            verdict: Literal["PASS", "MISS", "not run"] = "not run"
        elif self.comparison == ">=":
            verdict = "PASS" if value >= self.threshold else "MISS"
        else:
            verdict = "PASS" if value < self.threshold else "MISS"
        return TargetOutcome(
            self.description, self.metric, self.comparison, self.threshold, value, verdict
        )


def _memory_target(backend: str) -> Target:
    return Target(
        f"{backend}: 10,000 commands grow the heap by < 20 MB",
        backend,
        "memory",
        "heap growth MB",
        "<",
        20.0,
        operations_per_run=10_000,
    )


TARGETS: Final = (
    Target(
        "postgres: single-stream commands at 64 tasks, warm cache >= 1.5x bare INSERT",
        "postgres",
        "steady",
        "ratio",
        ">=",
        1.5,
        concurrency=64,
        cache=True,
    ),
    Target(
        "postgres: single-stream commands at 64 tasks, every one reading (cache off) "
        ">= 0.75x bare INSERT",
        "postgres",
        "commands",
        "ratio",
        ">=",
        0.75,
        concurrency=64,
        cache=False,
    ),
    Target(
        "postgres: two-stream transfers at 64 tasks, warm cache >= 0.75x bare INSERT",
        "postgres",
        "steady_transfers",
        "ratio",
        ">=",
        0.75,
        concurrency=64,
        cache=True,
    ),
    Target(
        "postgres: one writer, warm cache >= 0.5x bare INSERT at 1 task",
        "postgres",
        "steady",
        "ratio",
        ">=",
        0.5,
        concurrency=1,
        cache=True,
    ),
    Target(
        "postgres: 1,000-event batch appends >= 0.8x a same-run COPY of as many rows"
        " into a table like events",
        "postgres",
        "append",
        "ratio",
        ">=",
        0.8,
        batch_size=1000,
    ),
    Target(
        "postgres: 1,000-event batch appends >= 100,000 events/s",
        "postgres",
        "append",
        "events/s",
        ">=",
        100_000.0,
        batch_size=1000,
    ),
    Target(
        "postgres: open loop 1,000 commands/s, p50 < 2 ms",
        "postgres",
        "open_loop",
        "p50 ms",
        "<",
        2.0,
    ),
    Target(
        "postgres: open loop 1,000 commands/s, p99 < 10 ms",
        "postgres",
        "open_loop",
        "p99 ms",
        "<",
        10.0,
    ),
    Target(
        "postgres: fold of a 10,000-event stream < 50 ms",
        "postgres",
        "fold",
        "p50 ms",
        "<",
        50.0,
    ),
    Target(
        "postgres: read_all >= 200,000 events/s",
        "postgres",
        "read_all",
        "events/s",
        ">=",
        200_000.0,
    ),
    Target(
        "postgres: replay into an in-memory projection >= 100,000 events/s",
        "postgres",
        "replay",
        "events/s",
        ">=",
        100_000.0,
    ),
    Target(
        "memory: single-stream commands at 64 tasks >= 50,000 commands/s",
        "memory",
        "commands",
        "commands/s",
        ">=",
        50_000.0,
        concurrency=64,
    ),
    _memory_target("memory"),
    _memory_target("sqlite"),
    _memory_target("postgres"),
)


def targets_for(backends: Sequence[str]) -> list[Target]:
    return [t for t in TARGETS if t.backend in backends]


def check_result(result: ScenarioResult, targets: Sequence[Target]) -> tuple[TargetOutcome, ...]:
    """The outcomes of the targets that apply to ``result``."""
    return tuple(t.check(result) for t in targets if t.applies_to(result))


def check_all(
    results: Sequence[ScenarioResult], targets: Sequence[Target]
) -> tuple[TargetOutcome, ...]:
    """Every target's outcome; a target whose scenario did not run is ``not run``."""
    return tuple(t.check(next((r for r in results if t.applies_to(r)), None)) for t in targets)
