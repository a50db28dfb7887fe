"""``eventcore projections``: status, reset, rebuild and dead-letters, on SQLite and
PostgreSQL, through main() as the console script runs it, and once as a real process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventcore.application import Application, open_store
from eventcore.demo.bank import Deposit, bank_codec
from eventcore.projection import FailurePolicy, Projection, RunnerOptions
from eventcore.store import ProjectionStore
from eventcore.types import RecordedEvent
from tests import pg
from tests.test_cli import invoke

ROOT = Path(__file__).resolve().parent.parent
FAST = RunnerOptions(poll_interval=0.02)
HOLDER = "elsewhere:4242:cafe"


class Counter(Projection):
    """Keeps the positions it handled; fails on the positions in ``fail_at``."""

    name = "counter"
    failure_policy = FailurePolicy.skip()

    def __init__(self, fail_at: frozenset[int] = frozenset()) -> None:
        self.fail_at = fail_at
        self.positions: list[int] = []

    async def handle(self, event: RecordedEvent) -> None:
        if event.global_position in self.fail_at:
            raise RuntimeError(f"cannot count event #{event.global_position}")
        self.positions.append(event.global_position)

    async def reset(self) -> None:
        self.positions.clear()


REBUILT = Counter()  # what `rebuild --projection tests.test_cli_projections:REBUILT` fills


async def _seed(url: str) -> None:
    """Six events; projection counter ran up to them, skipping #2 as a dead letter,
    projection other up to 3; then two more events (counter lags by two)."""
    async with Application(await open_store(url), codec=bank_codec) as app:
        for account in ("a", "b", "c", "a", "b", "c"):
            await app.execute(Deposit(f"account-{account}", 10))
        async with app.projection_runner(Counter(frozenset({2})), options=FAST) as runner:
            await runner.caught_up()
        store = app.store
        assert isinstance(store, ProjectionStore)
        await store.save_checkpoint("other", 3)
        for account in ("a", "b"):
            await app.execute(Deposit(f"account-{account}", 5))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A store with two projections in it (see _seed), by database URL."""
    if request.param == "sqlite":
        path = str(tmp_path / "projections.sqlite")
        await _seed(path)
        yield path
        return
    async for schema in pg.schema_fixture():
        address = f"{pg.PG_URL}?schema={schema}"
        await _seed(address)
        yield address


def _hold_lease(url: str, name: str) -> None:
    asyncio.run(_hold(url, name))


async def _hold(url: str, name: str) -> None:
    store = await open_store(url)
    try:
        assert isinstance(store, ProjectionStore)
        assert await store.acquire_lease(name, HOLDER, 600)
    finally:
        await store.close()


def _checkpoint_and_letters(url: str, name: str) -> tuple[int | None, int]:
    return asyncio.run(_load(url, name))


async def _load(url: str, name: str) -> tuple[int | None, int]:
    store = await open_store(url)
    try:
        assert isinstance(store, ProjectionStore)
        return await store.load_checkpoint(name), len(await store.dead_letters(name))
    finally:
        await store.close()


# -- status -----------------------------------------------------------------------------


def test_status_shows_position_lag_state_last_error_and_dead_letters(url: str) -> None:
    code, out, err = invoke("projections", "status", "counter", "--database-url", url)

    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "counter"
    assert lines[1].startswith("  position      6 of 8: behind (lag 2 events, ")
    assert lines[2] == "  state         stopped (no runner holds its lease)"
    assert lines[3] == ("  last error    RuntimeError: cannot count event #2 (dead letter at #2)")
    assert lines[4] == "  dead letters  1"


def test_status_without_a_name_lists_every_projection_with_a_checkpoint(url: str) -> None:
    code, out, err = invoke("projections", "status", "--database-url", url, "--json")

    assert code == 0, err
    reports = [json.loads(line) for line in out.splitlines()]
    assert [(r["name"], r["position"], r["lag"]) for r in reports] == [
        ("counter", 6, 2),
        ("other", 3, 5),
    ]
    assert reports[0]["dead_letters"] == 1
    assert reports[1]["last_error"] is None
    assert all(r["state"] == "stopped" and r["lease_holder"] is None for r in reports)


def test_status_names_the_runner_holding_the_lease(url: str) -> None:
    _hold_lease(url, "counter")

    code, out, err = invoke("projections", "status", "counter", "--database-url", url)

    assert code == 0, err
    assert f"  state         running (lease held by {HOLDER})" in out.splitlines()


def test_status_of_an_unknown_projection_is_one_line_and_exit_1(url: str) -> None:
    code, out, err = invoke("projections", "status", "nope", "--database-url", url)

    assert code == 1
    assert out == ""
    assert err.startswith("eventcore projections status: no projection named 'nope'")
    assert len(err.splitlines()) == 1


# -- reset ------------------------------------------------------------------------------


def test_reset_with_yes_moves_the_checkpoint_to_zero_and_clears_dead_letters(
    url: str,
) -> None:
    code, out, err = invoke("projections", "reset", "counter", "--yes", "--database-url", url)

    assert code == 0, err
    assert "projection 'counter' reset: position 0, no dead letters" in out
    assert _checkpoint_and_letters(url, "counter") == (0, 0)
    assert _checkpoint_and_letters(url, "other") == (3, 0)


def test_reset_asks_first_and_changes_nothing_when_declined(url: str) -> None:
    from click.testing import CliRunner

    from eventcore.cli._main import root

    result = CliRunner().invoke(
        root, ["projections", "reset", "counter", "--database-url", url], input="n\n"
    )

    assert result.exit_code == 1
    assert "reset projection 'counter' from position 6 to 0 and clear its 1 dead letters?" in (
        result.output
    )
    assert _checkpoint_and_letters(url, "counter") == (6, 1)


