"""Counting instructions with callgrind, for the scripts that offer ``--instructions``."""

from __future__ import annotations

import re
import subprocess


def instructions(command: list[str]) -> int:
    """The instructions ``valgrind --tool=callgrind`` counts for running ``command``."""
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    done = subprocess.run(valgrind + command, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in callgrind's output:\n{done.stderr}")
    return int(found.group(1))
