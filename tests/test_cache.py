"""The state cache and paged folds: faster, never different."""

from __future__ import annotations

import asyncio
import pickle
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventcore import (
    BusinessRuleViolation,
    Codec,
    Command,
    EventMetadata,
    InMemoryEventStore,
    RetryPolicy,
    StateReuseMismatch,
    StateReuseRefused,
    StreamId,
    ValidationError,
    execute,
)
from eventcore.cache import StateCache
from eventcore.demo.bank import Deposit, Transfer, bank_codec
from eventcore.store import EventStore
from eventcore.testing.faults import FaultInjectingStore
from eventcore.types import AppendRequest
from tests.bank_checks import check_bank_invariants, open_accounts, run_transfers

FAST = RetryPolicy.fixed(0)


class RecordingStore(FaultInjectingStore):
    """Remembers the arguments of every read_streams call."""

    def __init__(self, inner: EventStore) -> None:
        super().__init__(inner)
        self.reads: list[dict[str, Any]] = []

    async def read_streams(self, stream_ids: Any, **kwargs: Any) -> Any:
        self.reads.append({"streams": list(stream_ids), **kwargs})
        return await super().read_streams(stream_ids, **kwargs)


async def _balance(store: EventStore, account: str) -> int:
    total = 0
    for record in await store.read_stream(account):
        event = bank_codec.decode(record)
        total += event.amount if type(event).__name__ == "MoneyDeposited" else -event.amount
    return total


async def test_a_cached_command_appends_without_reading(any_store: EventStore) -> None:
    store = RecordingStore(any_store)
    cache = StateCache()
    await execute(store, Deposit("acc", 10), codec=bank_codec, cache=cache)
    assert len(store.reads) == 1
    for _ in range(3):
        result = await execute(store, Deposit("acc", 10), codec=bank_codec, cache=cache)
        assert result.attempts == 1
    assert len(store.reads) == 1, "cached executions must not read"
    assert await any_store.stream_version("acc") == 4
    assert cache.hits == 3


async def test_a_write_that_bypassed_the_cache_is_caught_by_the_version_check(
    any_store: EventStore,
) -> None:
    store = RecordingStore(any_store)
    cache = StateCache()
    await execute(store, Deposit("a", 100), codec=bank_codec, cache=cache)
    await execute(store, Transfer("a", "b", 10), codec=bank_codec, cache=cache)
    # Another writer (another process, or code without this cache) moves "a".
    await execute(any_store, Deposit("a", 5), codec=bank_codec)
    store.reads.clear()
    result = await execute(store, Transfer("a", "b", 10), codec=bank_codec, cache=cache)
    assert result.attempts == 2  # the optimistic append conflicted, then caught up
    # Only the events newer than the cache were read.
    assert store.reads == [
        {"streams": ["a", "b"], "from_versions": {"a": 3, "b": 2}, "limit": 2000}
    ]
    assert await _balance(any_store, "a") == 100 - 10 + 5 - 10


async def test_a_refusal_on_stale_cached_state_is_checked_against_the_store(
    any_store: EventStore,
) -> None:
    cache = StateCache()
    await execute(any_store, Deposit("a", 100), codec=bank_codec, cache=cache)
    await execute(any_store, Transfer("a", "b", 60), codec=bank_codec, cache=cache)
    await execute(any_store, Deposit("a", 1000), codec=bank_codec)  # bypasses the cache
    # The cache says 40 is left; the store says 1,040: the transfer must go through.
    result = await execute(any_store, Transfer("a", "b", 500), codec=bank_codec, cache=cache)
    assert result.events_written == 2
    assert await _balance(any_store, "a") == 540


async def test_a_real_refusal_is_still_reported_with_a_cache(any_store: EventStore) -> None:
    cache = StateCache()
    await execute(any_store, Deposit("a", 10), codec=bank_codec, cache=cache)
    await execute(any_store, Transfer("a", "b", 5), codec=bank_codec, cache=cache)
    with pytest.raises(BusinessRuleViolation, match="insufficient"):
        await execute(any_store, Transfer("a", "b", 50), codec=bank_codec, cache=cache)