def test_reset_proceeds_when_confirmed(url: str) -> None:
    from click.testing import CliRunner

    from eventcore.cli._main import root

    result = CliRunner().invoke(
        root, ["projections", "reset", "counter", "--database-url", url], input="y\n"
    )

    assert result.exit_code == 0, result.output
    assert _checkpoint_and_letters(url, "counter") == (0, 0)


def test_reset_refuses_while_a_runner_holds_the_lease(url: str) -> None:
    _hold_lease(url, "counter")

    code, _, err = invoke("projections", "reset", "counter", "--yes", "--database-url", url)

    assert code == 1
    assert f"projection 'counter' is running (lease held by {HOLDER})" in err
    assert _checkpoint_and_letters(url, "counter") == (6, 1)


def test_reset_of_an_unknown_projection_is_exit_1(url: str) -> None:
    code, _, err = invoke("projections", "reset", "nope", "--yes", "--database-url", url)

    assert code == 1
    assert "no projection named 'nope'" in err


# -- rebuild ----------------------------------------------------------------------------


def test_rebuild_replays_the_whole_log_into_the_named_projection(url: str) -> None:
    REBUILT.positions = [99]  # emptied by the rebuild
    target = "tests.test_cli_projections:REBUILT"

    code, out, err = invoke(
        "projections", "rebuild", "counter", "--projection", target, "--database-url", url
    )

    assert code == 0, err
    assert "projection 'counter' rebuilt: position 8 of 8, 0 dead letters" in out
    assert REBUILT.positions == list(range(1, 9))
    assert _checkpoint_and_letters(url, "counter") == (8, 0)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.test_cli_projections", "--projection must be MODULE:ATTRIBUTE"),
        ("tests.no_such_module:X", "cannot import 'tests.no_such_module'"),
        ("tests.test_cli_projections:Nope", "has no 'Nope'"),
        ("tests.test_cli_projections:HOLDER", "not a Projection"),
        ("eventcore.demo.read_model:BankReadModel", "is projection 'demo-bank', not 'counter'"),
    ],
)
def test_rebuild_refuses_a_projection_it_cannot_load(url: str, target: str, message: str) -> None:
    code, _, err = invoke(
        "projections", "rebuild", "counter", "--projection", target, "--database-url", url
    )

    assert code == 2
    assert message in err
    assert len(err.splitlines()) == 1


def test_rebuild_refuses_while_a_runner_holds_the_lease(url: str) -> None:
    _hold_lease(url, "counter")
    target = "tests.test_cli_projections:Counter"

    code, _, err = invoke(
        "projections", "rebuild", "counter", "--projection", target, "--database-url", url
    )

    assert code == 1
    assert "is running (lease held by" in err
    assert _checkpoint_and_letters(url, "counter") == (6, 1)


# -- dead letters -----------------------------------------------------------------------


def test_dead_letters_lists_each_skipped_event_with_its_error(url: str) -> None:
    code, out, err = invoke("projections", "dead-letters", "counter", "--database-url", url)

    assert code == 0, err
    [line] = out.splitlines()
    position, stream, event_type, _, _, error = line.split("\t")
    assert (position, stream, event_type) == ("#2", "account-b", "bank.MoneyDeposited")
    assert error == "RuntimeError: cannot count event #2"


def test_dead_letters_of_a_projection_without_any_says_so(url: str) -> None:
    code, out, _ = invoke("projections", "dead-letters", "other", "--database-url", url)

    assert (code, out) == (0, "projection 'other' has no dead letters\n")


def test_dead_letters_of_an_unknown_projection_is_exit_1(url: str) -> None:
    code, _, err = invoke("projections", "dead-letters", "nope", "--database-url", url)

    assert code == 1
    assert "no projection named 'nope'" in err


# -- stores that cannot answer ----------------------------------------------------------


@pytest.mark.parametrize("command", ["status", "reset counter --yes", "dead-letters counter"])
def test_the_memory_store_is_refused_in_one_line(command: str) -> None:
    code, _, err = invoke("projections", *command.split(), "--database-url", "memory:")

    assert code != 0
    assert "the in-memory store (memory:) keeps no checkpoints between processes" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("database_url", "message"),
    [
        ("mysql://somewhere/db", "unsupported database URL 'mysql://somewhere/db'"),
        ("/no/such/dir/x.sqlite", "eventcore projections status:"),
    ],
)
def test_a_bad_database_url_is_one_line_and_nonzero(database_url: str, message: str) -> None:
    code, _, err = invoke("projections", "status", "--database-url", database_url)

    assert code != 0
    assert message in err
    assert len(err.splitlines()) == 1


# -- a real process ---------------------------------------------------------------------


def test_rebuild_and_status_run_as_a_real_process(url: str) -> None:
    def eventcore(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "eventcore", "projections", *args, "--database-url", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=ROOT,  # the projection's module is imported from here
        )

    rebuilt = eventcore("rebuild", "counter", "--projection", "tests.test_cli_projections:Counter")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt: position 8 of 8, 0 dead letters" in rebuilt.stdout

    status = eventcore("status", "counter")
    assert status.returncode == 0, status.stderr
    assert "  position      8 of 8: caught up (lag 0 events, 0.0 s)" in status.stdout

    unknown = eventcore("status", "nope")
    assert unknown.returncode == 1
    assert unknown.stderr.count("\n") == 1
