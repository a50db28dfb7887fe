"""Commands taking turns on their streams (Command.takes_turns), and StreamTurns."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventcore._turns import StreamTurns
from eventcore.backends.memory import InMemoryEventStore
from eventcore.cache import StateCache
from eventcore.demo.bank import Balances, Deposit, Transfer, bank_codec
from eventcore.errors import (
    BusinessRuleViolation,
    RetriesExhausted,
    StateReuseRefused,
    TooManyStreams,
    ValidationError,
)
from eventcore.execute import ExecutionResult, execute
from eventcore.store import EventStore
from eventcore.types import AppendRequest, AppendResult, StreamId

FOREVER = 60.0  # a test that would hang fails instead


class SlowAppends(InMemoryEventStore):
    """An in-memory store whose appends give the event loop a few turns first, as
    a database round trip does, so that commands interleave."""

    async def append(self, request: AppendRequest) -> AppendResult:
        for _ in range(3):
            await asyncio.sleep(0)
        return await super().append(request)


@dataclass(frozen=True, slots=True)
class RacingDeposit(Deposit):
    """A deposit that does not take turns: it races, as commands did before."""

    takes_turns: ClassVar[bool] = False


async def _run_all(store: EventStore, cache: StateCache, commands: list[Deposit]) -> list[int]:
    results = await asyncio.wait_for(
        asyncio.gather(*(execute(store, c, codec=bank_codec, cache=cache) for c in commands)),
        FOREVER,
    )
    return [result.attempts for result in results]


async def _balance(store: EventStore, account: str) -> int:
    events = await store.read_stream(account)
    state = Balances()
    for event in events:
        state = state.after(event.stream_id, bank_codec.decode(event))
    return state.of(account)


async def test_commands_on_one_stream_take_turns_and_never_conflict() -> None:
    async with SlowAppends() as store:
        cache = StateCache()
        attempts = await _run_all(store, cache, [Deposit("acc", 1) for _ in range(50)])
        assert attempts == [1] * 50
        assert cache.stale == 0
        assert await _balance(store, "acc") == 50
        assert not cache.turns.holds(StreamId("acc"))


async def test_the_same_commands_without_turns_race_and_retry() -> None:
    # What the test above guards against: without turns, the deposits conflict
    # (some of them until their retries run out).
    async with SlowAppends() as store:
        cache = StateCache()
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                *(
                    execute(store, RacingDeposit("acc", 1), codec=bank_codec, cache=cache)
                    for _ in range(50)
                ),
                return_exceptions=True,
            ),
            FOREVER,
        )
        retried = [
            outcome
            for outcome in outcomes
            if isinstance(outcome, RetriesExhausted)
            or (isinstance(outcome, ExecutionResult) and outcome.attempts > 1)
        ]
        assert len(retried) > 10


async def test_transfers_both_ways_between_accounts_never_deadlock() -> None:
    rng = random.Random(7)
    accounts = ["a", "b", "c"]
    async with SlowAppends() as store:
        cache = StateCache()
        await _run_all(store, cache, [Deposit(a, 1000) for a in accounts])
        pairs = [rng.sample(accounts, 2) for _ in range(300)]
        transfers = [Transfer(source, target, 1) for source, target in pairs]
        results = await asyncio.wait_for(
            asyncio.gather(*(execute(store, t, codec=bank_codec, cache=cache) for t in transfers)),
            FOREVER,
        )
        assert {r.attempts for r in results} == {1}
        balances = [await _balance(store, a) for a in accounts]
        assert sum(balances) == 3000
        assert not any(cache.turns.holds(StreamId(a)) for a in accounts)


async def test_a_refused_command_gives_its_turns_back() -> None:
    async with SlowAppends() as store:
        cache = StateCache()
        await _run_all(store, cache, [Deposit("a", 5)])
        overdraft = execute(store, Transfer("a", "b", 50), codec=bank_codec, cache=cache)
        after = execute(store, Transfer("a", "b", 5), codec=bank_codec, cache=cache)
        outcomes = await asyncio.wait_for(
            asyncio.gather(overdraft, after, return_exceptions=True), FOREVER
        )
        assert isinstance(outcomes[0], BusinessRuleViolation)
        assert not isinstance(outcomes[1], BaseException)
        assert outcomes[1].attempts == 1
        assert not cache.turns.holds(StreamId("a"))


async def test_a_command_cancelled_while_appending_gives_its_turn_to_the_next() -> None:
    async with SlowAppends() as store:
        cache = StateCache()
        first = asyncio.create_task(execute(store, Deposit("a", 1), codec=bank_codec, cache=cache))
        await asyncio.sleep(0)  # first holds the turn and is inside its append
        assert cache.turns.holds(StreamId("a"))
        second = asyncio.create_task(execute(store, Deposit("a", 2), codec=bank_codec, cache=cache))
        await asyncio.sleep(0)
        first.cancel()
        result = await asyncio.wait_for(second, FOREVER)
        assert result.events_written == 1
        assert first.cancelled()
        assert not cache.turns.holds(StreamId("a"))


def test_a_class_that_takes_turns_must_reuse_state() -> None:
    with pytest.raises(StateReuseRefused, match="takes_turns"):

        @dataclass(frozen=True, slots=True)
        class Loner(Deposit):
            reuses_state: ClassVar[bool] = False
            state_per_stream: ClassVar[bool] = False

    with pytest.raises(ValidationError, match=r"takes_turns must be True or False, got 'yes'"):

        class Unsure(Deposit):
            takes_turns = "yes"  # type: ignore[assignment]


# -- StreamTurns on its own -------------------------------------------------------


def _ids(*names: str) -> list[StreamId]:
    return [StreamId(n) for n in names]


async def _take(turns: StreamTurns, streams: list[StreamId]) -> Sequence[StreamId]:
    mine, ticket = turns.take(streams)
    if ticket is not None:
        await turns.wait(ticket)
    return mine


async def test_turns_go_to_the_waiters_first_come_first_served() -> None:
    turns = StreamTurns()
    a = _ids("a")
    await _take(turns, a)
    order: list[int] = []

    async def wait(n: int) -> None:
        mine = await _take(turns, a)
        order.append(n)
        turns.give_back(mine)

    waiting = [asyncio.create_task(wait(n)) for n in range(5)]
    await asyncio.sleep(0)
    turns.give_back(a)
    await asyncio.wait_for(asyncio.gather(*waiting), FOREVER)
    assert order == [0, 1, 2, 3, 4]
    assert not turns.holds(a[0])


async def test_a_command_waiting_for_one_stream_keeps_its_place_on_the_other() -> None:
    # {a} runs; {a, b} arrives and waits for a; {b} arrives after it. Taking the
    # streams one at a time would let {b} overtake {a, b} on b.
    async with SlowAppends() as store:
        cache = StateCache()
        await execute(store, Deposit("a", 100), codec=bank_codec, cache=cache)
        order: list[str] = []

        async def run(name: str, command: Deposit | Transfer) -> None:
            await execute(store, command, codec=bank_codec, cache=cache)
            order.append(name)

        first = asyncio.create_task(run("deposit a", Deposit("a", 1)))
        await asyncio.sleep(0)
        second = asyncio.create_task(run("transfer a->b", Transfer("a", "b", 10)))
        await asyncio.sleep(0)
        third = asyncio.create_task(run("deposit b", Deposit("b", 5)))
        await asyncio.wait_for(asyncio.gather(first, second, third), FOREVER)
        assert order == ["deposit a", "transfer a->b", "deposit b"]


async def test_a_waiter_cancelled_before_its_turn_holds_nothing_and_is_skipped() -> None:
    turns = StreamTurns()
    held_b = await _take(turns, _ids("b"))  # someone else holds b
    ab = _ids("a", "b")
    cancelled = asyncio.create_task(_take(turns, ab))
    await asyncio.sleep(0)
    assert turns.holds(ab[0])  # it took a on arrival, and waits for b
    later = asyncio.create_task(_take(turns, ab))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    assert cancelled.cancelled()
    turns.give_back(held_b)
    mine = await asyncio.wait_for(later, FOREVER)  # a came back to it, then b
    turns.give_back(mine)
    assert not turns.holds(ab[0])
    assert not turns.holds(ab[1])


async def test_a_waiter_cancelled_after_being_handed_the_turn_passes_it_on() -> None:
    turns = StreamTurns()
    a = _ids("a")
    await _take(turns, a)
    first = asyncio.create_task(_take(turns, a))
    second = asyncio.create_task(_take(turns, a))
    await asyncio.sleep(0)
    turns.give_back(a)  # the turn is first's now, but it has not run yet
    first.cancel()
    mine = await asyncio.wait_for(second, FOREVER)
    assert first.cancelled()
    turns.give_back(mine)
    assert not turns.holds(a[0])


async def test_a_task_does_not_wait_for_a_turn_it_holds() -> None:
    turns = StreamTurns()
    outer = await _take(turns, _ids("a"))
    inner = await _take(turns, _ids("a", "b"))  # in this task (wait_for would start one)
    assert inner == _ids("b")  # a stays the outer command's to give back
    turns.give_back(inner)
    assert turns.holds(outer[0])
    turns.give_back(outer)
    assert not turns.holds(outer[0])


async def test_a_command_run_from_inside_an_append_on_its_stream_does_not_deadlock() -> None:
    cache = StateCache()

    class FeeBooking(SlowAppends):
        """Books a fee with a command of its own when a deposit reaches 'acc'."""

        async def append(self, request: AppendRequest) -> AppendResult:
            result = await super().append(request)
            deposits = [e for e in request.events if e.event_type == "bank.MoneyDeposited"]
            if any(e.stream_id == "acc" for e in deposits):
                await execute(self, Transfer("acc", "fees", 1), codec=bank_codec, cache=cache)
            return result

    async with FeeBooking() as store:
        await asyncio.wait_for(
            execute(store, Deposit("acc", 10), codec=bank_codec, cache=cache), FOREVER
        )
        assert await _balance(store, "acc") == 9
        assert not cache.turns.holds(StreamId("acc"))


async def test_a_command_with_too_many_streams_is_refused_without_waiting_for_turns() -> None:
    @dataclass(frozen=True, slots=True)
    class NarrowTransfer(Transfer):
        max_streams: ClassVar[int] = 1

    async with SlowAppends() as store:
        cache = StateCache()
        mine, _ = cache.turns.take(_ids("a"))  # held by this test, never given back here
        with pytest.raises(TooManyStreams):
            await asyncio.wait_for(
                execute(store, NarrowTransfer("a", "b", 1), codec=bank_codec, cache=cache),
                FOREVER,
            )
        cache.turns.give_back(mine)
        assert not cache.turns.holds(StreamId("b"))


class _Holders:
    """Jobs that take turns, hold them across a few loop turns, and check that no
    other job holds one of their streams meanwhile."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.turns = StreamTurns()
        self.holding: dict[StreamId, int] = {}

    async def job(self, number: int, streams: list[StreamId]) -> None:
        await _take(self.turns, streams)
        try:
            for stream in streams:
                assert stream not in self.holding, f"{stream} held by {self.holding[stream]}"
                self.holding[stream] = number
            for _ in range(self.rng.randint(0, 3)):
                await asyncio.sleep(0)
        finally:
            for stream in streams:
                if self.holding.get(stream) == number:
                    del self.holding[stream]
            self.turns.give_back(streams)