async def test_a_pessimistic_cache_reads_only_newer_events_every_time(
    any_store: EventStore,
) -> None:
    store = RecordingStore(any_store)
    cache = StateCache(optimistic=False)
    await execute(store, Deposit("acc", 1), codec=bank_codec, cache=cache)
    await execute(store, Deposit("acc", 1), codec=bank_codec, cache=cache)
    # The first read starts at the beginning, which needs no from_versions.
    assert [r["from_versions"] for r in store.reads] == [None, {"acc": 2}]


def test_the_cache_evicts_the_least_recently_used_entry() -> None:
    cache = StateCache(max_entries=2)
    cache.put("a", 1, {})
    cache.put("b", 2, {})
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", 3, {})
    assert cache.get("b") is None
    assert len(cache) == 2


def test_an_older_state_never_replaces_a_newer_one() -> None:
    cache = StateCache()
    a = StreamId("a")
    cache.put("k", "new", {a: 5})
    cache.put("k", "old", {a: 3})
    entry = cache.get("k")
    assert entry is not None
    assert entry.state == "new"
    cache.put("k", "newer", {a: 6})
    assert cache.get("k").state == "newer"  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", [0, -1, 1.5, None])
def test_cache_size_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(ValidationError):
        StateCache(bad)  # type: ignore[arg-type]


async def test_a_long_stream_is_folded_page_by_page(any_store: EventStore) -> None:
    for _ in range(10):
        await execute(any_store, Deposit("acc", 1), codec=bank_codec)
    store = RecordingStore(any_store)
    await execute(store, Deposit("acc", 1), codec=bank_codec, fold_page_size=3)
    # The first page starts at the beginning, which needs no from_versions.
    assert [r["from_versions"] for r in store.reads] == [
        None,
        {"acc": 4},
        {"acc": 7},
        {"acc": 10},
    ]
    assert all(r["limit"] == 3 for r in store.reads)
    assert await _balance(any_store, "acc") == 11


# One operation: (kind, source, target, amount); "external" writes bypass the cache,
# as another process would.
operation = st.tuples(
    st.sampled_from(["deposit", "transfer", "external-deposit", "external-transfer"]),
    st.integers(0, 3),
    st.integers(0, 3),
    st.integers(1, 80),
)


async def _run(ops: list[tuple[str, int, int, int]], cached: bool) -> tuple[list[str], list[int]]:
    store = InMemoryEventStore()
    cache = StateCache() if cached else None
    outcomes: list[str] = []
    for kind, source, target, amount in ops:
        if kind.endswith("deposit"):
            command: Any = Deposit(f"acc-{source}", amount)
        elif source == target:
            continue
        else:
            command = Transfer(f"acc-{source}", f"acc-{target}", amount)
        use = cache if not kind.startswith("external") else None
        try:
            result = await execute(store, command, codec=bank_codec, cache=use, retry=FAST)
            outcomes.append(f"ok {result.positions}")
        except BusinessRuleViolation as refusal:
            outcomes.append(f"refused {refusal}")
    balances = [await _balance(store, f"acc-{n}") for n in range(4)]
    return outcomes, balances


@settings(max_examples=200, deadline=None)
@given(st.lists(operation, max_size=30))
def test_cached_and_uncached_executions_give_identical_results(
    ops: list[tuple[str, int, int, int]],
) -> None:
    async def both() -> None:
        assert await _run(ops, cached=True) == await _run(ops, cached=False)

    asyncio.run(both())


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 1000), transfers=st.integers(2, 30))
def test_concurrent_cached_transfers_keep_every_invariant(seed: int, transfers: int) -> None:
    async def run() -> None:
        store = FaultInjectingStore(InMemoryEventStore(), latency=0)
        names = await open_accounts(store, 4)
        cache = StateCache()
        outcomes = await run_transfers(
            store, names, transfers, seed, RetryPolicy.fixed(0, 20), cache
        )
        await check_bank_invariants(store, names, outcomes)
        if transfers > 12:  # more transfers than account pairs: some key repeats
            assert cache.hits > 0

    asyncio.run(run())


