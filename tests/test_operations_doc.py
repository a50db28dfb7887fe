"""docs/operations.md's example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("starlette")

DOC = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def test_the_monitored_application_example_runs() -> None:
    (block,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    out = subprocess.run(
        [sys.executable, "-c", block], capture_output=True, text=True, timeout=60, check=True
    )
    lines = out.stdout.splitlines()
    assert lines[0] == "10 commands, 10 active streams"
    assert lines[1] == "10.0"
    assert lines[2] == "['/', '/api/performance', '/dashboard', '/health', '/metrics', '/static']"
