"""The shape of the state cache: entries shared by classes with one fold, one
entry per stream for per-stream states, warming, and the counters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from eventcore import (
    BusinessRuleViolation,
    Codec,
    Command,
    InMemoryEventStore,
    StateReuseMismatch,
    StateReuseRefused,
    StreamId,
    ValidationError,
    execute,
)
from eventcore.cache import CacheStats, StateCache, fold_identity
from eventcore.demo.bank import Balances, Deposit, MoneyDeposited, Transfer, bank_codec
from eventcore.store import EventStore
from tests.test_cache import RecordingStore


async def test_a_transfer_decides_from_the_entries_deposits_left_per_account(
    any_store: EventStore,
) -> None:
    store = RecordingStore(any_store)
    cache = StateCache()
    await execute(store, Deposit("a", 50), codec=bank_codec, cache=cache)
    await execute(store, Deposit("b", 5), codec=bank_codec, cache=cache)
    store.reads.clear()
    result = await execute(store, Transfer("a", "b", 20), codec=bank_codec, cache=cache)
    assert (result.attempts, store.reads) == (1, [])
    assert dict(result.stream_versions) == {"a": 2, "b": 2}
    # Both accounts' entries now include the transfer: a deposit to b reads nothing.
    await execute(store, Deposit("b", 1), codec=bank_codec, cache=cache)
    assert store.reads == []
    assert len(cache) == 2


async def test_a_transfer_with_one_account_cached_reads_only_the_other_from_its_start(
    any_store: EventStore,
) -> None:
    store = RecordingStore(any_store)
    cache = StateCache()
    await execute(store, Deposit("a", 50), codec=bank_codec, cache=cache)
    await execute(any_store, Deposit("b", 5), codec=bank_codec)  # not cached
    store.reads.clear()
    await execute(store, Transfer("a", "b", 20), codec=bank_codec, cache=cache)
    assert store.reads == [
        {"streams": ["a", "b"], "from_versions": {"a": 2, "b": 1}, "limit": 2000}
    ]


def test_classes_that_inherit_one_fold_share_it_and_an_override_makes_another() -> None:
    @dataclass(frozen=True)
    class Audited(Deposit):
        def apply(self, state: Balances, stream_id: StreamId, event: Any) -> Balances:
            return state

    assert fold_identity(Deposit) is fold_identity(Transfer)
    assert fold_identity(Audited) is not fold_identity(Deposit)


async def test_the_counters_say_what_known_work_did(any_store: EventStore) -> None:
    cache = StateCache()
    assert cache.stats() == CacheStats(0, 0, 0, 0, 0, 0)
    assert cache.stats().hit_rate is None
    await execute(any_store, Deposit("a", 10), codec=bank_codec, cache=cache)  # miss
    await execute(any_store, Deposit("a", 10), codec=bank_codec, cache=cache)  # hit
    await execute(any_store, Deposit("a", 1), codec=bank_codec)  # another writer
    # Stale: the optimistic append conflicts, the retry catches up from the entry (a hit).
    await execute(any_store, Deposit("a", 10), codec=bank_codec, cache=cache)
    # b has no entry: a miss, and a refusal made on a fresh read (nothing to re-check).
    with pytest.raises(BusinessRuleViolation):
        await execute(any_store, Transfer("a", "b", 1000), codec=bank_codec, cache=cache)
    assert cache.stats() == CacheStats(
        hits=3, misses=2, stale=1, rechecks=0, verifications=0, entries=1
    )


async def test_a_refusal_made_on_cached_state_counts_one_recheck(any_store: EventStore) -> None:
    cache = StateCache()
    await execute(any_store, Deposit("a", 10), codec=bank_codec, cache=cache)
    await execute(any_store, Deposit("b", 10), codec=bank_codec, cache=cache)
    with pytest.raises(BusinessRuleViolation):
        await execute(any_store, Transfer("a", "b", 1000), codec=bank_codec, cache=cache)
    assert cache.stats() == CacheStats(
        hits=2, misses=2, stale=0, rechecks=1, verifications=0, entries=2
    )
    assert cache.stats().hit_rate == 0.5


async def test_warming_fills_entries_so_that_the_first_commands_read_nothing(
    any_store: EventStore,
) -> None:
    for account in ("a", "b", "c"):
        await execute(any_store, Deposit(account, 30), codec=bank_codec)
    store = RecordingStore(any_store)
    cache = StateCache(verify=True)
    assert (
        await cache.warm(store, Transfer, ["a", "b", "c", "never-written"], codec=bank_codec) == 4
    )
    assert [r["streams"] for r in store.reads] == [["a", "b", "c", "never-written"]]
    store.reads.clear()
    cache.verify_rate = 0.0
    await execute(store, Transfer("a", "b", 30), codec=bank_codec, cache=cache)
    await execute(store, Deposit("never-written", 1), codec=bank_codec, cache=cache)
    assert store.reads == []
    assert cache.stats().hits == 2


async def test_warmed_entries_are_the_states_a_fresh_fold_gives(any_store: EventStore) -> None:
    for amount in (30, 12):
        await execute(any_store, Deposit("a", amount), codec=bank_codec)
    cache = StateCache(verify=True)  # folds afresh on every hit and compares
    await cache.warm(any_store, Deposit("x", 1), ["a", "b"], codec=bank_codec)
    await execute(any_store, Transfer("a", "b", 42), codec=bank_codec, cache=cache)
    assert cache.stats().verifications == 1
    with pytest.raises(BusinessRuleViolation):
        await execute(any_store, Transfer("a", "b", 1), codec=bank_codec, cache=cache)


@dataclass(frozen=True)
class Pair(Command[Balances, Any]):
    """A two-account command whose state is not per stream: entries per stream set."""

    reuses_state: ClassVar[bool] = True
    first: str
    second: str

    def streams(self) -> list[str]:
        return [self.first, self.second]

    def initial_state(self) -> Balances:
        return Balances()

    def apply(self, state: Balances, stream_id: StreamId, event: Any) -> Balances:
        return state.after(stream_id, event)

    def handle(self, state: Balances) -> list[tuple[str, Any]]:
        return [(self.second, MoneyDeposited(state.of(self.first)))]


async def test_a_class_whose_state_is_not_per_stream_is_warmed_by_stream_sets(
    any_store: EventStore,
) -> None:
    await execute(any_store, Deposit("a", 3), codec=bank_codec)
    store = RecordingStore(any_store)
    cache = StateCache(verify=True)
    await cache.warm(store, Pair, [("a", "b")], codec=bank_codec)
    result = await execute(store, Pair("a", "b"), codec=bank_codec, cache=cache)
    assert result.stream_versions == {"a": 1, "b": 1}
    assert cache.stats().hits == 1


async def test_warming_is_refused_for_a_class_that_has_not_opted_in() -> None:
    @dataclass(frozen=True)
    class Plain(Pair):
        reuses_state: ClassVar[bool] = False

    with pytest.raises(StateReuseRefused, match="Plain has not opted in"):
        await StateCache().warm(InMemoryEventStore(), Plain, ["a"])


async def test_warming_needs_stream_ids_not_a_single_string() -> None:
    with pytest.raises(ValidationError, match="iterable of stream ids"):
        await StateCache().warm(InMemoryEventStore(), Deposit, "account-1")


# -- the per-stream rule and its checks ---------------------------------------------

peak_codec = Codec()


@peak_codec.register("test.Moved")
@dataclass(frozen=True)
class Moved:
    amount: int


@dataclass(frozen=True)
class Running:
    total: int = 0
    peak: int = 0


@dataclass(frozen=True)
class RecordPeak(Command[Running, Moved]):
    """Breaks the per-stream rule: the peak of a running total over several streams
    depends on the streams before, so merging each stream's peak is wrong."""

    reuses_state: ClassVar[bool] = True
    state_per_stream: ClassVar[bool] = True
    streams_read: tuple[str, ...]

    def streams(self) -> list[str]:
        return list(self.streams_read)

    def initial_state(self) -> Running:
        return Running()

    def apply(self, state: Running, stream_id: StreamId, event: Moved) -> Running:
        total = state.total + event.amount
        return Running(total, max(state.peak, total))

    def merge_states(self, parts: Mapping[StreamId, Running]) -> Running:
        return Running(sum(p.total for p in parts.values()), max(p.peak for p in parts.values()))

    def handle(self, state: Running) -> list[tuple[str, Moved]]:
        return [(self.streams_read[0], Moved(1))]