# -- a resolver that finds a stream through the command's own events -----------------

link_codec = Codec()


@link_codec.register("test.Linked")
@dataclass(frozen=True)
class Linked:
    target: str


@link_codec.register("test.Deposited")
@dataclass(frozen=True)
class Deposited:
    amount: int


@link_codec.register("test.LowBalanceWarning")
@dataclass(frozen=True)
class LowBalanceWarning:
    balance: int


@dataclass(frozen=True)
class Linking:
    linked: str | None = None
    balance: int = 0


@dataclass(frozen=True)
class WarnIfLow(Command[Linking, Any]):
    """Links its order to an account once; then warns only while the account holds
    under 10. The account is found through the command's own Linked event."""

    order: str
    account: str
    reuses_state: ClassVar[bool] = True  # apply and the resolver read only the events

    def streams(self) -> list[str]:
        return [self.order]

    def initial_state(self) -> Linking:
        return Linking()

    def resolve_streams(self, state: Linking) -> list[str]:
        return [state.linked] if state.linked else []

    def apply(self, state: Linking, stream_id: StreamId, event: Any) -> Linking:
        if isinstance(event, Linked):
            return replace(state, linked=event.target)
        if isinstance(event, Deposited) and stream_id == state.linked:
            return replace(state, balance=state.balance + event.amount)
        return state

    def handle(self, state: Linking) -> list[tuple[str, Any]]:
        if state.linked is None:
            return [(self.order, Linked(self.account))]
        if state.balance < 10:
            return [(self.order, LowBalanceWarning(state.balance))]
        return []


@dataclass(frozen=True)
class SpendFromLinked(WarnIfLow):
    def handle(self, state: Linking) -> list[tuple[str, Any]]:
        if state.linked is None:
            return [(self.order, Linked(self.account))]
        return [(state.linked, Deposited(-1))]


@pytest.mark.parametrize("command_type", [WarnIfLow, SpendFromLinked])
async def test_a_stream_found_through_the_commands_own_events_is_read_and_checked(
    any_store: EventStore, command_type: type[WarnIfLow]
) -> None:
    outcomes = []
    for name, cache in (("plain", None), ("cached", StateCache())):
        command = command_type(f"{name}-order", f"{name}-account")
        await execute(any_store, command, codec=link_codec, cache=cache)  # links
        # Another writer deposits 100 into the linked account.
        deposit = link_codec.new_event(StreamId(command.account), Deposited(100), EventMetadata())
        await any_store.append(AppendRequest.create({command.account: 0}, [deposit]))
        result = await execute(any_store, command, codec=link_codec, cache=cache)
        versions = {s.split("-", 1)[1]: v for s, v in result.stream_versions.items()}
        outcomes.append((result.events_written, versions))
    assert outcomes[0] == outcomes[1], "the cache must not change the outcome"
    assert "account" in outcomes[1][1], "the linked account must be read and version-checked"


# -- reuse is opted into, bound to one store, and can be verified ---------------------


@link_codec.register("test.Tick")
@dataclass(frozen=True)
class Tick:
    total: int


@dataclass(frozen=True)
class Weighted(Command[int, Tick]):
    """Counts the ticks of its stream, each weighted by the command's own field: a
    natural thing to write, and wrong for reused state (another instance folded it)."""

    stream: str
    weight: int

    def streams(self) -> list[str]:
        return [self.stream]

    def initial_state(self) -> int:
        return 0

    def apply(self, state: int, stream_id: StreamId, event: Tick) -> int:
        return state + self.weight

    def handle(self, state: int) -> list[tuple[str, Tick]]:
        return [(self.stream, Tick(state))]


@dataclass(frozen=True)
class WeightedOptedIn(Weighted):
    reuses_state: ClassVar[bool] = True  # wrongly: apply reads self.weight


