"""Command ids: a retried command whose first attempt committed is recognised, not
written twice (the outcome of an append whose reply was lost is unknown)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import pytest

from eventcore import (
    Application,
    BusinessRuleViolation,
    Command,
    EventMetadata,
    ExecutionResult,
    GroupCommitSettings,
    InMemoryEventStore,
    StateCache,
    StoreUnavailable,
    StreamId,
    ValidationError,
    execute,
    execute_all,
)
from eventcore.backends._group_commit import GroupCommitter
from eventcore.demo.bank import Deposit, MoneyDeposited, Transfer, bank_codec
from eventcore.observe import CommandReport, Observer
from eventcore.observed_store import observe_store
from eventcore.store import AppendOutcome, BatchAppender, EventLookup, EventStore
from eventcore.testing.faults import FaultInjectingStore
from eventcore.types import AppendRequest, AppendResult


async def _balance(store: EventStore, account: str) -> int:
    total = 0
    for record in await store.read_stream(account):
        event = bank_codec.decode(record)
        total += event.amount if isinstance(event, MoneyDeposited) else -event.amount
    return total


async def test_same_command_id_twice_writes_once_and_reports_the_original_outcome(
    any_store: EventStore,
) -> None:
    first = await execute(any_store, Deposit("acc", 10), codec=bank_codec, command_id="dep-1")
    again = await execute(any_store, Deposit("acc", 10), codec=bank_codec, command_id="dep-1")

    assert first.already_applied is False
    assert again == dataclasses.replace(first, already_applied=True)
    assert await _balance(any_store, "acc") == 10
    assert len(await any_store.read_all()) == 1


async def test_different_command_ids_each_write(any_store: EventStore) -> None:
    key = uuid.uuid4()
    await execute(any_store, Deposit("acc", 10), codec=bank_codec, command_id=key)
    other = await execute(
        any_store, Deposit("acc", 10), codec=bank_codec, command_id=str(key) + "x"
    )
    assert other.already_applied is False
    assert await _balance(any_store, "acc") == 20


async def test_a_lost_reply_is_retried_safely_with_a_command_id_and_duplicates_without(
    any_store: EventStore,
) -> None:
    """The append commits, then the connection drops: the caller sees StoreUnavailable
    though the money is deposited. Nothing can tell it apart from a failed append, so
    a natural retry deposits twice; with a command id the retry is recognised."""
    store = FaultInjectingStore(any_store)

    store.lose_next_append_replies()
    with pytest.raises(StoreUnavailable):
        await execute(store, Deposit("keyed", 10), codec=bank_codec, command_id="dep-7")
    assert await _balance(store, "keyed") == 10  # committed despite the error
    retried = await execute(store, Deposit("keyed", 10), codec=bank_codec, command_id="dep-7")
    assert retried.already_applied
    assert retried.positions == ((await store.read_stream("keyed"))[0].global_position,)
    assert await _balance(store, "keyed") == 10

    store.lose_next_append_replies()
    with pytest.raises(StoreUnavailable):
        await execute(store, Deposit("unkeyed", 10), codec=bank_codec)
    await execute(store, Deposit("unkeyed", 10), codec=bank_codec)
    assert await _balance(store, "unkeyed") == 20  # the duplicate a command id prevents


async def test_a_cancelled_append_that_committed_is_retried_safely(any_store: EventStore) -> None:
    store = FaultInjectingStore(any_store)
    store.lose_next_append_replies(error=asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await execute(store, Deposit("acc", 10), codec=bank_codec, command_id="dep-c")
    retried = await execute(store, Deposit("acc", 10), codec=bank_codec, command_id="dep-c")
    assert retried.already_applied
    assert await _balance(store, "acc") == 10


async def test_replay_refused_because_the_original_spent_the_money_reports_the_original(
    any_store: EventStore,
) -> None:
    await execute(any_store, Deposit("alice", 100), codec=bank_codec)
    store = FaultInjectingStore(any_store)
    store.lose_next_append_replies()
    with pytest.raises(StoreUnavailable):
        await execute(store, Transfer("alice", "bob", 70), codec=bank_codec, command_id="t-1")

    # alice now has 30: handle refuses the replay, which is recognised as applied.
    retried = await execute(store, Transfer("alice", "bob", 70), codec=bank_codec, command_id="t-1")

    withdrawn, deposited = [e.global_position for e in (await store.read_all())[1:]]
    assert retried == ExecutionResult(
        1, 2, {"alice": 2, "bob": 1}, (withdrawn, deposited), already_applied=True
    )
    assert (await _balance(store, "alice"), await _balance(store, "bob")) == (30, 70)


async def test_a_refusal_under_an_unused_command_id_is_raised(any_store: EventStore) -> None:
    with pytest.raises(BusinessRuleViolation, match="insufficient funds"):
        await execute(any_store, Transfer("alice", "bob", 70), codec=bank_codec, command_id="t-2")


@dataclass(frozen=True)
class OpenAccount(Command[bool, MoneyDeposited]):
    """Opens an account with a first deposit; decides nothing if it is open already."""

    account: str

    def streams(self) -> list[str]:
        return [self.account]

    def initial_state(self) -> bool:
        return False

    def apply(self, state: bool, stream_id: StreamId, event: MoneyDeposited) -> bool:
        return True

    def handle(self, state: bool) -> list[tuple[str, MoneyDeposited]]:
        return [] if state else [(self.account, MoneyDeposited(1, "opening"))]


async def test_replay_that_now_decides_nothing_reports_the_original(any_store: EventStore) -> None:
    store = FaultInjectingStore(any_store)
    store.lose_next_append_replies()
    with pytest.raises(StoreUnavailable):
        await execute(store, OpenAccount("acc"), codec=bank_codec, command_id="open-1")

    retried = await execute(store, OpenAccount("acc"), codec=bank_codec, command_id="open-1")
    fresh = await execute(store, OpenAccount("acc"), codec=bank_codec, command_id="open-2")

    assert retried.already_applied
    assert retried.positions == (1,)
    assert retried.stream_versions == {"acc": 1}
    assert fresh == ExecutionResult(1, 0, {"acc": 1}, ())  # nothing to do, nothing done


async def test_twenty_concurrent_executions_of_one_command_id_write_exactly_once(
    any_store: EventStore,
) -> None:
    store = FaultInjectingStore(any_store, latency=0)  # interleave, even in memory
    results = await asyncio.gather(
        *(
            execute(store, Deposit("acc", 10), codec=bank_codec, command_id="dep-x")
            for _ in range(20)
        )
    )

    assert await _balance(store, "acc") == 10
    assert sorted(r.already_applied for r in results) == [False] + [True] * 19
    assert {r.positions for r in results} == {(1,)}


class _GroupCommitTogether(FaultInjectingStore):
    """Group commit over the inner store's ``append_many``, with appends held until
    ``together`` of them have arrived, so that they share one batch."""

    def __init__(self, inner: EventStore, together: int) -> None:
        super().__init__(inner)
        self.committer = GroupCommitter(self._append_many, GroupCommitSettings())
        self.batch_sizes: list[int] = []
        self._arrived = 0
        self._together = together
        self._all_here = asyncio.Event()

    async def append(self, request: AppendRequest) -> AppendResult:
        self._arrived += 1
        if self._arrived == self._together:
            self._all_here.set()
        await self._all_here.wait()  # all wake in one loop turn, before the flush
        return await self.committer.append(request)

    async def _append_many(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        self.batch_sizes.append(len(requests))
        return await cast(BatchAppender, self.inner).append_many(requests)


async def test_a_replay_inside_a_group_commit_batch_does_not_fail_its_neighbours(
    any_store: EventStore,
) -> None:
    original = await execute(any_store, Deposit("acc", 10), codec=bank_codec, command_id="dep-g")
    neighbours = [Deposit(f"n-{i}", 5) for i in range(4)]
    store = _GroupCommitTogether(any_store, together=1 + len(neighbours))

    replay, *others = await asyncio.gather(
        execute(store, Deposit("acc", 10), codec=bank_codec, command_id="dep-g"),
        *(execute(store, command, codec=bank_codec) for command in neighbours),
    )

    assert store.batch_sizes[0] == 1 + len(neighbours)  # they did share a batch
    assert replay == dataclasses.replace(original, already_applied=True)
    assert [r.events_written for r in others] == [1] * len(neighbours)
    assert [await _balance(store, c.account) for c in neighbours] == [5] * len(neighbours)
    assert await _balance(store, "acc") == 10


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "a\x00b", "\ud800", 42, b"dep-1", 1.5, ["dep-1"]],
    ids=["empty", "blank", "nul", "lone-surrogate", "int", "bytes", "float", "list"],
)
async def test_a_bad_command_id_is_refused_naming_it_before_any_io(bad: object) -> None:
    store = FaultInjectingStore(InMemoryEventStore())
    with pytest.raises(ValidationError, match="command_id") as caught:
        await execute(store, Deposit("acc", 10), codec=bank_codec, command_id=cast(Any, bad))
    assert repr(bad) in str(caught.value)
    assert (store.read_calls, store.append_calls) == (0, 0)


async def test_a_store_that_cannot_look_events_up_refuses_a_command_id() -> None:
    class ReadAppendOnly:
        def __init__(self) -> None:
            self._inner = InMemoryEventStore()
            self.read_streams = self._inner.read_streams
            self.append = self._inner.append

    store = cast(EventStore, ReadAppendOnly())
    assert not isinstance(store, EventLookup)
    with pytest.raises(ValidationError, match="EventLookup"):
        await execute(store, Deposit("acc", 10), codec=bank_codec, command_id="dep-1")
    assert (await execute(store, Deposit("acc", 10), codec=bank_codec)).events_written == 1


def test_event_ids_derived_from_a_command_id_never_change() -> None:
    """Stored ids depend on the derivation: changing it would make every retry
    across an upgrade write again."""
    from eventcore._command_ids import CommandEventIds

    ids = CommandEventIds.of("order-1")
    assert ids is not None
    assert ids.event_id(0) == uuid.UUID("1f10d207-f51b-5ed2-af87-2f95b7942798")
    same = CommandEventIds.of(uuid.UUID("12345678-1234-5678-1234-567812345678"))
    assert same == CommandEventIds.of("12345678-1234-5678-1234-567812345678")


async def test_events_of_a_keyed_command_carry_the_derived_ids(any_store: EventStore) -> None:
    from eventcore._command_ids import CommandEventIds

    await execute(any_store, Deposit("alice", 100), codec=bank_codec)
    await execute(any_store, Transfer("alice", "bob", 5), codec=bank_codec, command_id="t-ids")
    ids = CommandEventIds.of("t-ids")
    assert ids is not None
    assert [e.event_id for e in (await any_store.read_all())[1:]] == [
        ids.event_id(0),
        ids.event_id(1),
    ]


async def test_execute_all_gives_each_command_its_own_id(any_store: EventStore) -> None:
    commands = [Deposit("a", 1), Deposit("b", 2), Deposit("a", 3)]
    keys = ["k-a1", None, uuid.UUID(int=7)]
    first = await execute_all(any_store, commands, codec=bank_codec, command_ids=keys)
    again = await execute_all(any_store, commands, codec=bank_codec, command_ids=keys)

    assert [cast(ExecutionResult, r).already_applied for r in first] == [False] * 3
    assert [cast(ExecutionResult, r).already_applied for r in again] == [True, False, True]
    assert (await _balance(any_store, "a"), await _balance(any_store, "b")) == (4, 4)


async def test_execute_all_refuses_one_command_id_for_a_whole_batch() -> None:
    store = InMemoryEventStore()
    with pytest.raises(ValidationError, match="command_ids"):
        await execute_all(store, [Deposit("a", 1)], command_id="k")
    with pytest.raises(ValidationError, match="2 command ids for 1 command"):
        await execute_all(store, [Deposit("a", 1)], command_ids=["k", "l"])
    with pytest.raises(ValidationError, match="command_ids\\[0\\]"):
        await execute_all(store, [Deposit("a", 1)], command_ids=[""])
    assert await store.read_all() == []


async def test_events_by_id_returns_stored_events_in_log_order(any_store: EventStore) -> None:
    assert isinstance(any_store, EventLookup)
    meta = EventMetadata()
    events = [bank_codec.new_event(StreamId(s), MoneyDeposited(1), meta) for s in "abc"]
    await any_store.append(AppendRequest.create({"a": 0, "b": 0, "c": 0}, events))
    stored = await any_store.read_all()
    wanted = [events[2].event_id, uuid.uuid4(), events[0].event_id]

    assert await any_store.events_by_id(wanted) == [stored[0], stored[2]]
    assert await any_store.events_by_id([]) == []
    assert await FaultInjectingStore(any_store).events_by_id(wanted) == [stored[0], stored[2]]
    with pytest.raises(ValidationError, match="'not-a-uuid'"):
        await any_store.events_by_id([cast(uuid.UUID, "not-a-uuid")])


async def test_an_application_passes_command_ids_on(any_store: EventStore) -> None:
    app = Application(any_store, codec=bank_codec)
    await app.execute(Deposit("a", 1), command_id="app-1")
    again = await app.execute(Deposit("a", 1), command_id="app-1")
    batch = await app.execute_all([Deposit("a", 1), Deposit("b", 2)], command_ids=["app-1", "b"])

    assert again.already_applied
    assert [cast(ExecutionResult, r).already_applied for r in batch] == [True, False]
    assert (await _balance(any_store, "a"), await _balance(any_store, "b")) == (1, 2)


async def test_a_replay_is_recognised_with_the_state_cache(any_store: EventStore) -> None:
    """A cached state already holds the original's events: the replay's decision
    on it (a refusal, here) is re-checked on fresh state, then recognised."""
    cache = StateCache()
    await execute(any_store, Deposit("alice", 100), codec=bank_codec, cache=cache)
    move = Transfer("alice", "bob", 70)
    first = await execute(any_store, move, codec=bank_codec, cache=cache, command_id="t-c")
    again = await execute(any_store, move, codec=bank_codec, cache=cache, command_id="t-c")

    assert again.already_applied
    assert again.positions == first.positions
    assert (await _balance(any_store, "alice"), await _balance(any_store, "bob")) == (30, 70)


class _Recorder(Observer):
    def __init__(self) -> None:
        self.reports: list[CommandReport] = []
        self.operations: list[str] = []

    def command_executed(self, report: CommandReport) -> None:
        self.reports.append(report)

    def store_operation(self, operation: str, seconds: float, error: Exception | None) -> None:
        self.operations.append(operation)


async def test_an_observed_replay_reports_no_events_written_and_its_lookup(
    any_store: EventStore,
) -> None:
    recorder = _Recorder()
    store = observe_store(any_store, recorder)
    assert isinstance(store, EventLookup)
    for _ in range(2):
        await execute(
            store, Deposit("acc", 10), codec=bank_codec, command_id="o-1", observer=recorder
        )

    assert [(r.outcome, r.events) for r in recorder.reports] == [("success", 1), ("success", 0)]
    assert recorder.operations.count("events_by_id") == 1
    assert await _balance(any_store, "acc") == 10
