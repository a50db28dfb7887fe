"""``eventcore projections``: where each projection is, and the operator's levers.

``status`` and ``dead-letters`` only read. ``reset`` and ``rebuild`` write the
projection's checkpoint and dead letters, and refuse while a runner holds the
projection's lease (a running runner would save its own position over them).
The store must keep checkpoints across processes: a SQLite file or PostgreSQL,
not ``memory:`` (a fresh, empty store in every process).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from importlib import import_module
from typing import Any, TypeVar

import click

from eventcore.cli._common import BadInput, Failure, database_url_option, run
from eventcore.errors import ValidationError
from eventcore.projection import Projection, ProjectionStatus, projection_status
from eventcore.store import CheckpointLister, DeadLetter, ProjectionStore

T = TypeVar("T")

REBUILD_EPILOG = """\b
--projection names the projection's code as MODULE:ATTRIBUTE, for example
myapp.read_models:balances. The attribute is a Projection instance, or a
callable taking no arguments that returns one (a Projection subclass will do).
The module is imported with the current directory on the import path. Its name
must be NAME. Stop the projection's runners first: the rebuild refuses to start
while one holds the projection's lease."""


@click.group()
def projections() -> None:
    """Inspect projections and reset or rebuild them (SQLite or PostgreSQL)."""


# -- status -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Report:
    status: ProjectionStatus
    last_letter: DeadLetter | None


@projections.command("status")
@database_url_option()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def status(database_url: str, name: str | None, as_json: bool) -> None:
    """Position, lag, state, last error, lease holder and dead letters of
    projection NAME, or of every projection with a checkpoint."""

    async def gather(store: ProjectionStore) -> list[_Report]:
        if name is not None:
            return [await _report(store, name)]
        assert isinstance(store, CheckpointLister)  # checked on opening
        return [await _report(store, each) for each in await store.checkpoint_names()]

    reports = _run_on_store(database_url, gather)
    if not reports:
        click.echo("no projection has a checkpoint in this store yet")
    for report in reports:
        if as_json:
            _echo_json(_status_json(report))
        else:
            _print_status(report)


async def _report(store: ProjectionStore, name: str) -> _Report:
    try:
        found = await projection_status(store, name)
    except ValidationError as exc:  # never ran here, or not a name at all
        raise Failure(f"{exc} (eventcore projections status lists them)") from exc
    letters = await store.dead_letters(name) if found.dead_letters else []
    return _Report(found, letters[-1] if letters else None)


def _state(status: ProjectionStatus) -> str:
    if status.lease_holder is not None:
        return f"running (lease held by {status.lease_holder})"
    return "stopped (no runner holds its lease)"


def _last_error(report: _Report) -> str | None:
    # A runner keeps its own failure in memory; what outlives it is the error of
    # the last event it skipped.
    letter = report.last_letter
    return None if letter is None else f"{letter.error} (dead letter at #{letter.position})"


def _print_status(report: _Report) -> None:
    s = report.status
    caught_up = "caught up" if s.lag == 0 else "behind"
    click.echo(s.name)
    click.echo(
        f"  position      {s.position} of {s.head}: {caught_up} "
        f"(lag {s.lag} events, {s.lag_seconds:.1f} s)"
    )
    click.echo(f"  state         {_state(s)}")
    click.echo(f"  last error    {_last_error(report) or 'none'}")
    click.echo(f"  dead letters  {s.dead_letters}")


def _status_json(report: _Report) -> dict[str, Any]:
    s = report.status
    return {
        "name": s.name,
        "position": s.position,
        "head": s.head,
        "lag": s.lag,
        "lag_seconds": s.lag_seconds,
        "state": "running" if s.lease_holder is not None else "stopped",
        "lease_holder": s.lease_holder,
        "last_error": _last_error(report),
        "dead_letters": s.dead_letters,
    }


# -- reset ----------------------------------------------------------------------------


@projections.command("reset")
@database_url_option()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
def reset(database_url: str, name: str, yes: bool) -> None:
    """Move projection NAME back to position 0 and clear its dead letters.

    Its read model is not touched: the next runner replays the whole log into it
    (use rebuild to empty it and replay now)."""
    report = _run_on_store(database_url, lambda store: _stopped(store, name))
    if not yes and not click.confirm(
        f"reset projection {name!r} from position {report.status.position} to 0 and clear "
        f"its {report.status.dead_letters} dead letters?"
    ):
        raise Failure(f"projection {name!r} was not reset (not confirmed)")

    async def do_reset(store: ProjectionStore) -> None:
        await _stopped(store, name)  # again: a runner may have started meanwhile
        # A checkpoint at 0 (not none) keeps the projection listed by status.
        await store.save_checkpoint(name, 0)
        await store.clear_dead_letters(name)

    _run_on_store(database_url, do_reset)
    click.echo(f"projection {name!r} reset: position 0, no dead letters")


