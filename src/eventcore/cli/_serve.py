"""``eventcore serve``: the monitoring app (/metrics, /health, /dashboard) for a store,
and :func:`serving`, which ``eventcore demo --serve`` uses too."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import click

from eventcore.cli._common import Failure, bind, database_url_option, run

if TYPE_CHECKING:
    from eventcore.application import Application


def check_web_installed() -> None:
    """Fail at once, with the install command, when the web extra is missing."""
    try:
        import uvicorn  # noqa: F401

        import eventcore.web  # noqa: F401
    except ImportError as exc:
        raise Failure(
            f"the monitoring app needs the web extra ({exc.name} is missing): "
            "pip install 'eventcore[web]'"
        ) from exc


@contextlib.asynccontextmanager
async def serving(app: Application, sock: socket.socket) -> AsyncIterator[str]:
    """Serve ``app``'s monitoring endpoints on the bound ``sock`` while the block
    runs; yield the dashboard's URL once the server accepts connections."""
    import uvicorn

    from eventcore.web import create_app

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # Ctrl-C belongs to asyncio.run: it cancels the command, and leaving
            # this block stops the server.
            yield

    server = Server(uvicorn.Config(create_app(app), log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task  # it failed to start: raise why
                raise Failure("the monitoring server stopped before it started")
            await asyncio.sleep(0.02)
        host, port = sock.getsockname()[:2]
        yield f"http://{_url_host(host)}:{port}/dashboard"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    return f"[{host}]" if ":" in host else host


@click.command(epilog="Runs until Ctrl-C, which ends it with exit code 0.")
@database_url_option()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="port to listen on (0: any free port)",
)
def serve(database_url: str, host: str, port: int) -> None:
    """Serve the monitoring app for a store: /metrics, /health, /dashboard.

    The store must exist (create it with `eventcore migrate`); nothing is written.
    The figures show the traffic of this process only: commands run elsewhere
    reach /health and the log, not the charts.
    """
    check_web_installed()
    sock = bind(host, port)
    try:
        run(_serve(database_url, sock))
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        sock.close()


async def _serve(database_url: str, sock: socket.socket) -> None:
    from eventcore.application import Application
    from eventcore.cli._stores import open_existing
    from eventcore.performance import PerformanceMetrics
    from eventcore.prometheus import PrometheusObserver

    store = await open_existing(database_url)
    observers = [PerformanceMetrics(), PrometheusObserver()]
    async with Application(store, observers=observers) as app, serving(app, sock) as url:
        click.echo(f"serving {url} (also /metrics, /health); Ctrl-C stops")
        await asyncio.Event().wait()  # until Ctrl-C cancels it
