"""Process managers: commands driven by events, each with an exactly-once effect,
through redelivery, crashes between handling and checkpoint, and refusals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from eventcore import (
    Application,
    Command,
    ProcessManager,
    ProjectionFailed,
    RecordedEvent,
    ValidationError,
)
from eventcore.projection import (
    FailurePolicy,
    ProjectionRunner,
    ProjectionState,
    RunnerOptions,
    process_command_id,
    process_manager_runner,
    refused_commands,
)
from eventcore.store import EventStore, ProjectionStore
from tests import pg
from tests.shop import (
    AddStock,
    CancelOrder,
    OrderSaga,
    PlaceOrder,
    ReserveStock,
    StockReserved,
    StockUnavailable,
    item_stream,
    order_stream,
    shop_codec,
)

FAST = RunnerOptions(poll_interval=0.02, checkpoint_every=2)
ROOT = Path(__file__).resolve().parent.parent
ORDERS = {"o1": ("apple", 2), "o2": ("apple", 3), "o3": ("pear", 1), "o4": ("apple", 9)}


async def _open_shop(store: EventStore) -> Application:
    app = Application(store, codec=shop_codec)
    await app.execute(AddStock("apple", 5))
    await app.execute(AddStock("pear", 1))
    for order_id, (item, quantity) in ORDERS.items():
        await app.execute(PlaceOrder(order_id, item, quantity), correlation_id=f"req-{order_id}")
    return app


def _keeper(store: EventStore) -> ProjectionStore:
    """The store as the runner sees it (every bundled store keeps checkpoints)."""
    assert isinstance(store, ProjectionStore)
    return store


async def _settle(runner: ProjectionRunner, store: EventStore) -> None:
    """Until the runner has caught up with a head its own commands no longer move."""
    while True:
        head = await store.head_position()
        await runner.caught_up(head)
        if await store.head_position() == head:
            return


async def _decisions(store: EventStore) -> dict[str, Counter[str]]:
    """Per order: how many of each stock decision and each order event there are."""
    found: dict[str, Counter[str]] = {order_id: Counter() for order_id in ORDERS}
    for item in {item for item, _ in ORDERS.values()}:
        for record in await store.read_stream(item_stream(item)):
            event = shop_codec.decode(record)
            if isinstance(event, StockReserved | StockUnavailable):
                found[event.order_id][record.event_type] += 1
    for order_id in ORDERS:
        for record in await store.read_stream(order_stream(order_id)):
            found[order_id][record.event_type] += 1
    return found


EXPECTED = {
    "o1": Counter(OrderPlaced=1, StockReserved=1, OrderConfirmed=1),
    "o2": Counter(OrderPlaced=1, StockReserved=1, OrderConfirmed=1),
    "o3": Counter(OrderPlaced=1, StockReserved=1, OrderConfirmed=1),
    "o4": Counter(OrderPlaced=1, StockUnavailable=1, OrderCancelled=1),
}


async def test_each_order_placed_leads_to_exactly_one_reservation_decision(
    any_store: EventStore,
) -> None:
    app = await _open_shop(any_store)
    async with process_manager_runner(app, OrderSaga(), options=FAST) as runner:
        await _settle(runner, any_store)
    assert await _decisions(any_store) == EXPECTED
    assert await refused_commands(any_store, "order-saga") == []


async def test_redelivered_events_issue_no_duplicate_command(any_store: EventStore) -> None:
    app = await _open_shop(any_store)
    saga = OrderSaga()
    async with process_manager_runner(app, saga, options=FAST) as runner:
        await _settle(runner, any_store)
    first_reactions, head = saga.reactions, await any_store.head_position()
    await _keeper(any_store).save_checkpoint("order-saga", 0)  # every event is delivered again
    async with process_manager_runner(app, saga, options=FAST) as runner:
        await _settle(runner, any_store)
    assert saga.reactions == 2 * first_reactions  # it did react again, to everything
    assert await any_store.head_position() == head
    assert await _decisions(any_store) == EXPECTED
    assert await refused_commands(any_store, "order-saga") == []


async def test_commands_carry_the_triggering_event_as_cause_and_its_correlation(
    any_store: EventStore,
) -> None:
    app = await _open_shop(any_store)
    async with process_manager_runner(app, OrderSaga(), options=FAST) as runner:
        await _settle(runner, any_store)
    placed = (await any_store.read_stream(order_stream("o1")))[0]
    reserved = next(
        record
        for record in await any_store.read_stream(item_stream("apple"))
        if record.event_type == "StockReserved"
    )
    assert reserved.metadata.causation_id == str(placed.event_id)
    assert reserved.metadata.correlation_id == "req-o1"
    first_id = process_command_id("order-saga", placed.event_id, 0)
    assert reserved.event_id == uuid.uuid5(
        uuid.UUID("d8e24517-f153-55c3-b8f7-7cee6c8772cc"), f"{first_id}:0"
    )


def test_process_command_ids_are_pinned() -> None:
    # Stored data: a change would re-issue every command after an upgrade.
    assert process_command_id("order-saga", uuid.UUID(int=1), 0) == uuid.uuid5(
        uuid.UUID("c0eb5097-5b74-5536-964c-df6c748ddda3"),
        "order-saga:00000000-0000-0000-0000-000000000001:0",
    )


async def test_refused_command_is_recorded_once_and_the_manager_goes_on(
    any_store: EventStore,
) -> None:
    app = await _open_shop(any_store)
    # The customer cancels o1 before the saga confirms it: ConfirmOrder is refused.
    await app.execute(CancelOrder("o1", "changed my mind"))
    async with process_manager_runner(app, OrderSaga(), options=FAST) as runner:
        await _settle(runner, any_store)
        assert runner.state is ProjectionState.LIVE
    refused = await refused_commands(any_store, "order-saga")
    assert [(r.command, r.reason) for r in refused] == [
        ("ConfirmOrder", "order 'o1' is cancelled, not open")
    ]
    reserved_o1 = next(
        record
        for record in await any_store.read_stream(item_stream("apple"))
        if record.event_type == "StockReserved"
    )
    assert refused[0].event_id == str(reserved_o1.event_id)
    assert (await _decisions(any_store))["o2"] == EXPECTED["o2"]
    assert await _keeper(any_store).dead_letters("order-saga") == []
    # Delivered again, the refused command is recognised by its id: no second record.
    await _keeper(any_store).save_checkpoint("order-saga", 0)
    async with process_manager_runner(app, OrderSaga(), options=FAST) as runner:
        await _settle(runner, any_store)
    assert len(await refused_commands(any_store, "order-saga")) == 1


async def test_refusal_is_the_outcome_even_when_the_command_would_now_succeed(
    any_store: EventStore,
) -> None:
    """Once refused, a command stays refused: redelivery does not run it again
    although handle would now accept it (the refusal holds the command's id)."""
    app = Application(any_store, codec=shop_codec)
    await app.execute(PlaceOrder("o9", "plum", 1))

    class ReserveOnce(ProcessManager):
        name = "reserve-once"
        event_types = ("OrderPlaced",)

        async def react(self, event: RecordedEvent) -> Sequence[Command[Any, Any]]:
            return [_NeedsStock("plum", "o9")]

    async with process_manager_runner(app, ReserveOnce(), options=FAST) as runner:
        await _settle(runner, any_store)
    await app.execute(AddStock("plum", 5))
    await _keeper(any_store).save_checkpoint("reserve-once", 0)
    async with process_manager_runner(app, ReserveOnce(), options=FAST) as runner:
        await _settle(runner, any_store)
    assert [r.command for r in await refused_commands(any_store, "reserve-once")] == ["_NeedsStock"]
    assert [r.event_type for r in await any_store.read_stream(item_stream("plum"))] == [
        "StockAdded"
    ]


class _NeedsStock(ReserveStock):
    """ReserveStock that refuses (raises) instead of recording StockUnavailable."""

    def __init__(self, item: str, order_id: str) -> None:
        super().__init__(item, order_id, 1)

    def handle(self, state: Any) -> list[tuple[str, Any]]:
        from eventcore import BusinessRuleViolation

        if state.available < self.quantity:
            raise BusinessRuleViolation(f"no {self.item} in stock")
        return super().handle(state)


# -- a crash between executing commands and saving the checkpoint ---------------------


async def _run_worker(url: str, mode: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.process_manager_proc",
        url,
        mode,
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def _crash_and_recover(url: str) -> None:
    async with await Application.open(url, codec=shop_codec) as app:
        await _open_shop(app.store)
    # The third ReserveStock commits, then the worker freezes before any checkpoint.
    worker = await _run_worker(url, "crash", "3")
    assert worker.stdout is not None
    try:
        line = await asyncio.wait_for(worker.stdout.readline(), 120)
        assert line.decode().strip() == "executed ReserveStock"
    finally:
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
    async with await Application.open(url, codec=shop_codec) as app:
        assert await _keeper(app.store).load_checkpoint("order-saga") is None  # (the window held)
        reserved = await _decisions(app.store)
        assert sum(c["StockReserved"] + c["StockUnavailable"] for c in reserved.values()) == 3
    worker = await _run_worker(url, "finish")
    output, _ = await asyncio.wait_for(worker.communicate(), 120)
    assert worker.returncode == 0
    counts = json.loads(output.decode().strip().splitlines()[-1])
    # The three commands already committed were issued again and recognised.
    assert counts == {"applied": 5, "already_applied": 3, "refused": 0}
    async with await Application.open(url, codec=shop_codec) as app:
        assert await _decisions(app.store) == EXPECTED
        assert await refused_commands(app.store, "order-saga") == []


async def test_crash_between_commands_and_checkpoint_loses_and_duplicates_nothing_sqlite(
    tmp_path: Path,
) -> None:
    await _crash_and_recover(str(tmp_path / "shop.sqlite"))


@pytest.mark.postgres
async def test_crash_between_commands_and_checkpoint_loses_and_duplicates_nothing_postgres(
    pg_schema: str,
) -> None:
    await _crash_and_recover(f"{pg.PG_URL}?schema={pg_schema}")


# -- other failures follow the failure policy; bad input is refused -------------------


class _Scripted(ProcessManager):
    def __init__(self, answer: object, policy: FailurePolicy | None = None) -> None:
        self.name = "scripted"
        self.answer = answer
        if policy is not None:
            self.failure_policy = policy

    async def react(self, event: RecordedEvent) -> Sequence[Command[Any, Any]]:
        return self.answer  # type: ignore[return-value]


async def _run_until_failed(store: EventStore, manager: ProcessManager) -> ProjectionFailed:
    app = Application(store, codec=shop_codec)
    await app.execute(PlaceOrder("o1", "apple", 1))
    runner = process_manager_runner(app, manager, options=FAST)
    with pytest.raises(ProjectionFailed) as failed:
        await runner.run()
    return failed.value


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        ("ReserveStock", "'ReserveStock'"),
        (ReserveStock("apple", "o1", 1), "ReserveStock(item='apple'"),
        ([ReserveStock("apple", "o1", 1), None], "returned None"),
        (None, "got None"),
    ],
)
async def test_react_returning_garbage_fails_naming_the_value(
    any_store: EventStore, answer: object, named: str
) -> None:
    failed: BaseException | None = await _run_until_failed(
        any_store, _Scripted(answer, FailurePolicy.stop())
    )
    while failed is not None and not isinstance(failed, ValidationError):
        failed = failed.__cause__
    assert failed is not None
    assert named in str(failed)
    assert "_Scripted.react for OrderPlaced at position 1" in str(failed)
    assert await any_store.head_position() == 1  # nothing issued