@settings(max_examples=60, deadline=None)
@given(
    jobs=st.lists(
        st.tuples(st.sets(st.sampled_from("abcd"), min_size=1, max_size=3), st.booleans()),
        min_size=1,
        max_size=25,
    ),
    seed=st.integers(0, 2**16),
)
def test_no_two_holders_of_one_stream_and_every_turn_comes_back(
    jobs: list[tuple[set[str], bool]], seed: int
) -> None:
    """Jobs take the turns of random stream sets and some are cancelled at random
    moments: at no moment do two jobs hold a stream, every job not cancelled
    finishes, and at the end nobody holds any."""

    async def scenario() -> None:
        rng = random.Random(seed)
        holders = _Holders(rng)
        tasks = [
            asyncio.create_task(holders.job(n, _ids(*names))) for n, (names, _) in enumerate(jobs)
        ]
        for _ in range(rng.randint(0, 4)):
            await asyncio.sleep(0)
        for task, (_, cancel) in zip(tasks, jobs, strict=True):
            if cancel:
                task.cancel()
        outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), FOREVER)
        for outcome, (_, cancel) in zip(outcomes, jobs, strict=True):
            assert outcome is None or (cancel and isinstance(outcome, asyncio.CancelledError))
        assert not any(holders.turns.holds(StreamId(s)) for s in "abcd")

    asyncio.run(scenario())


async def test_the_cache_counts_the_commands_that_waited_for_a_turn() -> None:
    async with SlowAppends() as store:
        cache = StateCache()
        await _run_all(store, cache, [Deposit("a", 1)])
        assert cache.stats().turn_waits == 0
        await _run_all(store, cache, [Deposit("a", 1) for _ in range(5)])
        assert cache.stats().turn_waits == 4  # all but the first found "a" held