async def test_a_cache_is_refused_for_a_command_class_that_has_not_opted_in(
    any_store: EventStore,
) -> None:
    store = RecordingStore(any_store)
    with pytest.raises(StateReuseRefused) as caught:
        await execute(store, Weighted("w", 1), codec=link_codec, cache=StateCache())
    message = str(caught.value)
    assert "Weighted has not opted in to reused state" in message
    assert "must not read the command's fields" in message
    assert "reuses_state: ClassVar[bool] = True" in message
    assert store.reads == []
    assert await any_store.read_all() == []


async def test_a_cache_belongs_to_the_first_store_it_is_used_with(any_store: EventStore) -> None:
    cache = StateCache()
    await execute(any_store, Deposit("a", 1), codec=bank_codec, cache=cache)
    other = InMemoryEventStore()
    with pytest.raises(ValidationError, match="this StateCache holds states of another store"):
        await execute(other, Deposit("a", 1), codec=bank_codec, cache=cache)
    assert await other.read_all() == []
    await execute(any_store, Deposit("a", 1), codec=bank_codec, cache=cache)  # still fine


@pytest.mark.parametrize("optimistic", [True, False])
async def test_verification_catches_a_command_whose_apply_reads_its_own_fields(
    any_store: EventStore, optimistic: bool
) -> None:
    cache = StateCache(verify=True, optimistic=optimistic)
    await execute(any_store, WeightedOptedIn("w", 1), codec=link_codec, cache=cache)
    await execute(any_store, WeightedOptedIn("w", 1), codec=link_codec, cache=cache)
    with pytest.raises(StateReuseMismatch) as caught:
        await execute(any_store, WeightedOptedIn("w", 5), codec=link_codec, cache=cache)
    error = caught.value
    assert (error.command, error.reused, error.fresh) == ("WeightedOptedIn", 2, 10)
    assert "WeightedOptedIn decided on a reused state 2" in str(error)
    assert await any_store.stream_version("w") == 2, "nothing is written on a mismatch"
    assert pickle.loads(pickle.dumps(error)).fresh == 10


async def test_without_verification_reused_state_of_a_rule_breaking_command_goes_unseen(
    any_store: EventStore,
) -> None:
    """Why verification exists: the versions match, so the store accepts a wrong event."""
    cache = StateCache()
    await execute(any_store, WeightedOptedIn("w", 1), codec=link_codec, cache=cache)
    await execute(any_store, WeightedOptedIn("w", 5), codec=link_codec, cache=cache)
    last = link_codec.decode((await any_store.read_stream("w"))[-1])
    assert last == Tick(1), "decided on the state folded by the weight-1 instance"


async def test_verification_passes_for_a_command_that_follows_the_rules(
    any_store: EventStore,
) -> None:
    cache = StateCache(verify=True)
    await execute(any_store, Deposit("a", 100), codec=bank_codec, cache=cache)
    for amount in (10, 20, 30):
        await execute(any_store, Transfer("a", "b", amount), codec=bank_codec, cache=cache)
    await execute(any_store, Deposit("a", 5), codec=bank_codec)  # bypasses the cache
    await execute(any_store, Transfer("a", "b", 45), codec=bank_codec, cache=cache)
    assert cache.hits == 4  # the last transfer conflicted on the stale entry, then caught up
    assert cache.verifications == cache.hits
    assert await _balance(any_store, "a") == 0


def test_verification_samples_hits_at_the_rate_given() -> None:
    assert StateCache(verify=0.0).verify_rate == 0.0
    assert StateCache(verify=True).verify_rate == 1.0
    assert StateCache().verify_rate == 0.0
    sampled = StateCache(verify=0.25)
    picks = [sampled.should_verify() for _ in range(2000)]
    assert 0 < sum(picks) < 2000


@pytest.mark.parametrize("bad", [-0.1, 1.5, "yes", None, float("nan")])
def test_verify_must_be_a_bool_or_a_rate_between_0_and_1(bad: object) -> None:
    with pytest.raises(ValidationError, match=f"verify must be .*got {bad!r}"):
        StateCache(verify=bad)  # type: ignore[arg-type]
