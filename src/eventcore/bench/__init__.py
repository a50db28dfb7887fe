"""The benchmark suite: ``eventcore bench`` (or ``python -m eventcore bench``,
or ``python benchmarks/run.py``).

The standard event-store scenarios — commands at several concurrencies, raw appends in
batches, two-stream transfers, a 10,000-event fold, ``read_all`` paging, the
10,000-command memory test and an open-loop load — on the memory, SQLite and
PostgreSQL stores, each compared with a baseline measured in the same run (see
:mod:`eventcore.bench.baselines`) and checked against eventcore's speed targets
(:mod:`eventcore.bench.targets`, explained in ``docs/benchmarks.md``).

Layout: :mod:`~eventcore.bench.stores` (the store factory and the one function
that runs a command), :mod:`~eventcore.bench.baselines`,
:mod:`~eventcore.bench.measure` (closed- and open-loop load, heap and RSS),
:mod:`~eventcore.bench.scenarios`, :mod:`~eventcore.bench.runner`,
:mod:`~eventcore.bench.targets`, :mod:`~eventcore.bench.results` (records and
JSON) and :mod:`~eventcore.bench.report` (the table).
"""

from eventcore.bench.runner import BenchSettings, run_suite
from eventcore.bench.stores import open_backend, run_command

__all__ = ["BenchSettings", "open_backend", "run_command", "run_suite"]
