"""A throw-away Patroni cluster of the test's own: one etcd member, two PostgreSQL
nodes (a primary and one synchronous standby), for tests that kill a primary.

Everything lives in a fresh temporary directory and listens on 127.0.0.1 at ports
chosen free at run time (etcd's client and peer ports, each node's PostgreSQL port
and Patroni REST API port). Running as root, Patroni (and so PostgreSQL) runs as
the ``postgres`` user, since PostgreSQL refuses to run as root. Teardown kills
every process group started here, and the postmasters (Patroni starts them in a
session of their own), then deletes the directory, whatever the test did.

The settings and why:

- ``ttl: 10, loop_wait: 1, retry_timeout: 4``: failover takes seconds, while a
  busy shared machine does not make the leader miss its lock (ttl stays above
  ``loop_wait + 2 * retry_timeout``, as Patroni's documentation asks).
- ``primary_start_timeout: 0``: when the primary's postmaster dies, Patroni fails
  over at once instead of first trying to restart it in place (300 s by default).
- ``synchronous_mode: true``: a commit is acknowledged only once the synchronous
  standby has it, and Patroni promotes only a standby recorded as synchronous, so
  a failover loses no acknowledged commit. Not strict: with two nodes, strict mode
  stops every write while either node is away (the new primary would wait for the
  old one to come back as its standby); non-strict runs the new primary alone
  meanwhile. docs/failover.md weighs the two.
- ``fsync: off``: for speed only. The tests kill processes, never the machine, so
  the operating system still writes out what PostgreSQL handed it.

Opt in with ``EVENTCORE_TEST_SERVER_RESTARTS=1`` (CI sets it). Without it the
tests skip; with it, a missing binary (patroni, etcd, PostgreSQL's) is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.pg_cluster import OPT_IN_VARIABLE, _server_bin_dir

SCOPE = "eventcore-test"
START_DEADLINE = 120.0  # seconds for the cluster to come up on a busy machine
FAILOVER_DEADLINE = 90.0
_DCS = {
    "ttl": 10,
    "loop_wait": 1,
    "retry_timeout": 4,
    "primary_start_timeout": 0,
    "maximum_lag_on_failover": 1048576,
    "synchronous_mode": True,
    "postgresql": {
        "use_pg_rewind": True,
        "parameters": {
            "fsync": "off",
            "max_connections": 60,
            "shared_buffers": "16MB",
            "wal_keep_size": "64MB",
        },
    },
}
_HBA = [
    "local all all trust",
    "local replication all trust",
    "host all all 127.0.0.1/32 trust",
    "host replication all 127.0.0.1/32 trust",
]


@dataclass(frozen=True)
class Tools:
    patroni: Path
    etcd: Path
    pg_bin: Path


def find_tools() -> tuple[Tools | None, list[str]]:
    """The binaries the cluster needs, or what is missing."""
    patroni, etcd = shutil.which("patroni"), shutil.which("etcd")
    found = _server_bin_dir()
    # Patroni runs pg_controldata, pg_basebackup, pg_rewind from bin_dir: the real
    # directory, not one holding a few symbolic links to it.
    pg_bin = None if found is None else (found / "postgres").resolve().parent
    missing = [
        name
        for name, found in (
            ("patroni", patroni),
            ("etcd", etcd),
            ("PostgreSQL server binaries", pg_bin),
        )
        if found is None
    ]
    if missing or patroni is None or etcd is None or pg_bin is None:
        return None, missing
    return Tools(Path(patroni), Path(etcd), pg_bin), []


def free_ports(count: int) -> list[int]:
    """Ports the kernel calls free now, all different (held open until all are picked)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass(frozen=True)
class Node:
    name: str
    home: Path
    pg_port: int
    api_port: int

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def url(self) -> str:
        """This node alone (the ``postgres`` database)."""
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/postgres"

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def config(self, etcd_port: int, pg_bin: Path, strict: bool) -> dict[str, Any]:
        return {
            "scope": SCOPE,
            "name": self.name,
            "log": {"dir": str(self.home), "level": "INFO"},
            "restapi": {
                "listen": f"127.0.0.1:{self.api_port}",
                "connect_address": f"127.0.0.1:{self.api_port}",
            },
            "etcd3": {"hosts": f"127.0.0.1:{etcd_port}"},
            "bootstrap": {
                "dcs": {**_DCS, "synchronous_mode_strict": strict},
                "initdb": [{"encoding": "UTF8"}],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{self.pg_port}",
                "connect_address": f"127.0.0.1:{self.pg_port}",
                "data_dir": str(self.data_dir),
                "bin_dir": str(pg_bin),
                "pgpass": str(self.home / "pgpass"),
                "pg_hba": _HBA,
                "authentication": {
                    "superuser": {"username": "postgres"},
                    "replication": {"username": "postgres"},
                    "rewind": {"username": "postgres"},
                },
                "parameters": {"unix_socket_directories": str(self.home)},
            },
        }


