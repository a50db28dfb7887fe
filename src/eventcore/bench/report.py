"""The human-readable report: one aligned table of scenarios, then the targets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from eventcore.bench.results import ScenarioResult, SuiteResult, TargetOutcome

_MB: Final = 1024 * 1024
_BASIS_SUFFIX: Final = {"operations": "ops", "events": "ev", "p50": "p50"}

_HEADERS: Final = (
    "backend",
    "scenario",
    "ops/s",
    "events/s",
    "baseline ops/s",
    "vs baseline",
    "hit %",
    "batch",
    "retries",
    "waits",
    "CPU us/op",
    "CPU x base",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "max ms",
    "errors",
    "RSS MB",
    "heap +MB",
    "target",
)
_TEXT_COLUMNS: Final = frozenset({0, 1, len(_HEADERS) - 1})  # left; numbers align right


def render(suite: SuiteResult) -> str:
    """The report for a terminal: machine line, scenario table, targets, notes."""
    machine = suite.machine
    header = (
        f"eventcore bench: {machine.cpu_count} CPUs, {machine.python}, "
        f"PostgreSQL {machine.postgres_server_version or '-'}, "
        f"{suite.settings.get('repeat')} repetitions (medians), "
        f"{suite.total_seconds:.0f} s in all"
    )
    parts = [header, "", _table([_row(r) for r in suite.results], _HEADERS)]
    if suite.targets:
        parts += ["", "Targets:", _targets(suite.targets)]
    if suite.failures:
        failed = [[f.backend, f.label, f.error] for f in suite.failures]
        parts += ["", "FAILED (left out of the table and targets):", _table(failed, None)]
    parts += ["", *_notes(suite.results)]
    return "\n".join(parts) + "\n"


def _row(result: ScenarioResult) -> list[str]:
    summary = result.summary
    latency = summary.latency_ms
    baseline = result.baseline
    return [
        result.backend,
        result.label,
        _rate(summary.ops_per_s),
        _rate(summary.events_per_s),
        "-" if baseline is None else _rate(baseline.summary.ops_per_s),
        _ratio(result),
        _optional(summary.cache_hit_rate, "{:.0%}"),
        _optional(summary.mean_batch, "{:.1f}"),
        str(summary.retries),
        "-" if summary.turn_waits is None else str(summary.turn_waits),
        _optional(summary.cpu_us_per_op, "{:.0f}"),
        _optional(result.cpu_ratio, "{:.2f}x"),
        _ms(latency.p50),
        _ms(latency.p95),
        _ms(latency.p99),
        _ms(latency.max),
        str(summary.errors),
        f"{result.peak_rss_bytes / _MB:.0f}",
        "" if summary.heap_growth_bytes is None else f"{summary.heap_growth_bytes / _MB:.1f}",
        " ".join(outcome.verdict for outcome in result.targets),
    ]


def _optional(value: float | None, form: str) -> str:
    """``value`` formatted, or "-" where the figure does not apply."""
    return "-" if value is None else form.format(value)


def _ratio(result: ScenarioResult) -> str:
    if result.ratio is None:
        return "-"
    return f"{result.ratio:.2f}x {_BASIS_SUFFIX[result.ratio_basis]}"


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _value(outcome: TargetOutcome) -> str:
    if outcome.value is None:
        return "-"
    if outcome.metric == "ratio":
        return f"{outcome.value:.2f}x"
    if outcome.metric.endswith("/s"):
        return f"{outcome.value:,.0f}"
    return f"{outcome.value:.2f}"


def _targets(outcomes: Sequence[TargetOutcome]) -> str:
    rows = [
        [
            outcome.verdict,
            outcome.description,
            f"measured {_value(outcome)} {outcome.metric}",
        ]
        for outcome in outcomes
    ]
    return _table(rows, None)


def _notes(results: Sequence[ScenarioResult]) -> list[str]:
    notes = [
        "vs baseline: times as fast as the baseline run next to it (median of "
        "repetitions); ops = operations/s, ev = events/s, p50 = baseline p50 / scenario p50.",
        "fold: ops are folds, events are events folded; read_all: ops are pages of 1,000.",
        "replay: an op is a rebuild of an in-memory projection from the whole log, "
        "against a bare iter_all walk of it.",
        "memory: run under tracemalloc (slower); heap +MB is the net growth after gc.",
        "steady: the commands of commands c=N with the accounts opened and the state "
        "cache warmed first (StateCache.warm over every account; with --option "
        "cache=false there is no cache to warm, and hit % shows -); transfers ... warm "
        "cache: the same for transfers; hot_set: transfers, most of them between a few "
        "hot accounts, the cache filling as it goes.",
        "hit %: command attempts whose every stream's state was in the state cache; "
        "retries: attempts after a version conflict; waits: commands that waited for "
        "another command's turn on a stream (Command.takes_turns), where without turns "
        "they would race (- without a state cache); "
        "batch: appends per group commit (- without group commit); CPU us/op: this "
        "process's CPU time per operation (the client's; SQLite's engine runs in it), "
        "CPU x base: the same over the baseline's.",
        "open_loop: latency from the scheduled start; asyncio's 1 ms timer granularity "
        "alone adds about 0.5 ms (the baseline's p50 shows it).",
    ]
    for kind, description in sorted(
        {(r.baseline.kind, r.baseline.description) for r in results if r.baseline is not None}
    ):
        notes.append(f"baseline {kind}: {description}")
    if any(r.peak_rss_scope == "process" for r in results):
        notes.append("RSS MB: the process's peak so far (this system cannot reset it).")
    else:
        notes.append("RSS MB: peak resident memory during the scenario.")
    return notes


def _table(rows: Sequence[Sequence[str]], headers: Sequence[str] | None) -> str:
    every = [list(headers), *rows] if headers is not None else [list(r) for r in rows]
    widths = [max(len(row[i]) for row in every) for i in range(len(every[0]))]
    lines = []
    for n, row in enumerate(every):
        cells = [
            cell.ljust(width) if (i in _TEXT_COLUMNS or headers is None) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0 and headers is not None:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)
