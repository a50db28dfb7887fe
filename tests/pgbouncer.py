"""A PgBouncer of the test's own, in transaction pooling mode, in front of the test
PostgreSQL server (by default the shared one on 127.0.0.1:5432, which it only
proxies to).

The configuration and the auth file go to a fresh temporary directory; PgBouncer
listens on 127.0.0.1 at a free port from 56432 up and is stopped and deleted
afterwards. Its pool holds at most ``POOL_SIZE`` server connections per database
and user, fewer than a test store opens, so server connections really are shared
between the transactions of different client connections.

Two databases are served: ``<db>`` in transaction mode (what the store uses) and
``<db>_session`` in session mode (a LISTEN can go through it).

Opt in with ``EVENTCORE_TEST_SERVER_RESTARTS=1`` (CI sets it, and installs
PgBouncer): with the variable set, a missing ``pgbouncer`` binary fails the test
instead of skipping it. PgBouncer refuses to run as root; as root it is started
with ``-u postgres``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests import pg
from tests.pg_cluster import OPT_IN_VARIABLE

FIRST_PORT = 56432
_PORTS_TRIED = 200
POOL_SIZE = 4
_READY_WITHIN = 10.0


def _binary() -> str | None:
    found = shutil.which("pgbouncer")
    if found is not None:
        return found
    # Debian installs it in /usr/sbin, which a non-root PATH may not hold.
    return "/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Bouncer:
    """One PgBouncer process of the test's own, in front of ``server_url``."""

    def __init__(self, binary: str, root: Path, server_url: str) -> None:
        self._binary = binary
        self._root = root
        target = urlsplit(server_url)
        self._server_host = target.hostname or "127.0.0.1"
        self._server_port = target.port or 5432
        self.user = target.username or "postgres"
        self.database = target.path.lstrip("/") or "postgres"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The transaction-pooled database: what a store's ``dsn`` points at."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def session_url(self) -> str:
        """The same database through a session-mode pool (LISTEN works there)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}_session"

    @property
    def direct_url(self) -> str:
        """The server itself, past the bouncer."""
        return f"postgresql://{self.user}@{self._server_host}:{self._server_port}/{self.database}"

    def _write_config(self, port: int) -> Path:
        server = f"host={self._server_host} port={self._server_port} dbname={self.database}"
        (self._root / "users.txt").write_text(f'"{self.user}" ""\n')
        config = self._root / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"{self.database} = {server}\n"
            f"{self.database}_session = {server} pool_mode=session\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self._root / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {POOL_SIZE}\n"
            "min_pool_size = 0\n"
            "reserve_pool_size = 0\n"
            "max_client_conn = 500\n"
            f"logfile = {self._root / 'pgbouncer.log'}\n"
        )
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            for path in (self._root, *self._root.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        return config

    def start(self) -> None:
        # Other test runs may take ports at the same time: if PgBouncer cannot
        # listen on a port that looked free, try the next.
        for port in range(FIRST_PORT, FIRST_PORT + _PORTS_TRIED):
            if _port_is_free(port) and self._start_on(port):
                return
        raise RuntimeError(f"no free port for a test PgBouncer from {FIRST_PORT}")

    def _start_on(self, port: int) -> bool:
        config = self._write_config(port)
        as_postgres = ["-u", "postgres"] if os.geteuid() == 0 else []
        process = subprocess.Popen(
            [self._binary, *as_postgres, str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _READY_WITHIN
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False  # it exited: most likely the port was taken meanwhile
            if _accepts(port):
                self.port = port
                self._process = process
                return True
            time.sleep(0.05)
        process.kill()
        process.wait()
        raise RuntimeError(f"PgBouncer did not listen on {port} within {_READY_WITHIN} s")

    def log(self) -> str:
        path = self._root / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


def bouncer_or_skip() -> Iterator[Bouncer]:
    """The body of the fixture: skips unless opted in; opted in, a missing
    PgBouncer fails (CI installs it)."""
    if os.environ.get(OPT_IN_VARIABLE) != "1":
        pytest.skip(f"starts a PgBouncer of its own: set {OPT_IN_VARIABLE}=1")
    binary = _binary()
    if binary is None:
        pytest.fail(
            f"{OPT_IN_VARIABLE}=1 but no pgbouncer on this machine: install it "
            "(Debian: apt-get install pgbouncer) or unset the variable"
        )
    root = Path(tempfile.mkdtemp(prefix="eventcore-pgbouncer-"))
    bouncer = Bouncer(binary, root, pg.PG_URL)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()
        shutil.rmtree(root, ignore_errors=True)