class PatroniCluster:
    """etcd and two Patroni nodes; ``dsn`` reaches whichever node is primary.
    ``strict``: ``synchronous_mode_strict`` (benchmarks/failover.py compares)."""

    def __init__(self, tools: Tools, root: Path, *, strict: bool = False) -> None:
        self._tools = tools
        self.strict = strict
        self.root = root
        etcd_client, etcd_peer, *ports = free_ports(6)
        self._etcd_ports = (etcd_client, etcd_peer)
        self.nodes = [
            Node(f"node{n}", root / f"node{n}", ports[2 * n], ports[2 * n + 1]) for n in range(2)
        ]
        self._processes: list[subprocess.Popen[bytes]] = []
        self._patroni: dict[str, subprocess.Popen[bytes]] = {}
        self._answered = 0  # the node whose REST API answered last
        self._as_postgres = os.geteuid() == 0

    @property
    def dsn(self) -> str:
        """The multi-host DSN an application uses: every node, read-write only."""
        hosts = ",".join(f"127.0.0.1:{node.pg_port}" for node in self.nodes)
        return f"postgresql://postgres@{hosts}/postgres?target_session_attrs=read-write"

    # -- starting ------------------------------------------------------------------

    def start(self) -> None:
        self._start_etcd()
        first, second = self.nodes
        self._start_node(first)
        self._wait_for(lambda m: _role(m, first.name) == "leader", "node0 to lead")
        self._start_node(second)
        self._wait_for(
            lambda m: (
                _role(m, second.name) == "sync_standby"
                # Patroni 3.0 reports a streaming replica as "running", later ones as
                # "streaming".
                and _state(m, second.name) in ("running", "streaming")
            ),
            "node1 to stream as the synchronous standby",
        )

    def _spawn(
        self, command: list[str], log: Path, *, as_postgres: bool
    ) -> subprocess.Popen[bytes]:
        kwargs: dict[str, Any] = {}
        if as_postgres and self._as_postgres:
            entry = pwd.getpwnam("postgres")
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        with log.open("ab") as out:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as one
                env={**os.environ, "HOME": str(self.root)},
                # Not the test run's directory, which the postgres user may not be
                # allowed into (a checkout under a 0700 mktemp directory): Patroni's
                # multiprocessing children chdir to their parent's directory at start.
                cwd=self.root,
                **kwargs,
            )
        self._processes.append(process)
        return process

    def _start_etcd(self) -> None:
        client, peer = self._etcd_ports
        peer_url, client_url = f"http://127.0.0.1:{peer}", f"http://127.0.0.1:{client}"
        command = [
            str(self._tools.etcd),
            "--name=etcd0",
            f"--data-dir={self.root / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=etcd0={peer_url}",
            "--initial-cluster-state=new",
            "--log-level=warn",
            "--logger=zap",
        ]
        self._spawn(command, self.root / "etcd.log", as_postgres=False)
        deadline = time.monotonic() + START_DEADLINE
        while not _http_ok(f"{client_url}/health"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd did not start:\n{self.logs()}")
            time.sleep(0.1)

    def _start_node(self, node: Node) -> None:
        node.home.mkdir()
        config = node.home / "patroni.json"  # JSON is YAML
        config.write_text(
            json.dumps(node.config(self._etcd_ports[0], self._tools.pg_bin, self.strict))
        )
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            for path in (self.root, node.home, config):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._patroni[node.name] = self._spawn(
            [str(self._tools.patroni), str(config)], node.home / "out.log", as_postgres=True
        )

    # -- watching --------------------------------------------------------------------

    def members(self) -> list[dict[str, Any]]:
        """The cluster as any reachable node's REST API reports it (``/cluster``),
        asking first the node that answered last (a frozen one answers nothing)."""
        count = len(self.nodes)
        for step in range(count):
            node = self.nodes[(self._answered + step) % count]
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{node.api_port}/cluster", timeout=2
                ) as reply:
                    members: list[dict[str, Any]] = json.loads(reply.read())["members"]
            except (OSError, ValueError, KeyError):
                continue
            self._answered = self.nodes.index(node)
            return members
        return []

    def leader(self) -> Node | None:
        members = self.members()
        return next(
            (n for n in self.nodes if _role(members, n.name) == "leader"),
            None,
        )

    def _wait_for(self, check: Any, what: str, within: float = START_DEADLINE) -> None:
        deadline = time.monotonic() + within
        while True:
            members = self.members()
            if check(members):
                return
            exited = [p.args for p in self._processes if p.poll() is not None]
            if exited:
                raise RuntimeError(f"{exited} exited while waiting for {what}\n{self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"gave up after {within} s waiting for {what}; members: {members}\n"
                    f"{self.logs()}"
                )
            time.sleep(0.2)

    async def wait_for_new_leader(self, old: Node, within: float = FAILOVER_DEADLINE) -> Node:
        """Wait until a node other than ``old`` leads and runs; return it."""
        others = {n.name: n for n in self.nodes if n != old}

        def promoted(members: list[dict[str, Any]]) -> bool:
            return any(
                m["name"] in others and m.get("role") == "leader" and m.get("state") == "running"
                for m in members
            )

        await asyncio.to_thread(self._wait_for, promoted, "a new leader", within)
        # Two nodes: the other one.
        (leader,) = others.values()
        return leader

    def kill_primary_postmaster(self) -> Node:
        """SIGKILL the primary's postmaster (Patroni itself lives on); return its node."""
        leader = self.leader()
        if leader is None:
            raise RuntimeError(f"no leader to kill; members: {self.members()}")
        pid = leader.postmaster_pid()
        if pid is None:
            raise RuntimeError(f"{leader.name} has no postmaster.pid")
        os.kill(pid, signal.SIGKILL)
        return leader

    def freeze_primary(self) -> Node:
        """SIGSTOP the primary's Patroni and PostgreSQL, as if its machine hung: its
        connections stay open and answer nothing; Patroni's leader lock lapses after
        ``ttl`` and the standby takes over. Return the frozen node."""
        leader = self.leader()
        pid = None if leader is None else leader.postmaster_pid()
        if leader is None or pid is None:
            raise RuntimeError(f"no running leader to freeze; members: {self.members()}")
        os.killpg(self._patroni[leader.name].pid, signal.SIGSTOP)
        self._answered = (self.nodes.index(leader) + 1) % len(self.nodes)
        # The postmaster first, so that it starts no more children; each child of
        # a postmaster leads a process group of its own, so each is stopped alone.
        os.kill(pid, signal.SIGSTOP)
        for child in _children(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGSTOP)
        return leader

    def logs(self, tail: int = 40) -> str:
        """The last lines of every log, for a failure's message."""
        paths = [self.root / "etcd.log"]
        for node in self.nodes:
            paths += [node.home / "out.log", node.home / "patroni.log"]
            paths += sorted((node.data_dir / "log").glob("*"))
        parts = []
        for path in paths:
            with contextlib.suppress(OSError):
                lines = path.read_text(errors="replace").splitlines()[-tail:]
                parts.append(f"--- {path.relative_to(self.root)}\n" + "\n".join(lines))
        return "\n".join(parts)

    # -- stopping --------------------------------------------------------------------

    def destroy(self) -> None:
        """Kill everything started here: Patroni first (so it restarts nothing),
        etcd with it, then each postmaster and its children."""
        for process in self._processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        for process in self._processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        for node in self.nodes:
            pid = node.postmaster_pid()
            if pid is None or not _is_postmaster_of(pid, node.data_dir):
                continue
            # Children would exit once the postmaster is gone, unless stopped
            # (freeze_primary): each is killed, in its own process group.
            for doomed in (pid, *_children(pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(doomed, signal.SIGKILL)


def _role(members: list[dict[str, Any]], name: str) -> str | None:
    return next((m.get("role") for m in members if m.get("name") == name), None)


def _state(members: list[dict[str, Any]], name: str) -> str | None:
    return next((m.get("state") for m in members if m.get("name") == name), None)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name, in parentheses, may hold spaces: the fields after it
            # are state, then the parent's pid.
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _is_postmaster_of(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` still runs this data directory's server (a stale pid file
    may name a process that has since been reused)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(data_dir).encode() in command


def cluster_or_skip() -> Iterator[PatroniCluster]:
    """The body of the fixture: skips unless opted in; opted in, fails on anything
    missing rather than skip."""
    if os.environ.get(OPT_IN_VARIABLE) != "1":
        pytest.skip(f"kills a Patroni cluster's primary: set {OPT_IN_VARIABLE}=1")
    tools, missing = find_tools()
    if tools is None:
        pytest.fail(
            f"{OPT_IN_VARIABLE}=1, but {', '.join(missing)} missing: install the Debian "
            "packages patroni, etcd-server and postgresql (.ci/run does)"
        )
    with running_cluster(tools) as cluster:
        yield cluster


@contextlib.contextmanager
def running_cluster(tools: Tools, *, strict: bool = False) -> Iterator[PatroniCluster]:
    """A started cluster in a fresh directory; everything killed and deleted after."""
    root = Path(tempfile.mkdtemp(prefix="eventcore-patroni-"))
    cluster = PatroniCluster(tools, root, strict=strict)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)
