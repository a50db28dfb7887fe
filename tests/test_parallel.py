"""execute_all: a batch at bounded concurrency, in submission order per declared stream."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from eventcore import (
    BusinessRuleViolation,
    Codec,
    Command,
    ExecutionResult,
    InMemoryEventStore,
    InvalidStreamId,
    RetriesExhausted,
    RetryPolicy,
    StoreUnavailable,
    StreamId,
    ValidationError,
)
from eventcore.cache import StateCache
from eventcore.demo.bank import MoneyDeposited, Transfer, bank_codec
from eventcore.parallel import execute_all
from eventcore.store import EventStore
from eventcore.testing.faults import FaultInjectingStore
from eventcore.types import RecordedEvent
from tests.bank_checks import (
    OPENING_BALANCE,
    TransferOutcomes,
    check_bank_invariants,
    open_accounts,
)

codec = Codec()


@codec.register("test.Stamp")
@dataclass(frozen=True)
class Stamped:
    label: int


@dataclass(frozen=True)
class Stamp(Command[int, Stamped]):
    """Writes its label to each declared stream; refuses when told to."""

    declared: tuple[str, ...]
    label: int
    refuse: bool = False

    def streams(self) -> Iterable[str]:
        return self.declared

    def initial_state(self) -> int:
        return 0

    def apply(self, state: int, stream_id: StreamId, event: Stamped) -> int:
        return state + 1

    def handle(self, state: int) -> list[tuple[str, Stamped]]:
        if self.refuse:
            raise BusinessRuleViolation(f"command {self.label} refuses")
        return [(stream, Stamped(self.label)) for stream in self.declared]


@dataclass(frozen=True)
class Follow(Command[int, Stamped]):
    """Appends label ``n`` to one stream, and refuses unless it holds exactly ``n`` events."""

    stream: str
    n: int

    def streams(self) -> list[str]:
        return [self.stream]

    def initial_state(self) -> int:
        return 0

    def apply(self, state: int, stream_id: StreamId, event: Stamped) -> int:
        return state + 1

    def handle(self, state: int) -> list[tuple[str, Stamped]]:
        if state != self.n:
            raise BusinessRuleViolation(f"step {self.n} ran after {state} steps")
        return [(self.stream, Stamped(self.n))]


class CountsInFlight(FaultInjectingStore):
    """Counts store calls in flight: one execute makes at most one at a time, so the
    peak bounds the number of executes running at once from below."""

    def __init__(self, inner: EventStore, *, latency: float | None = 0.001) -> None:
        super().__init__(inner, latency=latency)
        self.in_flight = 0
        self.peak = 0

    async def _counted(self, call: Any) -> Any:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await call
        finally:
            self.in_flight -= 1

    async def read_streams(
        self, stream_ids: Iterable[str], **options: Any
    ) -> dict[str, list[RecordedEvent]]:
        result: dict[str, list[RecordedEvent]] = await self._counted(
            super().read_streams(stream_ids, **options)
        )
        return result

    async def append(self, request: Any) -> Any:
        return await self._counted(super().append(request))


class SlowerForEarlierStreams(FaultInjectingStore):
    """Reading stream ``s<i>`` yields to the loop ``100 - i`` times: later ones finish first."""

    async def read_streams(
        self, stream_ids: Iterable[str], **options: Any
    ) -> dict[str, list[RecordedEvent]]:
        ids = list(stream_ids)
        for _ in range(100 - min(int(s[1:]) for s in ids)):
            await asyncio.sleep(0)
        return await super().read_streams(ids, **options)


class BlocksReads(FaultInjectingStore):
    """Every read waits forever; remembers the tasks that are waiting."""

    def __init__(self, inner: EventStore, *, expected: int) -> None:
        super().__init__(inner)
        self.expected = expected
        self.blocked: list[asyncio.Task[Any]] = []
        self.all_blocked = asyncio.Event()

    async def read_streams(
        self, stream_ids: Iterable[str], **options: Any
    ) -> dict[str, list[RecordedEvent]]:
        task = asyncio.current_task()
        assert task is not None
        self.blocked.append(task)
        if len(self.blocked) == self.expected:
            self.all_blocked.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def labels(store: EventStore, stream: str) -> list[int]:
    return [codec.decode(e).label for e in await store.read_stream(stream)]


def random_stamps(seed: int, count: int, streams: list[str]) -> list[Stamp]:
    rng = random.Random(seed)
    return [Stamp(tuple(rng.sample(streams, rng.randint(1, 3))), i) for i in range(count)]


def successes(outcomes: list[ExecutionResult | Exception]) -> list[ExecutionResult]:
    assert all(isinstance(o, ExecutionResult) for o in outcomes), outcomes
    return [o for o in outcomes if isinstance(o, ExecutionResult)]


async def test_outcomes_come_back_in_submission_order_not_completion_order() -> None:
    store = SlowerForEarlierStreams(InMemoryEventStore())
    commands = [Stamp((f"s{i}",), i) for i in range(10)]
    outcomes = await execute_all(store, commands, concurrency=10, codec=codec)
    assert [set(r.stream_versions) for r in successes(outcomes)] == [{f"s{i}"} for i in range(10)]
    log = await store.read_all()
    assert codec.decode(log[0]).label == 9, "the last command should have finished first"


async def test_disjoint_commands_run_concurrently_up_to_the_limit() -> None:
    store = CountsInFlight(InMemoryEventStore())
    commands = [Stamp((f"s{i}",), i) for i in range(20)]
    successes(await execute_all(store, commands, concurrency=5, codec=codec))
    assert store.peak == 5


@pytest.mark.parametrize("concurrency", [1, 3, 8])
async def test_concurrency_limit_is_never_exceeded_with_overlapping_streams(
    concurrency: int,
) -> None:
    store = CountsInFlight(InMemoryEventStore())
    streams = [f"s{i}" for i in range(30)]
    commands = random_stamps(7, 100, streams)
    successes(await execute_all(store, commands, concurrency=concurrency, codec=codec))
    assert 1 <= store.peak <= concurrency


async def test_commands_on_one_stream_run_one_after_another_in_submission_order() -> None:
    store = CountsInFlight(InMemoryEventStore(), latency=0)
    commands = [Follow("chain", n) for n in range(30)]
    results = successes(await execute_all(store, commands, concurrency=8, codec=codec))
    assert await labels(store, "chain") == list(range(30))
    assert all(r.attempts == 1 for r in results), "two of them overlapped and conflicted"
    assert store.peak == 1


@pytest.mark.parametrize("seed", [1, 2])
async def test_overlapping_commands_write_every_stream_in_submission_order(
    any_store: EventStore, seed: int
) -> None:
    streams = [f"s{i}" for i in range(8)]
    commands = random_stamps(seed, 60, streams)
    store = FaultInjectingStore(any_store, latency=0)
    results = successes(await execute_all(store, commands, concurrency=6, codec=codec))
    for stream in streams:
        expected = [c.label for c in commands if stream in c.declared]
        assert await labels(any_store, stream) == expected, stream
    assert all(r.attempts == 1 for r in results), "commands on a common stream overlapped"


def serial_refusals(transfers: list[Transfer], accounts: list[str]) -> set[str]:
    """The references a one-at-a-time run would refuse for lack of funds."""
    balances = dict.fromkeys(accounts, OPENING_BALANCE)
    refused = set()
    for t in transfers:
        if balances[t.source] < t.amount:
            refused.add(t.reference)
        else:
            balances[t.source] -= t.amount
            balances[t.target] += t.amount
    return refused


def sort_outcomes(
    transfers: list[Transfer], outcomes: list[ExecutionResult | Exception]
) -> TransferOutcomes:
    sorted_ = TransferOutcomes([], [], [])
    for transfer, outcome in zip(transfers, outcomes, strict=True):
        if isinstance(outcome, ExecutionResult):
            sorted_.committed.append((transfer, outcome))
        elif isinstance(outcome, BusinessRuleViolation):
            sorted_.refused.append(transfer)
        else:
            raise AssertionError(f"{transfer} failed unexpectedly: {outcome!r}")
    return sorted_


@pytest.mark.parametrize("seed", [3, 4])
async def test_random_transfers_conserve_money_and_decide_as_a_serial_run_would(
    any_store: EventStore, seed: int
) -> None:
    accounts = await open_accounts(any_store, 6)
    rng = random.Random(seed)
    pairs = [rng.sample(accounts, 2) for _ in range(80)]
    transfers = [
        Transfer(source, target, rng.randint(1, 60), reference=f"t{i}")
        for i, (source, target) in enumerate(pairs)
    ]
    outcomes = sort_outcomes(
        transfers, await execute_all(any_store, transfers, concurrency=8, codec=bank_codec)
    )
    await check_bank_invariants(any_store, accounts, outcomes)
    assert {t.reference for t in outcomes.refused} == serial_refusals(transfers, accounts)
    assert outcomes.retries == 0
    for account in accounts:
        events = [bank_codec.decode(e) for e in await any_store.read_stream(account)]
        committed = [t.reference for t, _ in outcomes.committed if account in t.streams()]
        assert [e.reference for e in events[1:]] == committed, account
        assert isinstance(events[0], MoneyDeposited)


@pytest.mark.parametrize("concurrency", [1, 2, 3, 16])
async def test_cyclic_overlaps_do_not_deadlock(concurrency: int) -> None:
    store = FaultInjectingStore(InMemoryEventStore(), latency=0)
    pairs = [("A", "B"), ("B", "C"), ("C", "A")]
    commands = [Stamp(pairs[i % 3], i) for i in range(300)]
    async with asyncio.timeout(60):  # a guard against a hang, not a timing assertion
        successes(await execute_all(store, commands, concurrency=concurrency, codec=codec))
    assert await labels(store, "A") == [i for i in range(300) if i % 3 != 1]


async def test_a_refused_command_takes_its_slot_and_the_rest_still_run() -> None:
    store = InMemoryEventStore()
    commands = [Stamp(("x",), 0), Stamp(("x", "y"), 1, refuse=True), Stamp(("y",), 2)]
    commands += [Stamp(("x",), 3), Stamp(("z",), 4, refuse=True)]
    outcomes = await execute_all(store, commands, concurrency=4, codec=codec)
    assert [type(o) for o in outcomes] == [
        ExecutionResult,
        BusinessRuleViolation,
        ExecutionResult,
        ExecutionResult,
        BusinessRuleViolation,
    ]
    assert str(outcomes[1]) == "command 1 refuses"
    assert await labels(store, "x") == [0, 3]
    assert await labels(store, "y") == [2]


async def test_exhausted_retries_and_store_errors_are_returned_in_their_slots() -> None:
    store = FaultInjectingStore(InMemoryEventStore())
    store.conflict_next_appends(1)
    store.fail_next_reads(1)
    commands = [Stamp(("a",), 0), Stamp(("b",), 1), Stamp(("c",), 2)]
    outcomes = await execute_all(
        store, commands, concurrency=1, codec=codec, retry=RetryPolicy.no_retry()
    )
    assert isinstance(outcomes[0], StoreUnavailable)
    assert isinstance(outcomes[1], RetriesExhausted)
    assert isinstance(outcomes[2], ExecutionResult)


async def test_keyword_arguments_are_passed_to_execute_unchanged() -> None:
    store = InMemoryEventStore()
    commands = [Stamp(("a",), 0), Stamp(("b",), 1)]
    successes(
        await execute_all(
            store, commands, codec=codec, correlation_id="batch-7", metadata={"who": "test"}
        )
    )
    for event in await store.read_all():
        assert event.metadata.correlation_id == "batch-7"
        assert event.metadata.user == {"who": "test"}


async def test_a_state_cache_is_passed_through_and_stays_exact_under_ordering() -> None:
    store = InMemoryEventStore()
    cache = StateCache()
    commands = [Follow("chain", n) for n in range(20)]
    results = successes(await execute_all(store, commands, concurrency=4, codec=codec, cache=cache))
    assert await labels(store, "chain") == list(range(20))
    assert cache.hits == 19
    assert all(r.attempts == 1 for r in results)


async def test_empty_batch_returns_an_empty_list() -> None:
    assert await execute_all(InMemoryEventStore(), [], codec=codec) == []


@pytest.mark.parametrize("concurrency", [0, -1, 1.5, True, "4", None])
async def test_concurrency_that_is_not_a_positive_int_raises_before_anything_runs(
    concurrency: Any,
) -> None:
    store = FaultInjectingStore(InMemoryEventStore())
    with pytest.raises(ValidationError, match=f"concurrency .* got {concurrency!r}"):
        await execute_all(store, [Stamp(("a",), 0)], concurrency=concurrency, codec=codec)
    assert store.read_calls == 0


async def test_an_item_that_is_not_a_command_raises_naming_it_before_anything_runs() -> None:
    store = FaultInjectingStore(InMemoryEventStore())
    with pytest.raises(ValidationError, match=r"commands\[1\] is 'oops', not a Command"):
        await execute_all(store, [Stamp(("a",), 0), "oops"], codec=codec)  # type: ignore[list-item]
    assert store.read_calls == 0


async def test_a_single_command_instead_of_a_batch_raises() -> None:
    with pytest.raises(ValidationError, match="iterable of Command, got Stamp"):
        await execute_all(InMemoryEventStore(), Stamp(("a",), 0), codec=codec)  # type: ignore[arg-type]


async def test_an_invalid_declared_stream_id_raises_before_anything_runs() -> None:
    store = FaultInjectingStore(InMemoryEventStore())
    with pytest.raises(InvalidStreamId, match=r"'bad\*'"):
        await execute_all(store, [Stamp(("a",), 0), Stamp(("bad*",), 1)], codec=codec)
    assert store.read_calls == 0


async def test_an_unknown_keyword_argument_raises_type_error_before_anything_runs() -> None:
    store = FaultInjectingStore(InMemoryEventStore())
    with pytest.raises(TypeError, match="cdec"):
        await execute_all(store, [Stamp(("a",), 0)], cdec=codec)  # type: ignore[call-arg]
    assert store.read_calls == 0


async def test_cancelling_the_caller_cancels_every_running_command() -> None:
    store = BlocksReads(InMemoryEventStore(), expected=4)
    commands = [Stamp((f"s{i}",), i) for i in range(10)]
    batch = asyncio.create_task(execute_all(store, commands, concurrency=4, codec=codec))
    blocked = asyncio.create_task(store.all_blocked.wait())
    await asyncio.wait([batch, blocked], return_when=asyncio.FIRST_COMPLETED)
    assert not batch.done(), f"the batch ended before it was cancelled: {batch.result()}"
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch
    assert len(store.blocked) == 4, "a command started after the batch was cancelled"
    assert all(task.cancelled() for task in store.blocked)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert await store.read_all() == []
