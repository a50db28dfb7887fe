"""The ``eventcore`` command line, run for real: Click's runner for most cases, a
subprocess where exit codes, stderr and signals matter."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from eventcore.cli import main
from eventcore.cli._main import COMMANDS, root
from tests import pg

SUBCOMMANDS = [
    ["demo"],
    ["serve"],
    ["migrate"],
    ["projections"],
    ["projections", "status"],
    ["projections", "reset"],
    ["projections", "rebuild"],
    ["projections", "dead-letters"],
    ["streams"],
    ["streams", "list"],
    ["streams", "show"],
    ["streams", "tail"],
]


def invoke(*args: str) -> tuple[int, str, str]:
    """Run ``eventcore args`` through main() as the console script does."""
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = main(list(args))
        sys.stdout.flush()
        sys.stderr.flush()
    return code, out.getvalue().decode(), err.getvalue().decode()


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventcore", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A SQLite store with one short demo run in it."""
    path = tmp_path / "cli.sqlite"
    code, _, err = invoke("demo", "--db", str(path), "--accounts", "3", "--transfers", "5")
    assert code == 0, err
    return str(path)


def pg_url(schema: str) -> str:
    return f"{pg.PG_URL}?schema={schema}"


# -- help, version, usage errors ------------------------------------------------------


@pytest.mark.parametrize("command", [[], *SUBCOMMANDS, ["bench"]], ids=" ".join)
def test_every_command_has_help(command: list[str]) -> None:
    code, out, _ = invoke(*command, "--help")

    assert code == 0
    assert "usage:" in out.lower()


def test_help_lists_every_command_and_documents_the_exit_codes() -> None:
    code, out, _ = invoke("--help")

    assert code == 0
    assert all(name in out for name in COMMANDS)
    assert "Exit codes: 0 success; 1 runtime or store failure" in out


def test_version_prints_the_package_version() -> None:
    from eventcore import __version__

    code, out, _ = invoke("--version")

    assert (code, out.strip()) == (0, f"eventcore, version {__version__}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "eventcore: No such command 'nope'."),
        (["demo", "--nope"], "eventcore demo: No such option"),
        (["streams", "show"], "eventcore streams show: Missing argument 'STREAM'."),
        (["demo", "--accounts", "1"], "eventcore demo: Invalid value for '--accounts'"),
        (["demo", "--serve", "localhost:http"], "expected [HOST:]PORT"),
    ],
)
def test_usage_errors_are_one_line_on_stderr_with_exit_code_2(
    args: list[str], message: str, tmp_path: Path
) -> None:
    code, out, err = invoke(*args)

    assert code == 2
    assert err.startswith(message) or message in err
    assert len(err.splitlines()) == 1
    assert out == ""


def test_a_bad_database_url_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = invoke("streams", "list", "--database-url", "mysql://localhost/x")

    assert code == 2
    assert err.startswith("eventcore streams list: unsupported database URL 'mysql://localhost/x'")


def test_an_unreachable_server_is_a_runtime_failure() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # nothing listens there once closed
    url = f"postgresql://postgres@127.0.0.1:{port}/test"

    code, _, err = invoke("migrate", "--database-url", url)

    assert code == 1
    assert err.startswith("eventcore migrate: ")
    assert len(err.splitlines()) == 1


def test_a_missing_sqlite_file_is_refused_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sqlite"

    code, _, err = invoke("streams", "list", "--database-url", str(missing))

    assert code == 1
    assert "no SQLite database at" in err
    assert not missing.exists()


