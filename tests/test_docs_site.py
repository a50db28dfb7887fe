"""The documentation site builds with MkDocs in strict mode: any warning fails.

A broken link, a page missing from the nav, a docstring mkdocstrings cannot render
or a cross-reference to nothing fails this test, and so ``make test`` and CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=project,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _problems(output: str) -> list[str]:
    """Lines that are warnings or errors, or say a page is left out of the nav."""
    return [
        line
        for line in output.splitlines()
        if line.startswith(("WARNING", "ERROR")) or "not included in the" in line
    ]


def test_the_site_builds_in_strict_mode_without_a_warning(tmp_path: Path) -> None:
    site = tmp_path / "site"
    build = _build(ROOT, site)
    output = build.stdout + build.stderr
    assert build.returncode == 0, output
    assert _problems(output) == [], output
    # The API reference really was rendered from the docstrings, cross-links included.
    execute_page = (site / "api" / "execute" / "index.html").read_text()
    assert 'id="eventcore.execute.execute"' in execute_page
    assert 'href="../errors/#eventcore.errors.StateReuseRefused"' in execute_page


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", project / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", project / "docs")
    (project / "src").symlink_to(ROOT / "src")
    with (project / "docs" / "errors.md").open("a") as page:
        page.write("\nSee [the missing page](no-such-page.md).\n")
    build = _build(project, tmp_path / "site")
    assert build.returncode != 0
    assert any("no-such-page.md" in line for line in _problems(build.stdout + build.stderr))
