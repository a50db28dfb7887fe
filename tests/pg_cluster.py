"""A throw-away PostgreSQL cluster of the test's own, for tests that stop, start or
restart a server (never the shared one on 5432).

``initdb`` makes a data directory in a fresh temporary directory; the server
listens on 127.0.0.1 at a free port from 55432 up, with its socket in the data
directory, and is stopped and deleted afterwards. Running as root, the server
binaries run as the ``postgres`` user (PostgreSQL refuses to run as root).

Opt in with ``EVENTCORE_TEST_SERVER_RESTARTS=1`` (CI sets it): restarting a server
takes seconds and needs the PostgreSQL server binaries on this machine.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

OPT_IN_VARIABLE = "EVENTCORE_TEST_SERVER_RESTARTS"
FIRST_PORT = 55432
_PORTS_TRIED = 200


def _server_bin_dir() -> Path | None:
    """The newest installed server's bin directory (Debian keeps them apart)."""
    found = shutil.which("initdb")
    if found is not None:
        return Path(found).parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return versions[-1].parent if versions else None


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Cluster:
    """One PostgreSQL server of the test's own; ``url`` reaches its ``postgres`` db."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self._bin = bin_dir
        self.data_dir = root / "data"
        self.port = 0
        self.running = False
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _command(self, tool: str, *args: str) -> list[str]:
        command = [str(self._bin / tool), *args]
        return ["runuser", "-u", "postgres", "--", *command] if self._as_postgres else command

    def _ctl(self, action: str, *args: str) -> list[str]:
        return self._command("pg_ctl", action, "-D", str(self.data_dir), "-w", "-t", "60", *args)

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=60 -c shared_buffers=16MB"
        )

    def _log(self) -> tuple[str, str]:
        # Without a log file the server would inherit pg_ctl's output pipe and
        # keep it open: waiting for pg_ctl's output would never end.
        return ("-l", str(self.data_dir / "log"))

    def create(self) -> None:
        self.data_dir.mkdir()
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            os.chown(self.data_dir.parent, entry.pw_uid, entry.pw_gid)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            self._command(
                "initdb", "-D", str(self.data_dir), "--auth=trust", "-U", "postgres", "--no-sync"
            ),
            check=True,
            capture_output=True,
        )
        self._start_on_a_free_port()

    def _start_on_a_free_port(self) -> None:
        # Other test runs may pick ports at the same time: if starting fails on
        # a port that looked free, try the next.
        for port in range(FIRST_PORT, FIRST_PORT + _PORTS_TRIED):
            if not _port_is_free(port):
                continue
            self.port = port
            done = subprocess.run(
                self._ctl("start", "-o", self._options(), *self._log()),
                capture_output=True,
            )
            if done.returncode == 0:
                self.running = True
                return
        raise RuntimeError(f"no free port for a test PostgreSQL cluster from {FIRST_PORT}")

    async def _run(self, command: list[str]) -> None:
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{command} failed: {output.decode(errors='replace')}")

    async def stop(self) -> None:
        """Stop the server; fast mode ends every session, as an operator would."""
        await self._run(self._ctl("stop", "-m", "fast"))
        self.running = False

    async def start(self) -> None:
        await self._run(self._ctl("start", "-o", self._options(), *self._log()))
        self.running = True

    async def restart(self) -> None:
        self.running = False
        await self._run(self._ctl("restart", "-m", "fast", "-o", self._options(), *self._log()))
        self.running = True

    async def ensure_running(self) -> None:
        if not self.running:
            await self.start()

    def destroy(self) -> None:
        if self.port:  # stopping a stopped server fails harmlessly
            subprocess.run(self._ctl("stop", "-m", "immediate"), capture_output=True)


def cluster_or_skip() -> Iterator[Cluster]:
    """The body of the fixture: skips (a failure in CI, see conftest) unless opted in."""
    if os.environ.get(OPT_IN_VARIABLE) != "1":
        pytest.skip(f"restarts a PostgreSQL server of its own: set {OPT_IN_VARIABLE}=1")
    bin_dir = _server_bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    root = Path(tempfile.mkdtemp(prefix="eventcore-pg-"))
    cluster = Cluster(bin_dir, root)
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)
