"""The README's examples run as tests."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_a_python_example() -> None:
    assert _python_blocks()


def _run(block: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", block], capture_output=True, text=True, timeout=60, check=True
    )
    return out.stdout


def test_readme_command_example_runs_and_reserves_exactly_the_stock() -> None:
    block = _python_blocks()[0]
    lines = _run(block).splitlines()
    assert lines[0] == "3 reserved, 2 refused"
    assert lines[1:] == [
        "1 item-lamp shop.StockAdded",
        "2 item-lamp shop.ItemReserved",
        "3 order-o0 shop.ItemReserved",
        "4 item-lamp shop.ItemReserved",
        "5 order-o1 shop.ItemReserved",
        "6 item-lamp shop.ItemReserved",
        "7 order-o2 shop.ItemReserved",
    ]


def test_every_readme_example_runs_on_its_own() -> None:
    for block in _python_blocks():
        _run(block)  # each block is self-contained; check=True fails on an error


def test_readme_projection_example_keeps_each_users_last_position() -> None:
    (block,) = [b for b in _python_blocks() if "class LastSeen(Projection)" in b]
    assert _run(block) == "{'user-ann': 4, 'user-bo': 3}\n"
