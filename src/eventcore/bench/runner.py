"""Running the suite: every chosen scenario on every chosen backend, each one with
a warm-up and then repetitions interleaved with its baseline.

Interleaving: repetition 1 runs the baseline then the scenario, repetition 2 the
scenario then the baseline, and so on, so that a machine that gets slower (or
faster) during a scenario biases neither side. The ratio is the median of the
per-repetition ratios, each taken between runs made next to each other.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from eventcore.bench.baselines import BaselineOperation, open_baseline
from eventcore.bench.measure import Operation, peak_rss_bytes, reset_peak_rss, run_load
from eventcore.bench.results import (
    Baseline,
    Failure,
    MachineInfo,
    RatioBasis,
    Run,
    ScenarioResult,
    SuiteResult,
    Summary,
)
from eventcore.bench.scenarios import ScenarioSpec, Sizes, plan_scenarios, prepare_workload
from eventcore.bench.stores import (
    BenchSetupError,
    open_backend,
    postgres_server_version,
    resolve_dsn,
    store_counters,
)
from eventcore.bench.targets import Target, check_all, check_result, targets_for
from eventcore.store import EventStore

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class BenchSettings:
    """What to run. ``store_options`` maps a backend name to the options its store
    is opened with (see :func:`~eventcore.bench.stores.open_backend`)."""

    backends: tuple[str, ...]
    scenarios: tuple[str, ...]
    concurrencies: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    repeat: int = 3
    sizes: Sizes = field(default_factory=Sizes)
    store_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    quick: bool = False

    def options_for(self, backend: str) -> dict[str, Any]:
        return dict(self.store_options.get(backend, {}))

    def describe(self) -> dict[str, Any]:
        """The settings for the JSON output; DSNs are left out (they may hold a
        password)."""
        return {
            "backends": list(self.backends),
            "scenarios": list(self.scenarios),
            "concurrencies": list(self.concurrencies),
            "batch_sizes": list(self.batch_sizes),
            "repeat": self.repeat,
            "quick": self.quick,
            "sizes": {name: getattr(self.sizes, name) for name in Sizes.__dataclass_fields__},
            "store_options": {b: _without_dsn(self.options_for(b)) for b in self.backends},
        }


def _without_dsn(options: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in options.items() if key != "dsn"}


async def run_suite(settings: BenchSettings, progress: Progress) -> SuiteResult:
    """Run everything ``settings`` asks for, reporting progress as it goes."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    clock_start = time.perf_counter()
    server_version = None
    if "postgres" in settings.backends:
        dsn = resolve_dsn(settings.options_for("postgres").get("dsn"))
        server_version = await postgres_server_version(dsn)
    specs = plan_scenarios(
        settings.scenarios, settings.concurrencies, settings.batch_sizes, settings.sizes
    )
    targets = targets_for(settings.backends)
    results: list[ScenarioResult] = []
    failures: list[Failure] = []
    for backend in settings.backends:
        for spec in specs:
            try:
                results.append(await run_scenario(backend, spec, settings, targets, progress))
            except BenchSetupError:
                raise  # a bad option or server: every scenario would fail alike
            except Exception as exc:  # one broken scenario must not cost the others
                error = _describe_error(exc)
                progress(f"[{backend}] {spec.label}: FAILED: {error}")
                failures.append(Failure(backend, spec.label, error))
    return SuiteResult(
        machine=_machine_info(server_version),
        settings=settings.describe(),
        started_at=started_at,
        total_seconds=time.perf_counter() - clock_start,
        results=tuple(results),
        targets=check_all(results, targets),
        failures=tuple(failures),
    )


async def run_scenario(
    backend: str,
    spec: ScenarioSpec,
    settings: BenchSettings,
    targets: Sequence[Target],
    progress: Progress,
) -> ScenarioResult:
    """One scenario on a fresh store: prepare, warm up, measure interleaved."""
    say = _prefixed(progress, backend, spec)
    say("preparing")
    started = time.perf_counter()
    options = settings.options_for(backend)
    rss_is_scoped = reset_peak_rss()
    async with (
        open_backend(backend, options) as store,
        open_baseline(backend, store, options, spec.baseline, spec.batch_size) as baseline,
    ):
        operation = await prepare_workload(spec, store, settings.sizes, settings.repeat)
        await run_load(operation, spec.warmup)
        await run_load(baseline.run, spec.warmup)
        runs, baseline_runs = await _interleaved(
            spec, store, operation, baseline, settings.repeat, say
        )
    result = ScenarioResult(
        backend=backend,
        scenario=spec.name,
        label=spec.label,
        operation=spec.operation,
        params=spec.params(settings.sizes, _without_dsn(options)),
        repetitions=settings.repeat,
        summary=Summary.of(runs),
        runs=runs,
        baseline=Baseline(
            baseline.kind, baseline.description, Summary.of(baseline_runs), baseline_runs
        ),
        ratio=paired_ratio(runs, baseline_runs, spec.ratio_basis),
        ratio_basis=spec.ratio_basis,
        cpu_ratio=paired_cpu_ratio(runs, baseline_runs),
        peak_rss_bytes=peak_rss_bytes(),
        peak_rss_scope="scenario" if rss_is_scoped else "process",
    )
    say(f"done in {time.perf_counter() - started:.1f} s")
    return replace(result, targets=check_result(result, targets))


