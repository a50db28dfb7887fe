"""A primary and its streaming-replication hot standby, both of the test's own
(never the shared server on 5432).

The primary is a :class:`~tests.pg_cluster.Cluster` (``wal_level=replica``, the
default since PostgreSQL 10, with trusted local replication connections as
``initdb --auth=trust`` writes them); the standby is a copy made with
``pg_basebackup -R`` (which writes ``primary_conninfo`` and ``standby.signal``),
started on a port and data directory of its own. Both are stopped and deleted
afterwards.

Opt in with ``EVENTCORE_TEST_SERVER_RESTARTS=1`` (CI sets it). Once opted in, a
missing server binary is a failure, not a skip: CI must run these tests.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests import pg_cluster

_TOOLS = ("initdb", "pg_ctl", "pg_basebackup", "postgres")


class Primary(pg_cluster.Cluster):
    """A cluster whose commits reach its standby as they happen."""

    def _options(self) -> str:
        # The base options turn synchronous_commit off, which leaves a commit in
        # the WAL buffers (unsent to the standby) for up to wal_writer_delay: the
        # standby would lag by up to 200 ms. A later -c wins.
        return f"{super()._options()} -c synchronous_commit=on"


class Standby(Primary):
    """A hot standby of ``primary``, made by base backup rather than initdb."""

    def create_from(self, primary: Primary) -> None:
        parent = self.data_dir.parent
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            os.chown(parent, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            self._command(
                "pg_basebackup",
                "-D",
                str(self.data_dir),
                "-h",
                "127.0.0.1",
                "-p",
                str(primary.port),
                "-U",
                "postgres",
                "-X",
                "stream",
                "-R",  # standby.signal and primary_conninfo: start as a streaming standby
                "--no-sync",
            ),
            check=True,
            capture_output=True,
        )
        self._start_on_a_free_port()


@dataclass(frozen=True, slots=True)
class ReplicatedPair:
    primary: Primary
    standby: Standby

    async def wait_replayed(self, within: float = 30.0) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        primary = await asyncpg.connect(self.primary.url, timeout=5)
        standby = await asyncpg.connect(self.standby.url, timeout=5)
        try:
            # Flushed, not inserted: a standby is sent only what the primary flushed.
            target = await primary.fetchval("SELECT pg_current_wal_flush_lsn()")
            async with asyncio.timeout(within):
                while True:
                    replayed = await standby.fetchval(
                        "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", target
                    )
                    if replayed:
                        return
                    await asyncio.sleep(0.01)
        finally:
            await primary.close()
            await standby.close()


def _bin_dir_or_fail() -> Path:
    found = pg_cluster._server_bin_dir()
    # initdb on the PATH may be a link into the server's own bin directory, which
    # also holds pg_basebackup (Debian keeps only client wrappers on the PATH).
    bin_dir = None if found is None else (found / "initdb").resolve().parent
    missing = [tool for tool in _TOOLS if bin_dir is None or not (bin_dir / tool).exists()]
    if bin_dir is None or missing:
        pytest.fail(
            f"{pg_cluster.OPT_IN_VARIABLE}=1, but PostgreSQL server binaries are missing "
            f"({', '.join(missing)}): install the PostgreSQL server package, or unset it"
        )
    return bin_dir


def replicated_pair_or_skip() -> Iterator[ReplicatedPair]:
    """The body of the fixture: skips unless opted in; once opted in, fails if it
    cannot build the pair."""
    if os.environ.get(pg_cluster.OPT_IN_VARIABLE) != "1":
        pytest.skip(
            f"starts a PostgreSQL primary and standby of its own: set "
            f"{pg_cluster.OPT_IN_VARIABLE}=1"
        )
    bin_dir = _bin_dir_or_fail()
    root = Path(tempfile.mkdtemp(prefix="eventcore-pg-replica-"))
    root.chmod(0o755)  # the servers may run as postgres: they must reach their dirs
    (root / "primary").mkdir()
    (root / "standby").mkdir()
    primary = Primary(bin_dir, root / "primary")
    standby = Standby(bin_dir, root / "standby")
    try:
        primary.create()
        standby.create_from(primary)
        yield ReplicatedPair(primary, standby)
    finally:
        standby.destroy()
        primary.destroy()
        shutil.rmtree(root, ignore_errors=True)