async def test_verification_catches_a_state_that_is_not_a_per_stream_fold(
    any_store: EventStore,
) -> None:
    cache = StateCache(verify=True)
    await execute(any_store, RecordPeak(("a",)), codec=peak_codec, cache=cache)  # a: 1
    await execute(any_store, RecordPeak(("b",)), codec=peak_codec, cache=cache)  # b: 1
    with pytest.raises(StateReuseMismatch) as caught:
        await execute(any_store, RecordPeak(("a", "b")), codec=peak_codec, cache=cache)
    assert (caught.value.reused, caught.value.fresh) == (Running(2, 1), Running(2, 2))
    assert await any_store.stream_version("a") == 1, "nothing is written on a mismatch"


def test_a_per_stream_class_must_opt_in_to_reuse_and_define_merge_states() -> None:
    with pytest.raises(StateReuseRefused, match="per-stream state"):

        class NotReusing(Pair):
            reuses_state: ClassVar[bool] = False
            state_per_stream: ClassVar[bool] = True

    with pytest.raises(ValidationError, match="defines no merge_states"):

        class NoMerge(Pair):
            state_per_stream: ClassVar[bool] = True


def test_a_per_stream_class_cannot_discover_streams() -> None:
    with pytest.raises(ValidationError, match="cannot discover streams"):

        class Discovering(Deposit):
            def resolve_streams(self, state: Balances) -> list[str]:
                return ["elsewhere"]


