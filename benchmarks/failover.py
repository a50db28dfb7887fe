"""Time a PostgreSQL failover under load: SIGKILL the Patroni primary's postmaster.

    python benchmarks/failover.py [--runs 5] [--strict] [--freeze]

Each run brings up a fresh cluster (tests/patroni_cluster.py: etcd and two
PostgreSQL 15 nodes under Patroni, ttl 10 s, loop_wait 1 s, synchronous_mode,
fsync off), runs the scenario of tests/test_failover.py (six writer tasks
executing transfers with command ids, a tailing reader, the primary's postmaster
killed) and reports, per run and as medians:

- kill -> leader: until Patroni's REST API shows the standby leading (polled
  every 0.2 s): the cluster's own part, the baseline;
- kill -> first append: until the first transfer that started after the kill
  committed, through the multi-host DSN: what an application sees.

``--strict`` sets ``synchronous_mode_strict``: the promoted primary then accepts
no commit until the old one is back as its synchronous standby. ``--freeze``
stops the primary (Patroni and PostgreSQL) with SIGSTOP instead, as on a machine
that hangs: nothing is refused, every call to it waits for a timeout (the store
runs with ``command_timeout=5``, ``connect_timeout=2``), and Patroni fails over
once the leader lock lapses (``ttl``, 10 s). Needs patroni,
etcd and the PostgreSQL server binaries; run as root or as a user that may run
PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.*

from tests.failover_load import FailoverRun, run_under_failover
from tests.patroni_cluster import find_tools, running_cluster


def one_run(strict: bool, freeze: bool, seed: int) -> FailoverRun:
    tools, missing = find_tools()
    if tools is None:
        raise SystemExit(f"missing: {', '.join(missing)} (Debian: patroni, etcd-server)")
    with running_cluster(tools, strict=strict) as cluster:
        return asyncio.run(run_under_failover(cluster, seed=seed, freeze=freeze))


def main(runs: int, strict: bool, freeze: bool) -> None:
    mode = "synchronous_mode_strict" if strict else "synchronous_mode"
    mode += ", primary frozen" if freeze else ", postmaster killed"
    to_leader, to_append = [], []
    for n in range(runs):
        run = one_run(strict, freeze, seed=n + 1)
        to_leader.append(run.promoted_at - run.killed_at)
        to_append.append(run.kill_to_first_append)
        in_doubt = sum(1 for s in run.settled if s.unavailable)
        applied = sum(1 for s in run.committed if s.result and s.result.already_applied)
        print(
            f"{mode} run {n + 1}/{runs}: kill -> leader {to_leader[-1]:.2f} s, "
            f"kill -> first append {to_append[-1]:.2f} s; {len(run.committed)} transfers "
            f"committed, {in_doubt} met StoreUnavailable and were retried "
            f"({applied} found already applied)",
            flush=True,
        )
    leader, append = statistics.median(to_leader), statistics.median(to_append)
    print(
        f"{mode}: median kill -> leader {leader:.2f} s, kill -> first append {append:.2f} s "
        f"({append / leader:.2f}x) over {runs} runs"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--strict", action="store_true", help="synchronous_mode_strict")
    parser.add_argument("--freeze", action="store_true", help="SIGSTOP instead of SIGKILL")
    args = parser.parse_args()
    # Retries during the failover log warnings (the driver's, the store's): expected.
    logging.basicConfig(level=logging.ERROR)
    main(args.runs, args.strict, args.freeze)