async def _stopped(store: ProjectionStore, name: str) -> _Report:
    report = await _report(store, name)
    holder = report.status.lease_holder
    if holder is not None:
        raise Failure(
            f"projection {name!r} is running (lease held by {holder}): stop its runners first"
        )
    return report


# -- rebuild --------------------------------------------------------------------------


@projections.command("rebuild", epilog=REBUILD_EPILOG)
@database_url_option()
@click.argument("name")
@click.option(
    "--projection",
    "target",
    required=True,
    metavar="MODULE:ATTRIBUTE",
    help="the projection's code: a Projection instance or a factory of one",
)
def rebuild(database_url: str, name: str, target: str) -> None:
    """Empty projection NAME and replay the whole log into it, with a progress bar."""
    projection = load_projection(target)
    if projection.name != name:
        raise BadInput(f"{target} is projection {projection.name!r}, not {name!r}")
    done = _run_on_store(database_url, lambda store: _rebuild(store, projection))
    click.echo(
        f"projection {name!r} rebuilt: position {done.position} of {done.head}, "
        f"{done.dead_letters} dead letters"
    )


async def _rebuild(store: ProjectionStore, projection: Projection) -> ProjectionStatus:
    from rich.console import Console
    from rich.progress import Progress

    from eventcore.projection import rebuild_projection

    holder = await store.lease_holder(projection.name)
    if holder is not None:
        raise Failure(
            f"projection {projection.name!r} is running (lease held by {holder}): "
            "stop its runners first"
        )
    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=not console.is_terminal) as bars:
        task = bars.add_task(f"rebuilding {projection.name}", total=None)

        def progress(position: int, head: int) -> None:
            bars.update(task, completed=position, total=head)

        return await rebuild_projection(store, projection, progress=progress)


def load_projection(target: str) -> Projection:
    """The projection ``MODULE:ATTRIBUTE`` names (an instance, or a factory called
    with no arguments); a bad one is a usage error."""
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise BadInput(f"--projection must be MODULE:ATTRIBUTE, got {target!r}")
    if os.getcwd() not in sys.path:  # as `python -m` would: the user's own modules
        sys.path.insert(0, os.getcwd())
    try:
        found: object = import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except ImportError as exc:
        raise BadInput(f"cannot import {module_name!r} for --projection: {exc}") from exc
    except AttributeError as exc:
        raise BadInput(f"{module_name!r} has no {attribute!r} (--projection {target})") from exc
    if not isinstance(found, Projection) and callable(found):
        found = found()
    if not isinstance(found, Projection):
        raise BadInput(
            f"--projection {target} is {found!r}, not a Projection (or a factory of one)"
        )
    return found


# -- dead letters ---------------------------------------------------------------------


@projections.command("dead-letters")
@database_url_option()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def dead_letters(database_url: str, name: str, as_json: bool) -> None:
    """The events projection NAME skipped, with the error each raised."""

    async def read(store: ProjectionStore) -> list[DeadLetter]:
        await _report(store, name)  # an unknown name fails here
        return await store.dead_letters(name)

    letters = _run_on_store(database_url, read)
    if not letters and not as_json:
        click.echo(f"projection {name!r} has no dead letters")
    for letter in letters:
        at = letter.failed_at.isoformat(timespec="seconds")
        if as_json:
            _echo_json(
                {
                    "position": letter.position,
                    "event_id": str(letter.event_id),
                    "stream_id": letter.stream_id,
                    "event_type": letter.event_type,
                    "failed_at": at,
                    "error": letter.error,
                }
            )
        else:
            click.echo(
                f"#{letter.position}\t{letter.stream_id}\t{letter.event_type}\t"
                f"{letter.event_id}\t{at}\t{letter.error}"
            )


# -- shared ---------------------------------------------------------------------------


def _run_on_store(url: str, work: Callable[[ProjectionStore], Coroutine[Any, Any, T]]) -> T:
    return run(_with_projection_store(url, work))


async def _with_projection_store(
    url: str, work: Callable[[ProjectionStore], Coroutine[Any, Any, T]]
) -> T:
    from eventcore.backends.memory import InMemoryEventStore
    from eventcore.cli._stores import open_existing

    store = await open_existing(url)
    try:
        if isinstance(store, InMemoryEventStore):
            raise BadInput(
                "the in-memory store (memory:) keeps no checkpoints between processes: "
                "name a SQLite file or a PostgreSQL database with --database-url"
            )
        if not isinstance(store, ProjectionStore) or not isinstance(store, CheckpointLister):
            raise Failure(f"{type(store).__name__} keeps no projection checkpoints")
        return await work(store)
    finally:
        await store.close()


def _echo_json(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, ensure_ascii=False))
    sys.stdout.flush()
