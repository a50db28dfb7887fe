"""``eventcore bench``: the benchmark suite, whose options are parsed by
:mod:`eventcore.bench.cli` (shared with ``benchmarks/run.py``)."""

from __future__ import annotations

import argparse

import click


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    add_help_option=False,  # --help is the suite's own, with every option
)
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
def bench(arguments: tuple[str, ...]) -> int:
    """Run the benchmark suite (memory, SQLite, PostgreSQL); see bench --help."""
    from eventcore.bench.cli import DESCRIPTION, add_arguments
    from eventcore.bench.cli import run as run_bench

    parser = argparse.ArgumentParser(prog="eventcore bench", description=DESCRIPTION)
    add_arguments(parser)
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:  # argparse has printed the help, or usage and the error
        return exc.code if isinstance(exc.code, int) else 2
    return run_bench(args)
