"""The root command, the registry of commands, and how failures become exit codes."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from importlib import import_module
from typing import Any, Final

import click

from eventcore import __version__
from eventcore.cli._common import EXIT_INTERRUPTED, EXIT_USAGE, Failure

# Each command lives in its own module, imported only when it runs or when help
# lists it. Another package adds its command group here, one line each.
COMMANDS: Final[dict[str, str]] = {
    "bench": "eventcore.cli._bench:bench",
    "demo": "eventcore.cli._demo:demo",
    "migrate": "eventcore.cli._migrate:migrate",
    "projections": "eventcore.cli._projections:projections",
    "serve": "eventcore.cli._serve:serve",
    "streams": "eventcore.cli._streams:streams",
}

EPILOG = """\b
Database URLs: memory:, sqlite:///relative.sqlite, sqlite:////absolute.sqlite (or a
plain file path), postgresql://user@host:5432/db?schema=name (&pooler=pgbouncer
behind PgBouncer in transaction mode). --database-url defaults to
$EVENTCORE_DATABASE_URL. PostgreSQL: $EVENTCORE_READ_DATABASE_URL names a hot
standby for reads of the log, $EVENTCORE_LISTEN_DATABASE_URL the server the
listener for appends connects to.

\b
Exit codes: 0 success; 1 runtime or store failure (unreachable server, missing
stream or database); 2 usage error (unknown command or option, bad value or URL);
130 interrupted by Ctrl-C (serve and streams tail end with 0 on Ctrl-C)."""


class _LazyGroup(click.Group):
    """A group whose commands are imported from :data:`COMMANDS` when needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, name = target.partition(":")
        command = getattr(import_module(module), name)
        assert isinstance(command, click.Command)
        return command


@click.group(
    cls=_LazyGroup,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, "--version", prog_name="eventcore")
@click.option("--debug", is_flag=True, help="show the traceback of an error")
def root(debug: bool) -> None:
    """eventcore: multi-stream event sourcing for Python.

    Commands read several event streams and append to them atomically, with
    optimistic concurrency. Run `eventcore COMMAND --help` for each command.
    """


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return its exit code (see the package docstring)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args[: _first_command_index(args)]
    try:
        result: Any = root.main(args, prog_name="eventcore", standalone_mode=False)
    except click.UsageError as exc:
        path = exc.ctx.command_path if exc.ctx is not None else "eventcore"
        _fail_line(f"{path}: {exc.format_message()} (see '{path} --help')")
        return EXIT_USAGE
    except click.Abort:
        return EXIT_INTERRUPTED
    except Failure as exc:
        if debug and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__)
        _fail_line(f"{exc.command_path}: {exc.format_message()}")
        return exc.exit_code
    except click.ClickException as exc:  # click.FileError and the like
        _fail_line(f"eventcore: {exc.format_message()}")
        return exc.exit_code
    except Exception as exc:
        if debug:
            traceback.print_exc()
        _fail_line(f"eventcore: unexpected {type(exc).__name__}: {exc} (--debug shows where)")
        return 1
    return result if isinstance(result, int) else 0


def _first_command_index(args: list[str]) -> int:
    for index, arg in enumerate(args):
        if not arg.startswith("-"):
            return index
    return len(args)


def _fail_line(message: str) -> None:
    # One line: a message that spans lines is joined, so scripts can grep it.
    print(" ".join(message.split()), file=sys.stderr)
