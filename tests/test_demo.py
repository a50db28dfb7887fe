"""The README's main job: the bank demo on SQLite, end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from eventcore.demo.run import DemoOptions, run_demo


async def test_the_demo_conserves_money_and_reports_both_rounds(tmp_path: Path) -> None:
    lines: list[str] = []
    tally = await run_demo(
        DemoOptions(tmp_path / "demo.sqlite", accounts=5, transfers=60, seed=4), lines.append
    )
    assert tally.total == tally.expected_total == 5 * 1_000
    assert tally.committed + tally.refused + tally.exhausted == 120
    assert any(line.startswith("racing: 60 transfers") for line in lines)
    assert any("the conflicts are the point" in line for line in lines)
    assert any(line.startswith("execute_all + cache: 60 transfers") for line in lines)
    assert any("conserved" in line for line in lines)
    assert tally.read_model_agrees
    assert any(
        line.startswith("read model (demo-bank): balances of 5 accounts against their streams")
        and line.endswith(f"transfers (committed {tally.committed}): agrees")
        for line in lines
    )
    assert any(
        line.startswith("projection demo-bank: caught up at position ") and "lag 0 events" in line
        for line in lines
    )


async def test_running_the_demo_twice_on_one_file_keeps_both_runs(tmp_path: Path) -> None:
    db = tmp_path / "demo.sqlite"
    for _ in range(2):
        tally = await run_demo(DemoOptions(db, accounts=3, transfers=10, seed=1), lambda _: None)
        assert tally.total == tally.expected_total
        assert tally.read_model_agrees  # rebuilt from the whole log, both runs


def test_the_demo_command_runs_from_the_command_line(tmp_path: Path) -> None:
    db = tmp_path / "cli.sqlite"
    result = subprocess.run(
        [sys.executable, "-m", "eventcore", "demo", "--db", str(db), "--transfers", "20"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "money in all accounts: 10000 (expected 10000): conserved" in result.stdout
    assert ": agrees" in result.stdout
    assert "projection demo-bank: caught up" in result.stdout
    assert "performance over the run:" in result.stdout
    assert "production targets:" in result.stdout
    assert db.exists()


def test_the_demo_command_rejects_bad_arguments() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "eventcore", "demo", "--transfers", "zero"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "'zero' is not a valid integer" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_the_demo_reports_an_unusable_database_file_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "eventcore", "demo", "--db", str(tmp_path / "no" / "x.sqlite")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("eventcore demo: ")
    assert "Traceback" not in result.stderr
