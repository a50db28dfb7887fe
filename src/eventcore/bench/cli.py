"""The ``eventcore bench`` arguments and entry point (``benchmarks/run.py`` too).

Kept free of heavy imports: ``eventcore --help`` builds this parser, and the
drivers are imported only when a benchmark runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from eventcore.bench.scenarios import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_CONCURRENCY,
    QUICK_SIZES,
    SCENARIOS,
    Sizes,
)
from eventcore.bench.stores import BACKENDS

if TYPE_CHECKING:
    from eventcore.bench.results import SuiteResult

T = TypeVar("T")

DESCRIPTION = """\
Benchmark eventcore on the memory, SQLite and PostgreSQL stores. Each scenario is
warmed up, then repeated, interleaved with a baseline (a bare one-row INSERT on
the same driver at the same concurrency; list.append for memory; for PostgreSQL
batch appends, a plain COPY of as many rows into a table like the events table),
and reported as medians and as a ratio to that baseline. A table goes to stdout,
progress to stderr; --json writes every figure."""


def _comma_list(parse: Callable[[str], T], what: str) -> Callable[[str], tuple[T, ...]]:
    def parse_list(text: str) -> tuple[T, ...]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}")
        return tuple(dict.fromkeys(parse(item) for item in items))

    return parse_list


def _choice(choices: Sequence[str]) -> Callable[[str], str]:
    def parse(item: str) -> str:
        if item not in choices:
            raise argparse.ArgumentTypeError(f"unknown {item!r}; choose from {', '.join(choices)}")
        return item

    return parse


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def _store_option(text: str) -> tuple[str | None, str, Any]:
    """``[backend.]key=value``; the value is read as JSON when it parses (numbers,
    true/false, null), else taken as a string."""
    key, equals, raw = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(f"expected [backend.]KEY=VALUE, got {text!r}")
    backend, dot, name = key.strip().rpartition(".")
    if dot and backend not in BACKENDS:
        raise argparse.ArgumentTypeError(
            f"unknown backend {backend!r} in {text!r}; choose from {', '.join(BACKENDS)}"
        )
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return (backend or None), name, value


def _joined(items: Sequence[object]) -> str:
    return ",".join(str(item) for item in items)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options to ``parser``."""
    parser.add_argument(
        "--backend",
        type=_comma_list(_choice(BACKENDS), "backends"),
        default=None,
        metavar="NAME,...",
        help=f"comma-separated, from {_joined(BACKENDS)} (default: all; postgres is "
        "skipped with a warning when no server answers)",
    )
    parser.add_argument(
        "--scenario",
        type=_comma_list(_choice(SCENARIOS), "scenarios"),
        default=SCENARIOS,
        metavar="NAME,...",
        help=f"comma-separated, from {_joined(SCENARIOS)} (default: all)",
    )
    parser.add_argument(
        "--concurrency",
        type=_comma_list(_positive_int, "task counts"),
        default=DEFAULT_CONCURRENCY,
        metavar="N,N,...",
        help=f"task counts for the commands scenario (default: {_joined(DEFAULT_CONCURRENCY)})",
    )
    parser.add_argument(
        "--batch-size",
        type=_comma_list(_positive_int, "batch sizes"),
        default=DEFAULT_BATCH_SIZES,
        metavar="N,N,...",
        help=f"events per append for the append scenario (default: {_joined(DEFAULT_BATCH_SIZES)})",
    )
    parser.add_argument(
        "--repeat", type=_positive_int, default=None, help="repetitions (default: 3, quick: 2)"
    )
    parser.add_argument(
        "--duration",
        type=_positive_float,
        default=None,
        help=f"seconds per measured run (default: {Sizes().seconds}, quick: {QUICK_SIZES.seconds})",
    )
    parser.add_argument(
        "--rate", type=_positive_float, default=None, help="open-loop commands/s (default: 1000)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run of about a minute: shorter, smaller"
    )
    parser.add_argument(
        "--dsn", default=None, help="PostgreSQL DSN (default: $EVENTCORE_DATABASE_URL or local)"
    )
    parser.add_argument(
        "--option",
        type=_store_option,
        action="append",
        default=[],
        metavar="[BACKEND.]KEY=VALUE",
        help="pass an option to the store constructors (all backends, or one); repeatable",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark the parsed ``args`` describe; print the table."""
    from eventcore.bench.report import render
    from eventcore.bench.results import write_json
    from eventcore.bench.stores import BenchSetupError

    try:
        suite = asyncio.run(_run_suite(args))
    except BenchSetupError as exc:
        print(f"eventcore bench: {exc}", file=sys.stderr)
        return 2
    if args.json is not None:
        write_json(suite, args.json)
        _progress(f"wrote {args.json}")
    sys.stdout.write(render(suite))
    return 1 if suite.failures else 0


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def _run_suite(args: argparse.Namespace) -> SuiteResult:
    from eventcore.bench.runner import BenchSettings, run_suite

    options = _options_by_backend(args)
    settings = BenchSettings(
        backends=args.backend or await _reachable_backends(options["postgres"]),
        scenarios=args.scenario,
        concurrencies=args.concurrency,
        batch_sizes=args.batch_size,
        repeat=args.repeat or (2 if args.quick else 3),
        sizes=_sizes(args),
        store_options=options,
        quick=args.quick,
    )
    return await run_suite(settings, _progress)


async def _reachable_backends(postgres_options: dict[str, Any]) -> tuple[str, ...]:
    """All backends, less postgres when no server answers (asked for by name, an
    unreachable server is an error instead)."""
    from eventcore.bench.stores import BenchSetupError, postgres_server_version, resolve_dsn

    try:
        await postgres_server_version(resolve_dsn(postgres_options.get("dsn")))
    except BenchSetupError as exc:
        _progress(f"skipping postgres: {exc}")
        return tuple(b for b in BACKENDS if b != "postgres")
    return BACKENDS


def _sizes(args: argparse.Namespace) -> Sizes:
    from dataclasses import replace

    sizes = QUICK_SIZES if args.quick else Sizes()
    if args.duration is not None:
        sizes = replace(sizes, seconds=args.duration)
    if args.rate is not None:
        sizes = replace(sizes, rate_per_s=args.rate)
    return sizes


def _options_by_backend(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    options: dict[str, dict[str, Any]] = {backend: {} for backend in BACKENDS}
    for backend, name, value in args.option:
        for target in [backend] if backend else BACKENDS:
            options[target][name] = value
    if args.dsn is not None:
        options["postgres"]["dsn"] = args.dsn
    return options
