"""What the commands share: the database URL option, running a coroutine, failing."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

import click

from eventcore.errors import EventCoreError, ValidationError

T = TypeVar("T")

EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
DATABASE_URL_VARIABLE: Final = "EVENTCORE_DATABASE_URL"


class Failure(click.ClickException):
    """A command failed at run time: one line on stderr, exit code 1."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        ctx = click.get_current_context(silent=True)
        self.command_path = ctx.command_path if ctx is not None else "eventcore"


class BadInput(Failure):
    """The input was refused (a bad database URL, stream id, filter): exit code 2."""

    exit_code = EXIT_USAGE


F = TypeVar("F", bound=Callable[..., Any])


def database_url_option(*, required: bool = True) -> Callable[[F], F]:
    return click.option(
        "--database-url",
        "database_url",
        envvar=DATABASE_URL_VARIABLE,
        show_envvar=True,
        required=required,
        metavar="URL",
        help="the store: memory:, sqlite:///path.sqlite (or a path), "
        "postgresql://user@host/db?schema=name (a read replica and the listener's "
        "server: $EVENTCORE_READ_DATABASE_URL, $EVENTCORE_LISTEN_DATABASE_URL)",
    )


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine``; an eventcore error becomes a :class:`Failure`.

    Bad input (a :class:`ValidationError`, such as a bad database URL) exits 2;
    a store that cannot be reached or used, 1.
    """
    try:
        return asyncio.run(coroutine)
    except ValidationError as exc:
        raise BadInput(str(exc)) from exc
    except (EventCoreError, OSError) as exc:
        raise Failure(_describe(exc)) from exc


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return text if text else type(exc).__name__


def parse_address(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``[HOST:]PORT`` as ``(host, port)``; a bad one is a usage error."""
    host, colon, port_text = text.rpartition(":")
    host = host.strip("[]") if colon else default_host
    try:
        port = int(port_text)
    except ValueError:
        raise click.BadParameter(f"expected [HOST:]PORT, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise click.BadParameter(f"port must be from 0 to 65535, got {port}")
    return host or default_host, port


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, bound before anything else happens, so
    that a port in use fails the command at once, with nothing written."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise Failure(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise Failure(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} "
            "(choose another port with --port, or 0 for any free port)"
        ) from exc
    return sock