def _describe_error(exc: BaseException) -> str:
    # The load generators run operations in a TaskGroup: name the first real error.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


def _prefixed(progress: Progress, backend: str, spec: ScenarioSpec) -> Progress:
    return lambda line: progress(f"[{backend}] {spec.label}: {line}")


async def _interleaved(
    spec: ScenarioSpec,
    store: EventStore,
    operation: Operation,
    baseline: BaselineOperation,
    repeat: int,
    progress: Progress,
) -> tuple[tuple[Run, ...], tuple[Run, ...]]:
    async def measure_scenario() -> Run:
        before = store_counters(store)
        run = await run_load(operation, spec.load, trace_heap=spec.trace_heap)
        grown = store_counters(store).since(before)
        return replace(
            run,
            cache_hits=grown.cache_hits,
            cache_misses=grown.cache_misses,
            commit_batches=grown.commit_batches,
            committed_appends=grown.committed_appends,
            turn_waits=grown.turn_waits,
        )

    async def measure_baseline() -> Run:
        return await run_load(baseline.run, spec.baseline_load, trace_heap=spec.trace_heap)

    runs: list[Run] = []
    baseline_runs: list[Run] = []
    for repetition in range(repeat):
        # Alternate which goes first, so drift over time favours neither.
        if repetition % 2 == 0:
            theirs = await measure_baseline()
            ours = await measure_scenario()
        else:
            ours = await measure_scenario()
            theirs = await measure_baseline()
        runs.append(ours)
        baseline_runs.append(theirs)
        progress(f"run {repetition + 1}/{repeat}: {_describe_pair(ours, theirs)}")
    return tuple(runs), tuple(baseline_runs)


def _describe_pair(run: Run, baseline: Run) -> str:
    cpu = run.cpu_us_per_op
    return (
        f"{run.ops_per_s:,.0f} ops/s, {run.events_per_s:,.0f} events/s, "
        f"p50 {run.latency_ms.p50:.2f} ms, p99 {run.latency_ms.p99:.2f} ms, "
        f"CPU {'-' if cpu is None else f'{cpu:.0f}'} us/op "
        f"(baseline {baseline.ops_per_s:,.0f} ops/s, p50 {baseline.latency_ms.p50:.2f} ms)"
    )


def paired_cpu_ratio(runs: Sequence[Run], baseline_runs: Sequence[Run]) -> float | None:
    """Median over repetitions of the run's CPU per operation over the baseline's
    beside it."""
    ratios = []
    for run, base in zip(runs, baseline_runs, strict=True):
        ours, theirs = run.cpu_us_per_op, base.cpu_us_per_op
        if ours is not None and theirs:
            ratios.append(ours / theirs)
    return statistics.median(ratios) if ratios else None


def paired_ratio(
    runs: Sequence[Run], baseline_runs: Sequence[Run], basis: RatioBasis
) -> float | None:
    """Median over repetitions of "times as fast as the baseline run beside it"."""
    ratios = [_ratio(run, base, basis) for run, base in zip(runs, baseline_runs, strict=True)]
    known = [r for r in ratios if r is not None]
    return statistics.median(known) if known else None


def _ratio(run: Run, baseline: Run, basis: RatioBasis) -> float | None:
    if basis == "operations":
        ours, theirs = run.ops_per_s, baseline.ops_per_s
    elif basis == "events":
        ours, theirs = run.events_per_s, baseline.events_per_s
    else:  # latency: lower is better, so the baseline is the numerator
        ours, theirs = baseline.latency_ms.p50, run.latency_ms.p50
    return ours / theirs if theirs > 0 else None


def _machine_info(postgres_version: str | None) -> MachineInfo:
    try:
        version = metadata.version("eventcore")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return MachineInfo(
        cpu_count=os.cpu_count(),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        platform=platform.platform(),
        eventcore_version=version,
        postgres_server_version=postgres_version,
    )
