"""``eventcore demo``: the bank demo, with its figures held against the production
targets, and optionally the monitoring dashboard while it runs."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from eventcore.cli._common import EXIT_INTERRUPTED, Failure, bind, parse_address, run
from eventcore.observe import CommandReport, Observer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from eventcore.application import Application
    from eventcore.demo.run import Tally
    from eventcore.performance import PerformanceMetrics

EPILOG = """\b
With --serve, the dashboard is up while the demo runs and stays up afterwards
for --linger seconds (default: until Ctrl-C, which then ends the demo with
exit code 0). Exit codes: 0 money conserved and the read model agrees; 1 a store
failure, money not conserved or a read model that disagrees with the account
streams; 2 a bad option or URL; 130 interrupted before the demo finished."""


@dataclass(slots=True)
class _Phase:
    finished: bool = False  # the demo is done: Ctrl-C now only stops the dashboard


@click.command(epilog=EPILOG)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("eventcore-demo.sqlite"),
    show_default=True,
    help="SQLite file to use (each run adds its own accounts)",
)
@click.option("--database-url", metavar="URL", help="any store instead of --db (PostgreSQL too)")
@click.option("--accounts", type=click.IntRange(min=2), default=10, show_default=True)
@click.option(
    "--transfers",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="transfers per round; there are two rounds",
)
@click.option("--seed", type=int, default=None, help="make the transfers repeatable")
@click.option(
    "--serve",
    "address",
    metavar="[HOST:]PORT",
    default=None,
    help="serve the monitoring dashboard on this address while the demo runs",
)
@click.option(
    "--linger",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="with --serve: keep the dashboard up this long after the demo (default: until Ctrl-C)",
)
def demo(
    db: Path,
    database_url: str | None,
    accounts: int,
    transfers: int,
    seed: int | None,
    address: str | None,
    linger: float | None,
) -> None:
    """Run the bank demo: transfers racing on shared accounts.

    Opens ACCOUNTS accounts, fires TRANSFERS transfers at them all at once (they
    conflict and retry: that contention is the point), then as many through the
    parallel executor with the state cache; checks that no money was created or
    lost, and reports throughput, latency and memory against the production targets.
    A projection keeps the bank's read model (balances, transfers, last activity)
    up to date meanwhile; its balances must equal the account streams at the end.
    """
    from eventcore.demo.run import DemoOptions

    sock = None
    if address is not None:
        from eventcore.cli._serve import check_web_installed

        check_web_installed()
        sock = bind(*parse_address(address))  # before anything is written
    options = DemoOptions(database_url or db, accounts, transfers, seed)
    phase = _Phase()
    try:
        tally = run(_demo(options, sock, linger, phase))
    except KeyboardInterrupt:
        if not phase.finished:
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        click.echo("dashboard stopped", err=True)
        return
    finally:
        if sock is not None:
            sock.close()
    if not tally.conserved:
        raise Failure("money was not conserved")
    if not tally.read_model_agrees:
        raise Failure("the read model disagrees with the account streams")


async def _demo(
    options: object, sock: socket.socket | None, linger: float | None, phase: _Phase
) -> Tally:
    from rich.console import Console

    from eventcore.application import Application
    from eventcore.cli._stores import describe
    from eventcore.demo.bank import bank_codec
    from eventcore.demo.run import RETRY, DemoOptions, run_demo_on, show_log_tail
    from eventcore.performance import PerformanceMetrics

    assert isinstance(options, DemoOptions)
    console = Console(highlight=False, soft_wrap=True)
    figures = PerformanceMetrics(window=24 * 3600)  # the whole run
    progress = _ProgressObserver()
    observers: list[Observer] = [figures, progress, *_dashboard_observers(sock)]
    async with await Application.open(
        options.database, codec=bank_codec, retry=RETRY, observers=observers
    ) as app:
        console.print(f"eventcore demo: a bank on {describe(app.store)}")
        async with _maybe_serving(app, sock, console):
            with progress.bars():
                tally = await run_demo_on(app, options, console.print, progress.start_round)
            _report_performance(console, figures)
            await show_log_tail(app, console.print)
            phase.finished = True
            if sock is not None:
                await _linger(console, linger)
    return tally


def _dashboard_observers(sock: socket.socket | None) -> list[Observer]:
    if sock is None:
        return []
    from eventcore.performance import PerformanceMetrics
    from eventcore.prometheus import PrometheusObserver

    return [PerformanceMetrics(), PrometheusObserver()]  # the dashboard's 60 s window


@contextlib.asynccontextmanager
async def _maybe_serving(
    app: Application, sock: socket.socket | None, console: Console
) -> AsyncIterator[None]:
    if sock is None:
        yield
        return
    from eventcore.cli._serve import serving

    async with serving(app, sock) as url:
        console.print(f"dashboard: {url} (also /metrics, /health)")
        yield


async def _linger(console: Console, linger: float | None) -> None:
    if linger is None:
        console.print("the dashboard stays up: Ctrl-C stops it")
        await asyncio.Event().wait()
    elif linger > 0:
        console.print(f"the dashboard stays up for {linger:g} s (Ctrl-C stops it sooner)")
        await asyncio.sleep(linger)


def _report_performance(console: Console, figures: PerformanceMetrics) -> None:
    from eventcore.performance import PerformanceTargets

    snapshot = figures.snapshot()

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} ms"

    console.print(
        f"performance over the run: {snapshot.commands_per_second:,.0f} commands/s, "
        f"{snapshot.events_per_second:,.0f} events/s; latency p50 "
        f"{ms(snapshot.latency_p50_ms)}, p95 {ms(snapshot.latency_p95_ms)}, "
        f"p99 {ms(snapshot.latency_p99_ms)}; memory {snapshot.memory_mb:,.0f} MB"
    )
    report = PerformanceTargets.production().check(snapshot)
    met = sum(1 for check in report.checks if check.status == "met")
    console.print(
        f"production targets: {met} met, {len(report.missed)} missed"
        " (a demo on one machine, not a benchmark: see eventcore bench)"
    )
    for check in report.checks:
        style = "green" if check.status == "met" else "bold red"
        label = "met" if check.status == "met" else check.status
        console.print(f"  [{style}]{label}[/]: {_escape(check.describe())}")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


class _ProgressObserver(Observer):
    """Advances a progress bar per command of the current round (on a terminal)."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    @contextlib.contextmanager
    def bars(self) -> Iterator[None]:
        from rich.console import Console
        from rich.progress import Progress

        console = Console(stderr=True)
        with Progress(console=console, transient=True, disable=not console.is_terminal) as bars:
            self._progress = bars
            try:
                yield
            finally:
                self._progress = self._task = None

    def start_round(self, label: str, commands: int) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task(label, total=commands)

    def command_executed(self, report: CommandReport) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task)
