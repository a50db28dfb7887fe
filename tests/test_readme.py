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


def test_readme_command_example_runs_and_reserves_exactly_the_stock() -> None:
    (block,) = _python_blocks()
    out = subprocess.run(
        [sys.executable, "-c", block], capture_output=True, text=True, timeout=60, check=True
    )
    lines = out.stdout.splitlines()
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
