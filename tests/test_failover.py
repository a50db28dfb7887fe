"""Failover of a Patroni cluster under load: the primary's postmaster is killed.

Each test brings up a cluster of its own (tests/patroni_cluster.py: etcd and two
PostgreSQL nodes, the standby synchronous) and connects through the multi-host
DSN with ``target_session_attrs=read-write``. Opt-in like every test that kills
a server: EVENTCORE_TEST_SERVER_RESTARTS=1.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventcore.backends.postgres import PostgresEventStore
from eventcore.demo.bank import MoneyDeposited, bank_codec
from tests import patroni_cluster, pg_cluster
from tests.bank_checks import OPENING_BALANCE
from tests.failover_load import FailoverRun, run_under_failover, store_config

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster() -> Iterator[patroni_cluster.PatroniCluster]:
    yield from patroni_cluster.cluster_or_skip()


@pytest.fixture(scope="module")
def failover_run(cluster: patroni_cluster.PatroniCluster) -> FailoverRun:
    """One run for the checks below (a run takes tens of seconds): on a loop of its
    own, since the tests' loops last one test each."""
    return asyncio.run(run_under_failover(cluster))


async def on_the_new_primary(run: FailoverRun) -> PostgresEventStore:
    """A store on the promoted node alone: what is there is what survived."""
    return await PostgresEventStore.open(store_config(run.promoted.url), migrate=False)


async def test_a_failover_under_load_loses_no_acknowledged_transfer(
    failover_run: FailoverRun,
) -> None:
    run = failover_run
    assert run.other_errors == [], "only StoreUnavailable may interrupt a command"
    assert any(s.unavailable for s in run.settled), "no command met the failover"
    async with await on_the_new_primary(run) as store:
        for settled in run.committed:
            assert settled.result is not None
            stored = await store.read_all(
                after=min(settled.result.positions) - 1, limit=len(settled.result.positions)
            )
            references = {bank_codec.decode(e).reference for e in stored}
            assert references == {settled.transfer.reference}, settled
        log = await store.read_all()
    written = Counter(
        (e.event_type, bank_codec.decode(e).reference)
        for e in log
        if bank_codec.decode(e).reference
    )
    assert all(n == 1 for n in written.values()), "a transfer was written twice"
    committed = {s.transfer.reference for s in run.committed}
    assert {reference for _, reference in written} == committed, "a refused transfer was written"


async def test_a_failover_under_load_keeps_the_log_gapless_and_money_conserved(
    failover_run: FailoverRun,
) -> None:
    async with await on_the_new_primary(failover_run) as store:
        log = await store.read_all()
    assert [e.global_position for e in log] == list(range(1, len(log) + 1))
    assert len({e.event_id for e in log}) == len(log)
    balances: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    for record in log:
        versions[record.stream_id] += 1
        assert record.stream_version == versions[record.stream_id], record
        event = bank_codec.decode(record)
        balances[record.stream_id] += (
            event.amount if isinstance(event, MoneyDeposited) else -event.amount
        )
        assert balances[record.stream_id] >= 0, f"{record.stream_id} overdrawn"
    assert sum(balances.values()) == OPENING_BALANCE * len(failover_run.accounts)


async def test_a_tailing_reader_sees_every_event_once_across_a_failover(
    failover_run: FailoverRun,
) -> None:
    async with await on_the_new_primary(failover_run) as store:
        log = await store.read_all()
    assert [e.global_position for e in failover_run.followed] == [e.global_position for e in log]
    assert [e.event_id for e in failover_run.followed] == [e.event_id for e in log]


def test_without_opting_in_the_harness_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pg_cluster.OPT_IN_VARIABLE, raising=False)
    with pytest.raises(pytest.skip.Exception, match=pg_cluster.OPT_IN_VARIABLE):
        next(patroni_cluster.cluster_or_skip())


def test_opted_in_without_patroni_the_harness_fails_rather_than_skips(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(pg_cluster.OPT_IN_VARIABLE, "1")
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to be found
    with pytest.raises(pytest.fail.Exception, match="patroni, etcd missing"):
        next(patroni_cluster.cluster_or_skip())
