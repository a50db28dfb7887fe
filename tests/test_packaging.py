"""The distribution: an sdist and a wheel that install in a fresh venv and work."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import eventcore

ROOT = Path(__file__).resolve().parent.parent

SMOKE = """
import asyncio, sys, tempfile
from dataclasses import dataclass
from pathlib import Path
import eventcore
from eventcore import Application, Codec, Command

codec = Codec()

@codec.register("smoke.Noted")
@dataclass(frozen=True)
class Noted:
    text: str

@dataclass(frozen=True)
class Note(Command[None, Noted]):
    text: str
    def streams(self): return ["notes"]
    def initial_state(self): return None
    def apply(self, state, stream_id, event): return None
    def handle(self, state): return [("notes", Noted(self.text))]

async def main():
    path = Path(tempfile.mkdtemp()) / "smoke.sqlite"
    async with await Application.open(path, codec=codec) as app:
        await app.execute(Note("hello"))
        (event,) = await app.store.read_all()
        print(eventcore.__version__, app.decode(event).text)

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


@pytest.mark.slow
def test_the_wheel_carries_the_migrations_and_the_type_marker(dist: Path) -> None:
    (wheel,) = dist.glob("eventcore-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert "eventcore/py.typed" in names
    assert any(n.startswith("eventcore/backends/postgres/migrations/0001") for n in names)
    assert f"eventcore-{eventcore.__version__}-py3-none-any.whl" == wheel.name


@pytest.mark.slow
def test_the_wheel_carries_the_dashboard_and_its_chart_library(dist: Path) -> None:
    (wheel,) = dist.glob("eventcore-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for static in ("dashboard.html", "dashboard.js", "dashboard.css", "chart.umd.js"):
        assert f"eventcore/web/static/{static}" in names
    assert "eventcore/web/static/chart.js.LICENSE.md" in names


@pytest.mark.slow
def test_the_sdist_carries_the_sources_and_the_migrations(dist: Path) -> None:
    (sdist,) = dist.glob("eventcore-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    root = f"eventcore-{eventcore.__version__}"
    assert f"{root}/pyproject.toml" in names
    assert f"{root}/src/eventcore/backends/postgres/migrations/0001_initial.sql" in names


@pytest.mark.slow
def test_the_wheel_installs_in_a_fresh_venv_and_runs_a_command(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("eventcore-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    out = subprocess.run(
        [str(python), "-c", SMOKE], check=True, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split() == [eventcore.__version__, "hello"]
    help_text = subprocess.run(
        [str(venv / "bin" / "eventcore"), "--help"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Usage: eventcore" in help_text.stdout