async def test_an_error_other_than_a_refusal_follows_the_failure_policy(
    any_store: EventStore,
) -> None:
    app = Application(any_store, codec=shop_codec)
    await app.execute(PlaceOrder("o1", "apple", 1))
    manager = _Scripted([ReserveStock("Bad*Item", "o1", 1)], FailurePolicy.skip())
    async with process_manager_runner(app, manager, options=FAST) as runner:
        await _settle(runner, any_store)
    [letter] = await _keeper(any_store).dead_letters("scripted")
    assert letter.position == 1
    assert "Bad*Item" in letter.error


class _Nameless(ProcessManager):
    async def react(self, event: RecordedEvent) -> Sequence[Command[Any, Any]]:
        return []


class _SyncReact(ProcessManager):
    name = "sync"

    def react(self, event: RecordedEvent) -> Sequence[Command[Any, Any]]:  # type: ignore[override]
        return []


@pytest.mark.parametrize(
    ("manager", "message"),
    [
        (_Nameless(), "_Nameless.name must be a non-empty str"),
        (_Scripted([]), None),  # a valid one, for the other arguments below
        (_SyncReact(), "_SyncReact.react must be an async def"),
        (object(), "takes a ProcessManager"),
    ],
)
def test_bad_process_manager_is_refused_naming_it(manager: object, message: str | None) -> None:
    app = Application(_memory())
    if message is None:
        process_manager_runner(app, manager)  # type: ignore[arg-type]
        return
    with pytest.raises(ValidationError, match=message):
        process_manager_runner(app, manager)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "  ", "a*b", "x" * 201, 42])
def test_bad_process_manager_name_is_refused_naming_it(name: object) -> None:
    manager = _Scripted([])
    manager.name = name  # type: ignore[assignment]
    with pytest.raises(ValidationError, match=r"_Scripted\.name") as refused:
        process_manager_runner(Application(_memory()), manager)
    assert repr(name)[:50] in str(refused.value)


def test_process_manager_needs_an_application_or_a_store() -> None:
    with pytest.raises(ValidationError, match="Application or an EventStore, got 'memory:'"):
        process_manager_runner("memory:", _Scripted([]))  # type: ignore[arg-type]


def _memory() -> EventStore:
    from eventcore import InMemoryEventStore

    return InMemoryEventStore()
