"""The eventcore command line (also ``python -m eventcore``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from eventcore.errors import EventCoreError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventcore",
        description=(
            "eventcore: multi-stream event sourcing for Python. Commands read several "
            "event streams and append to them atomically, with optimistic concurrency."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the bank demo on the embedded SQLite store")
    demo.add_argument(
        "--db",
        type=Path,
        default=Path("eventcore-demo.sqlite"),
        help="SQLite file to use (default: %(default)s; each run adds its own accounts)",
    )
    demo.add_argument(
        "--accounts",
        type=_positive_int,
        default=10,
        help="how many accounts to open (at least 2; default: %(default)s)",
    )
    demo.add_argument(
        "--transfers",
        type=_positive_int,
        default=200,
        help="transfers per round; there are two rounds (default: %(default)s)",
    )
    demo.add_argument("--seed", type=int, default=None, help="make the run repeatable")
    _add_bench(commands)
    return parser


def _add_bench(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from eventcore.bench.cli import DESCRIPTION, add_arguments

    bench = commands.add_parser(
        "bench",
        help="run the benchmark suite (memory, SQLite, PostgreSQL)",
        description=DESCRIPTION,
    )
    add_arguments(bench)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from eventcore.demo.run import DemoOptions, run_demo

        if args.accounts < 2:
            raise SystemExit("eventcore demo: --accounts must be at least 2 for transfers")
        try:
            asyncio.run(run_demo(DemoOptions(args.db, args.accounts, args.transfers, args.seed)))
        except EventCoreError as exc:
            print(f"eventcore demo: {exc}", file=sys.stderr)
            return 2
    elif args.command == "bench":
        from eventcore.bench.cli import run as run_bench

        return run_bench(args)
    return 0
