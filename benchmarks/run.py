"""Run the benchmark suite: the same code and options as ``eventcore bench``.

    python benchmarks/run.py [--quick] [--backend memory,sqlite,postgres] [--json out.json]

See benchmarks/README.md, or ``python benchmarks/run.py --help``.
"""

from __future__ import annotations

import sys

from eventcore.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
