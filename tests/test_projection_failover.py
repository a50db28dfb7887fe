"""Several runner processes, one projection: one works, a killed one is replaced.

Three processes run the projection ``failover`` (tests/projection_failover_proc.py)
on one database while this test appends events; the read model is a table in the
same database keyed by event position. The leader is killed with SIGKILL mid-run;
another runner must take over from the checkpoint, and the table must end up
equal to a replay of the whole log. See tests/failover_harness.py for the steps.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests import pg
from tests.failover_harness import HOLDERS, FailoverOutcome, PostgresSide, SQLiteSide, run_failover


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def outcome(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FailoverOutcome]:
    if request.param == "sqlite":
        yield await run_failover(SQLiteSide(tmp_path / "events.sqlite"))
        return
    async for schema in pg.schema_fixture():
        yield await run_failover(PostgresSide(pg.PG_URL, schema))


async def test_a_killed_leader_is_replaced_and_the_read_model_equals_a_replay(
    outcome: FailoverOutcome,
) -> None:
    # One runner at a time: the lease named the leader, and only it wrote rows.
    assert outcome.holder_before_kill == outcome.leader
    assert {row[3] for row in outcome.rows_before_kill} == {outcome.leader}
    # Another took over, holds the lease, and the third stayed on standby.
    assert outcome.successor in HOLDERS
    assert outcome.successor != outcome.leader
    assert outcome.holder_after_takeover == outcome.successor
    assert outcome.survivors_alive
    writers = [row[3] for row in outcome.rows]
    assert set(writers) <= {outcome.leader, outcome.successor}
    # The successor resumed from the checkpoint: the leader's rows are a prefix of
    # the log (what the successor redelivered, it overwrote), the successor's the rest.
    switch = writers.index(outcome.successor)
    assert Counter(writers[:switch]) == Counter({outcome.leader: switch})
    assert set(writers[switch:]) == {outcome.successor}
    assert switch > 0, "the successor started from the beginning, not the checkpoint"
    # The read model is what a replay of the whole log from scratch gives.
    replay = [(e.global_position, e.stream_id, e.event_type) for e in outcome.log]
    assert [row[:3] for row in outcome.rows] == replay