@dataclass(frozen=True)
class Totals:
    amounts: dict[str, int]


@dataclass(frozen=True)
class MoveTotals(Command[Totals, Moved]):
    """Per-stream totals that are also snapshotted: each stream has its own."""

    reuses_state: ClassVar[bool] = True
    state_per_stream: ClassVar[bool] = True
    snapshot_every: ClassVar[int] = 3
    snapshot_name: ClassVar[str] = "test.totals"
    state_type: ClassVar[type] = Totals
    streams_read: tuple[str, ...]

    def streams(self) -> list[str]:
        return list(self.streams_read)

    def initial_state(self) -> Totals:
        return Totals({})

    def apply(self, state: Totals, stream_id: StreamId, event: Moved) -> Totals:
        return Totals({**state.amounts, stream_id: state.amounts.get(stream_id, 0) + event.amount})

    def merge_states(self, parts: Mapping[StreamId, Totals]) -> Totals:
        return Totals({s: n for part in parts.values() for s, n in part.amounts.items()})

    def handle(self, state: Totals) -> list[tuple[str, Moved]]:
        return [(self.streams_read[-1], Moved(1))]


async def test_a_per_stream_fold_starts_each_uncached_stream_from_its_own_snapshot(
    any_store: EventStore,
) -> None:
    for _ in range(5):  # the fourth folds 3 events: a snapshot of "a" at version 3
        await execute(any_store, MoveTotals(("a",)), codec=peak_codec)
    store = RecordingStore(any_store)
    cache = StateCache(verify=True)
    await execute(store, MoveTotals(("a", "b")), codec=peak_codec, cache=cache)
    assert store.reads[0] == {
        "streams": ["a", "b"],
        "from_versions": {"a": 4, "b": 1},
        "limit": 2000,
    }
    store.reads.clear()
    result = await execute(store, MoveTotals(("a", "b")), codec=peak_codec, cache=cache)
    assert dict(result.stream_versions) == {"a": 5, "b": 2}
    assert cache.stats().verifications == 1  # the merged entries equal a fresh fold
