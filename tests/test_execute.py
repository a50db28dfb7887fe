"""The executor's semantics (DESIGN.md section 2), against real stores."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from eventcore import (
    BusinessRuleViolation,
    Codec,
    Command,
    EncodingError,
    EventMetadata,
    InMemoryEventStore,
    RetriesExhausted,
    RetryPolicy,
    StoreUnavailable,
    StreamId,
    UndeclaredStreamError,
    ValidationError,
    execute,
)
from eventcore.demo.bank import Deposit, MoneyDeposited, Transfer, bank_codec
from eventcore.store import EventStore
from eventcore.testing.faults import FaultInjectingStore
from eventcore.types import AppendRequest

codec = Codec()


@codec.register("test.Note")
@dataclass(frozen=True)
class Note:
    text: str


State = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Scripted(Command[State, Note]):
    """Reads ``declared``; a note ``link:X`` read anywhere makes it read stream X too."""

    declared: tuple[str, ...]
    emits: tuple[tuple[str, str], ...] = ()
    refuse: bool = False
    seen_states: list[State] = field(default_factory=list, compare=False)

    def streams(self) -> Iterable[str]:
        return self.declared

    def initial_state(self) -> State:
        return ()

    def apply(self, state: State, stream_id: StreamId, event: Note) -> State:
        return (*state, (stream_id, event.text))

    def resolve_streams(self, state: State) -> Iterable[str]:
        self.seen_states.append(state)
        return [text[5:] for _, text in state if text.startswith("link:")]

    def handle(self, state: State) -> list[tuple[str, Note]]:
        if self.refuse:
            raise BusinessRuleViolation("refused")
        return [(stream, Note(text)) for stream, text in self.emits]


async def _seed(store: EventStore, stream: str, *texts: str) -> None:
    version = await store.stream_version(stream)
    events = [codec.new_event(StreamId(stream), Note(t), EventMetadata()) for t in texts]
    await store.append(AppendRequest.create({stream: version}, events))


async def test_multi_stream_command_writes_every_stream_atomically(any_store: EventStore) -> None:
    await execute(any_store, Deposit("acc-1", 100), codec=bank_codec)
    result = await execute(any_store, Transfer("acc-1", "acc-2", 40), codec=bank_codec)
    assert result.events_written == 2
    assert result.attempts == 1
    assert result.stream_versions == {"acc-1": 2, "acc-2": 1}
    log = await any_store.read_all()
    assert [e.global_position for e in log] == [1, *result.positions]


async def test_result_reports_versions_of_read_only_streams_unchanged(
    any_store: EventStore,
) -> None:
    await _seed(any_store, "config", "rate=3")
    result = await execute(any_store, Scripted(("config", "out"), (("out", "x"),)), codec=codec)
    assert result.stream_versions == {"config": 1, "out": 1}
    assert len(result.positions) == 1


async def test_resolver_discovers_streams_and_reads_each_once(any_store: EventStore) -> None:
    await _seed(any_store, "a", "link:b", "link:c")
    await _seed(any_store, "b", "link:c", "link:a")
    await _seed(any_store, "c", "end")
    store = FaultInjectingStore(any_store)
    command = Scripted(("a",), (("c", "done"),))
    result = await execute(store, command, codec=codec)
    assert set(result.stream_versions) == {"a", "b", "c"}
    # the state after the last fold has every stream exactly once, in queue order
    assert command.seen_states[-1] == (
        ("a", "link:b"),
        ("a", "link:c"),
        ("b", "link:c"),
        ("b", "link:a"),
        ("c", "end"),
    )


async def test_stream_discovered_by_resolver_is_version_checked(any_store: EventStore) -> None:
    await _seed(any_store, "a", "link:b")
    command = Scripted(("a",), (("a", "x"),))
    store = _MovesStreamAfterFirstRead(any_store, "b")
    result = await execute(store, command, codec=codec, retry=RetryPolicy.fixed(0))
    # b moved between the read and the append: the first attempt must conflict
    assert result.attempts == 2
    assert result.stream_versions["b"] == 1


class _MovesStreamAfterFirstRead(FaultInjectingStore):
    """Once, right after the first read, another writer appends to ``victim``."""

    def __init__(self, inner: EventStore, victim: str) -> None:
        super().__init__(inner)
        self.victim = victim
        self.moved = False

    async def read_streams(self, stream_ids: Iterable[str], **kwargs: Any) -> Any:
        result = await super().read_streams(stream_ids, **kwargs)
        if not self.moved and self.victim in result:
            self.moved = True
            await _seed(self.inner, self.victim, "sneaky")
        return result


async def test_stale_read_only_stream_forces_a_retry_with_fresh_state(
    any_store: EventStore,
) -> None:
    await _seed(any_store, "config", "v1")
    store = _MovesStreamAfterFirstRead(any_store, "config")
    command = Scripted(("config", "out"), (("out", "x"),))
    result = await execute(store, command, codec=codec, retry=RetryPolicy.fixed(0))
    assert result.attempts == 2
    assert result.stream_versions == {"config": 2, "out": 1}


async def test_event_for_an_unread_stream_is_refused_and_nothing_is_written(
    any_store: EventStore,
) -> None:
    command = Scripted(("a",), (("a", "ok"), ("elsewhere", "bad")))
    with pytest.raises(UndeclaredStreamError, match="'elsewhere'"):
        await execute(any_store, command, codec=codec)
    assert await any_store.read_all() == []


async def test_business_rule_violation_is_not_retried(any_store: EventStore) -> None:
    store = FaultInjectingStore(any_store)
    with pytest.raises(BusinessRuleViolation):
        await execute(store, Scripted(("a",), refuse=True), codec=codec)
    assert store.append_calls == 0
    assert store.read_calls == 1


async def test_store_failure_is_not_retried(any_store: EventStore) -> None:
    store = FaultInjectingStore(any_store)
    store.fail_next_appends(1)
    with pytest.raises(StoreUnavailable, match="injected"):
        await execute(store, Scripted(("a",), (("a", "x"),)), codec=codec)
    assert store.append_calls == 1
    assert await any_store.read_all() == []


async def test_conflicts_are_retried_and_attempts_reported(any_store: EventStore) -> None:
    store = FaultInjectingStore(any_store)
    store.conflict_next_appends(3)
    result = await execute(
        store, Scripted(("a",), (("a", "x"),)), codec=codec, retry=RetryPolicy.fixed(0)
    )
    assert result.attempts == 4
    assert [e.stream_version for e in await any_store.read_stream("a")] == [1]


async def test_retries_exhausted_after_max_retries_plus_one_attempts(
    any_store: EventStore,
) -> None:
    store = FaultInjectingStore(any_store)
    store.conflict_next_appends(10)
    with pytest.raises(RetriesExhausted) as caught:
        await execute(
            store, Scripted(("a",), (("a", "x"),)), codec=codec, retry=RetryPolicy.fixed(0, 2)
        )
    assert caught.value.attempts == 3
    assert caught.value.last_conflict.stream_id == "a"
    assert store.append_calls == 3
    assert await any_store.read_all() == []


async def test_no_retry_policy_gives_up_after_the_first_conflict() -> None:
    store = FaultInjectingStore(InMemoryEventStore())
    store.conflict_next_appends(1)
    with pytest.raises(RetriesExhausted, match="1 attempt"):
        await execute(
            store, Scripted(("a",), (("a", "x"),)), codec=codec, retry=RetryPolicy.no_retry()
        )


async def test_correlation_causation_and_metadata_land_on_every_event(
    any_store: EventStore,
) -> None:
    await execute(any_store, Deposit("acc-1", 100), codec=bank_codec)
    await execute(
        any_store,
        Transfer("acc-1", "acc-2", 10),
        codec=bank_codec,
        correlation_id="corr-1",
        causation_id="cmd-9",
        metadata={"user": "ann"},
    )
    written = (await any_store.read_all())[1:]
    assert len(written) == 2
    for event in written:
        assert event.metadata.correlation_id == "corr-1"
        assert event.metadata.causation_id == "cmd-9"
        assert event.metadata.user == {"user": "ann"}


async def test_a_fresh_correlation_id_is_made_when_none_is_given(any_store: EventStore) -> None:
    await execute(any_store, Deposit("acc-1", 1), codec=bank_codec)
    await execute(any_store, Deposit("acc-1", 1), codec=bank_codec)
    first, second = await any_store.read_all()
    assert first.metadata.correlation_id
    assert first.metadata.correlation_id != second.metadata.correlation_id


async def test_metadata_that_cannot_be_encoded_writes_nothing(any_store: EventStore) -> None:
    with pytest.raises(EncodingError, match="metadata"):
        await execute(any_store, Deposit("acc-1", 1), codec=bank_codec, metadata={"x": object()})
    assert await any_store.read_all() == []


async def test_event_that_cannot_be_encoded_writes_nothing(any_store: EventStore) -> None:
    # MoneyDeposited is registered with bank_codec, not with this codec: the error says so.
    with pytest.raises(EncodingError, match=r"'bank\.MoneyDeposited' in another Codec"):
        await execute(any_store, Deposit("acc-1", 1), codec=codec)
    assert await any_store.read_all() == []


async def test_command_with_nothing_to_do_writes_nothing(any_store: EventStore) -> None:
    result = await execute(any_store, Scripted(("a",)), codec=codec)
    assert (result.attempts, result.events_written, result.positions) == (1, 0, ())
    assert result.stream_versions == {"a": 0}


@dataclass(frozen=True)
class _BrokenHandle(Scripted):
    returned: Any = None

    def handle(self, state: State) -> Any:
        return self.returned


@pytest.mark.parametrize(
    ("returned", "message"),
    [(None, "returned None"), ([Note("x")], "pairs"), ([("a", "b", "c")], "pairs")],
)
async def test_malformed_handle_results_are_clear_errors(returned: Any, message: str) -> None:
    store = InMemoryEventStore()
    with pytest.raises(ValidationError, match=message):
        await execute(store, _BrokenHandle(("a",), returned=returned), codec=codec)


async def test_invalid_declared_stream_id_is_rejected_before_any_io() -> None:
    store = FaultInjectingStore(InMemoryEventStore())
    with pytest.raises(ValidationError, match="glob"):
        await execute(store, Scripted(("acc-*",)), codec=codec)
    assert store.read_calls == 0


def test_exponential_delays_grow_with_jitter_in_bounds() -> None:
    policy = RetryPolicy()
    rng = random.Random(7)
    for retry in range(5):
        delays = [policy.delay(retry, rng) for _ in range(200)]
        nominal = 0.010 * 2**retry
        assert min(delays) >= 0.8 * nominal
        assert max(delays) <= 1.2 * nominal
        assert max(delays) - min(delays) > 0.1 * nominal  # jitter really varies


def test_fixed_delay_without_jitter_is_exact() -> None:
    assert RetryPolicy.fixed(0.05).delay(3) == 0.05


def test_default_policy_allows_five_attempts() -> None:
    assert RetryPolicy().max_attempts == 5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"base_delay": -0.1},
        {"base_delay": float("nan")},
        {"jitter": 1.0},
        {"backoff": "linear"},
    ],
)
def test_invalid_retry_policies_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RetryPolicy(**kwargs)


async def test_deposited_events_decode_to_the_users_classes(any_store: EventStore) -> None:
    await execute(any_store, Deposit("acc-1", 5), codec=bank_codec)
    (record,) = await any_store.read_stream("acc-1")
    assert bank_codec.decode(record) == MoneyDeposited(5)


@pytest.mark.parametrize("field", ["correlation_id", "causation_id"])
async def test_correlation_and_causation_ids_must_be_strings(field: str) -> None:
    store = FaultInjectingStore(InMemoryEventStore())
    with pytest.raises(ValidationError, match=f"{field} must be a str or None, got 42"):
        await execute(store, Deposit("acc", 1), codec=bank_codec, **{field: 42})  # type: ignore[arg-type]
    assert store.read_calls == 0
