"""The executor's decision logic, driven by hand: no store, no event loop."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from eventcore import EventMetadata, RetriesExhausted, RetryPolicy, VersionConflict
from eventcore._plan import DEFAULT_FOLD_PAGE_SIZE
from eventcore.demo.bank import MoneyDeposited, Transfer, bank_codec
from eventcore.plan import AppendEvents, Plan, ReadStreams, Sleep, plan_execution
from eventcore.types import AppendResult, RecordedEvent, StreamId, new_event_id

BOTH = (StreamId("a"), StreamId("b"))


def _deposit(stream: str, version: int, amount: int) -> RecordedEvent:
    name, payload = bank_codec.encode(MoneyDeposited(amount))
    return RecordedEvent(
        new_event_id(),
        StreamId(stream),
        version,
        version,
        name,
        payload,
        EventMetadata(),
        datetime.now(UTC),
    )


def _plan(retry: RetryPolicy | None = None) -> Plan:
    return plan_execution(
        Transfer("a", "b", 30),
        codec=bank_codec,
        retry=retry or RetryPolicy(),
        metadata=EventMetadata("c"),
        rng=random.Random(1),
    )


def test_plan_reads_then_appends_with_every_read_version() -> None:
    plan = _plan()
    step = next(plan)
    assert step == ReadStreams(BOTH, (1, 1), DEFAULT_FOLD_PAGE_SIZE)
    step = plan.send({"a": [_deposit("a", 1, 50), _deposit("a", 2, 50)], "b": []})
    assert isinstance(step, AppendEvents)
    assert step.request.expected == (("a", 2), ("b", 0))
    assert [e.stream_id for e in step.request.events] == ["a", "b"]
    assert {e.metadata.correlation_id for e in step.request.events} == {"c"}
    with pytest.raises(StopIteration) as done:
        plan.send(AppendResult({StreamId("a"): 3, StreamId("b"): 1}, (3, 4)))
    assert done.value.value.attempts == 1
    assert done.value.value.positions == (3, 4)


def test_plan_sleeps_with_backoff_then_rereads_after_a_conflict() -> None:
    plan = _plan()
    next(plan)
    plan.send({"a": [_deposit("a", 1, 100)], "b": []})
    step = plan.throw(VersionConflict("a", 1, 2))
    assert isinstance(step, Sleep)
    assert 0.008 <= step.seconds <= 0.012
    assert plan.send(None) == ReadStreams(BOTH, (1, 1), DEFAULT_FOLD_PAGE_SIZE)
    step = plan.send({"a": [_deposit("a", 1, 100), _deposit("a", 2, 5)], "b": []})
    assert isinstance(step, AppendEvents)
    assert step.request.expected == (("a", 2), ("b", 0))


def test_plan_gives_up_after_the_policys_attempts() -> None:
    plan = _plan(RetryPolicy.fixed(0, max_retries=1))
    next(plan)
    plan.send({"a": [_deposit("a", 1, 100)], "b": []})
    assert isinstance(plan.throw(VersionConflict("a", 1, 2)), Sleep)
    plan.send(None)
    plan.send({"a": [_deposit("a", 1, 100)], "b": []})
    with pytest.raises(RetriesExhausted) as caught:
        plan.throw(VersionConflict("b", 0, 1))
    assert caught.value.attempts == 2
    assert caught.value.last_conflict.stream_id == "b"