def test_errors_reach_stderr_without_a_traceback_unless_debug(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.sqlite")

    plain = cli("streams", "list", "--database-url", missing, timeout=60)
    debug = cli("--debug", "streams", "list", "--database-url", missing, timeout=60)

    assert plain.returncode == debug.returncode == 1
    assert plain.stderr.startswith("eventcore streams list: no SQLite database at")
    assert "Traceback" not in plain.stderr
    assert "Traceback" in debug.stderr


def test_an_unknown_command_exits_2_through_the_real_entry_point() -> None:
    done = cli("frobnicate", timeout=60)

    assert done.returncode == 2
    assert done.stderr == "eventcore: No such command 'frobnicate'. (see 'eventcore --help')\n"


# -- migrate ------------------------------------------------------------------------


def test_migrate_creates_a_sqlite_file_and_prints_its_version(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"

    code, out, _ = invoke("migrate", "--database-url", f"sqlite:///{path}")

    assert code == 0
    assert path.exists()
    assert out.startswith(f"SQLite at {path}: schema version ")


@pytest.mark.postgres
def test_migrate_applies_the_postgres_migrations_once(pg_schema: str) -> None:
    first = invoke("migrate", "--database-url", pg_url(pg_schema))
    again = invoke("migrate", "--database-url", pg_url(pg_schema))

    assert first[0] == again[0] == 0
    assert f"PostgreSQL (schema {pg_schema}): schema version " in first[1]
    assert "(0 migrations applied now)" not in first[1]
    assert "(0 migrations applied now)" in again[1]


@pytest.mark.postgres
def test_commands_take_the_replica_and_listener_urls_from_the_environment(
    pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A "replica" where nothing listens: were it ignored, the command would pass.
    monkeypatch.setenv("EVENTCORE_READ_DATABASE_URL", "postgresql://app@127.0.0.1:1/none")
    code, _, err = invoke("migrate", "--database-url", pg_url(pg_schema))
    assert code == 1
    assert "127.0.0.1:1/none" in err

    monkeypatch.delenv("EVENTCORE_READ_DATABASE_URL")
    code, _, err = invoke("migrate", "--database-url", f"{pg_url(pg_schema)}&pooler=pgbouncer")
    assert code == 2
    assert "EVENTCORE_LISTEN_DATABASE_URL" in err


@pytest.mark.postgres
def test_reading_commands_refuse_a_schema_that_was_never_migrated(pg_schema: str) -> None:
    code, _, err = invoke("streams", "list", "--database-url", pg_url(pg_schema))

    assert code == 1
    assert "no eventcore schema" in err
    assert "eventcore migrate" in err


# -- demo -------------------------------------------------------------------------


def test_demo_reports_throughput_latency_memory_and_the_targets(tmp_path: Path) -> None:
    code, out, err = invoke("demo", "--db", str(tmp_path / "d.sqlite"), "--transfers", "20")

    assert code == 0, err
    assert "money in all accounts: 10000 (expected 10000): conserved" in out
    assert "commands/s" in out
    assert "events/s" in out
    assert "latency p50" in out
    assert "p95" in out
    assert "p99" in out
    assert "memory" in out
    assert "production targets:" in out
    assert "latency_p99_ms:" in out


@pytest.mark.postgres
def test_demo_runs_on_postgres(pg_schema: str) -> None:
    code, out, err = invoke(
        "demo", "--database-url", pg_url(pg_schema), "--accounts", "4", "--transfers", "20"
    )

    assert code == 0, err
    assert f"a bank on PostgreSQL (schema {pg_schema})" in out
    assert "money in all accounts: 4000 (expected 4000): conserved" in out
    assert ": agrees" in out
    assert "projection demo-bank: caught up" in out


def test_demo_serve_on_a_port_in_use_fails_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        code, out, err = invoke("demo", "--db", str(path), "--serve", str(port))

    assert code == 1
    assert err.startswith(f"eventcore demo: cannot listen on 127.0.0.1:{port}")
    assert out == ""
    assert not path.exists()


def test_demo_serves_the_dashboard_while_it_runs(tmp_path: Path) -> None:
    code, out, err = invoke(
        "demo", "--db", str(tmp_path / "d.sqlite"), "--transfers", "5", "--serve", "0",
        "--linger", "0",
    )  # fmt: skip

    assert code == 0, err
    assert "dashboard: http://127.0.0.1:" in out


def test_demo_dashboard_charts_the_lag_of_the_read_model_projection(tmp_path: Path) -> None:
    db = str(tmp_path / "d.sqlite")
    process = subprocess.Popen(
        [sys.executable, "-m", "eventcore", "demo", "--db", db, "--transfers", "5", "--serve", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        while not (line := process.stdout.readline()).startswith("the dashboard stays up"):
            assert line, "the demo ended before its dashboard lingered"
            lines.append(line)
        [url] = [line.split()[1] for line in lines if line.startswith("dashboard: ")]
        with urllib.request.urlopen(url.replace("/dashboard", "/api/performance")) as response:
            snapshot = json.load(response)["snapshot"]
        with urllib.request.urlopen(url.replace("/dashboard", "/metrics")) as response:
            metrics = response.read().decode()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()

    assert snapshot["projection_lag"] == {"demo-bank": 0}
    assert 'projection_lag_events{projection="demo-bank"} 0.0' in metrics
    assert process.returncode == 0, err


# -- serve ----------------------------------------------------------------------------


def test_serve_on_a_port_in_use_is_one_line_and_exit_1(db: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        code, _, err = invoke("serve", "--database-url", db, "--port", str(port))

    assert code == 1
    assert err.startswith(f"eventcore serve: cannot listen on 127.0.0.1:{port}")
    assert len(err.splitlines()) == 1


def test_serve_answers_health_and_stops_with_exit_0_on_ctrl_c(db: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "eventcore", "serve", "--database-url", db, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once the server accepts connections
        url = line.split()[1].replace("/dashboard", "/health")
        with urllib.request.urlopen(url, timeout=10) as response:
            health = json.load(response)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()

    assert line.startswith("serving http://127.0.0.1:")
    assert health["status"] == "ok"
    assert health["head_position"] > 0
    assert process.returncode == 0, err


# -- streams --------------------------------------------------------------------------


def test_streams_list_shows_each_stream_and_its_version(db: str) -> None:
    code, out, _ = invoke("streams", "list", "--database-url", db, "--json")

    listed = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert len(listed) == 3
    assert all(s["stream_id"].endswith(f"-account-{i}") for i, s in enumerate(listed))
    assert all(s["version"] >= 1 for s in listed)


def test_streams_list_pages_with_limit_and_after(db: str) -> None:
    code, first, err = invoke("streams", "list", "--database-url", db, "--limit", "2")
    last = first.splitlines()[-1].split("\t")[0]
    _, rest, _ = invoke("streams", "list", "--database-url", db, "--after", last)

    assert code == 0
    assert len(first.splitlines()) == 2
    assert "more: --after" in err
    assert len(rest.splitlines()) == 1


def test_streams_show_prints_a_streams_events_with_their_payloads(db: str) -> None:
    _, listing, _ = invoke("streams", "list", "--database-url", db, "--json")
    stream = json.loads(listing.splitlines()[0])["stream_id"]

    code, out, _ = invoke("streams", "show", stream, "--database-url", db, "--json")

    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [e["version"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "bank.MoneyDeposited"
    assert events[0]["payload"]["amount"] == 1000
    assert all(e["stream_id"] == stream for e in events)


def test_streams_show_pages_by_version(db: str) -> None:
    _, listing, _ = invoke("streams", "list", "--database-url", db, "--json")
    stream = json.loads(listing.splitlines()[0])["stream_id"]

    code, out, err = invoke("streams", "show", stream, "--database-url", db, "--limit", "1")

    assert code == 0
    assert len(out.splitlines()) == 1
    assert "\tv1\t" in out
    assert "more: --from-version 2" in err


def test_streams_show_of_a_missing_stream_fails_with_exit_1(db: str) -> None:
    code, out, err = invoke("streams", "show", "no-such-stream", "--database-url", db)

    assert code == 1
    assert err == (
        "eventcore streams show: stream 'no-such-stream' has no events "
        "(eventcore streams list shows them)\n"
    )
    assert out == ""


def test_streams_show_of_an_invalid_stream_id_is_a_usage_error(db: str) -> None:
    code, _, err = invoke("streams", "show", "bad*id", "--database-url", db)

    assert code == 2
    assert err.startswith("eventcore streams show: ")


@pytest.mark.postgres
def test_streams_list_and_show_on_postgres(pg_schema: str) -> None:
    url = pg_url(pg_schema)
    assert invoke("demo", "--database-url", url, "--accounts", "2", "--transfers", "3")[0] == 0

    code, out, _ = invoke("streams", "list", "--database-url", url, "--json")
    streams = [json.loads(line)["stream_id"] for line in out.splitlines()]
    shown = invoke("streams", "show", streams[0], "--database-url", url)

    assert code == 0
    assert len(streams) == 2
    assert shown[0] == 0
    assert "bank.MoneyDeposited" in shown[1]


def test_streams_tail_prints_the_log_and_stops_with_exit_0_on_ctrl_c(db: str) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "eventcore", "streams", "tail", "--database-url", db,
         "--after", "0", "--type", "bank.MoneyDeposited"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # the oldest event: following has begun
        process.send_signal(signal.SIGINT)
        rest, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()

    lines = [first, *rest.splitlines()]
    assert process.returncode == 0, err
    assert first.startswith("#1\t")
    assert "bank.MoneyDeposited" in first
    assert all("bank.MoneyWithdrawn" not in line for line in lines)
    assert "Traceback" not in err


def test_the_registry_names_a_command_module_for_every_command() -> None:
    assert sorted(root.list_commands(None)) == sorted(COMMANDS)  # type: ignore[arg-type]
