"""A small shop for the process manager tests: orders, stock, and the order saga.

``order-<id>`` streams hold OrderPlaced, then OrderConfirmed or OrderCancelled;
``item-<sku>`` streams hold StockAdded and, per order, StockReserved or
StockUnavailable. ReserveStock records its "no" as an event (StockUnavailable),
so a process manager decides it once; ConfirmOrder and CancelOrder refuse an
order that is already closed (BusinessRuleViolation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eventcore import BusinessRuleViolation, Codec, Command, ProcessManager, RecordedEvent
from eventcore.types import StreamId

shop_codec = Codec()


@shop_codec.register("OrderPlaced")
@dataclass(frozen=True)
class OrderPlaced:
    order_id: str
    item: str
    quantity: int


@shop_codec.register("OrderConfirmed")
@dataclass(frozen=True)
class OrderConfirmed:
    order_id: str


@shop_codec.register("OrderCancelled")
@dataclass(frozen=True)
class OrderCancelled:
    order_id: str
    reason: str


@shop_codec.register("StockAdded")
@dataclass(frozen=True)
class StockAdded:
    quantity: int


@shop_codec.register("StockReserved")
@dataclass(frozen=True)
class StockReserved:
    order_id: str
    quantity: int


@shop_codec.register("StockUnavailable")
@dataclass(frozen=True)
class StockUnavailable:
    order_id: str
    quantity: int


def order_stream(order_id: str) -> str:
    return f"order-{order_id}"


def item_stream(item: str) -> str:
    return f"item-{item}"


@dataclass(frozen=True)
class PlaceOrder(Command[bool, Any]):
    order_id: str
    item: str
    quantity: int

    def streams(self) -> list[str]:
        return [order_stream(self.order_id)]

    def initial_state(self) -> bool:
        return False

    def apply(self, state: bool, stream_id: StreamId, event: Any) -> bool:
        return True

    def handle(self, state: bool) -> list[tuple[str, Any]]:
        if state:
            raise BusinessRuleViolation(f"order {self.order_id!r} exists already")
        return [(order_stream(self.order_id), OrderPlaced(self.order_id, self.item, self.quantity))]


@dataclass(frozen=True)
class AddStock(Command[None, Any]):
    item: str
    quantity: int

    def streams(self) -> list[str]:
        return [item_stream(self.item)]

    def initial_state(self) -> None:
        return None

    def apply(self, state: None, stream_id: StreamId, event: Any) -> None:
        return None

    def handle(self, state: None) -> list[tuple[str, Any]]:
        return [(item_stream(self.item), StockAdded(self.quantity))]


@dataclass(frozen=True)
class Stock:
    available: int = 0
    orders: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class ReserveStock(Command[Stock, Any]):
    item: str
    order_id: str
    quantity: int

    def streams(self) -> list[str]:
        return [item_stream(self.item)]

    def initial_state(self) -> Stock:
        return Stock()

    def apply(self, state: Stock, stream_id: StreamId, event: Any) -> Stock:
        if isinstance(event, StockAdded):
            return Stock(state.available + event.quantity, state.orders)
        if isinstance(event, StockReserved):
            return Stock(state.available - event.quantity, state.orders | {event.order_id})
        if isinstance(event, StockUnavailable):
            return Stock(state.available, state.orders | {event.order_id})
        return state

    def handle(self, state: Stock) -> list[tuple[str, Any]]:
        stream = item_stream(self.item)
        if state.available < self.quantity:
            return [(stream, StockUnavailable(self.order_id, self.quantity))]
        return [(stream, StockReserved(self.order_id, self.quantity))]


@dataclass(frozen=True)
class _CloseOrder(Command[str, Any]):
    """Confirm or cancel an open order; refuse one already closed."""

    order_id: str

    def streams(self) -> list[str]:
        return [order_stream(self.order_id)]

    def initial_state(self) -> str:
        return "new"

    def apply(self, state: str, stream_id: StreamId, event: Any) -> str:
        if isinstance(event, OrderPlaced):
            return "open"
        if isinstance(event, OrderConfirmed):
            return "confirmed"
        if isinstance(event, OrderCancelled):
            return "cancelled"
        return state

    def handle(self, state: str) -> list[tuple[str, Any]]:
        if state != "open":
            raise BusinessRuleViolation(f"order {self.order_id!r} is {state}, not open")
        return [(order_stream(self.order_id), self.closing_event())]

    def closing_event(self) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class ConfirmOrder(_CloseOrder):
    def closing_event(self) -> Any:
        return OrderConfirmed(self.order_id)


@dataclass(frozen=True)
class CancelOrder(_CloseOrder):
    reason: str = "cancelled"

    def closing_event(self) -> Any:
        return OrderCancelled(self.order_id, self.reason)


class OrderSaga(ProcessManager):
    """OrderPlaced: reserve the stock. StockReserved: confirm. StockUnavailable: cancel."""

    name = "order-saga"
    event_types = ("OrderPlaced", "StockReserved", "StockUnavailable")

    def __init__(self) -> None:
        self.reactions = 0

    async def react(self, event: RecordedEvent) -> Sequence[Command[Any, Any]]:
        self.reactions += 1
        decoded = shop_codec.decode(event)
        if isinstance(decoded, OrderPlaced):
            return [ReserveStock(decoded.item, decoded.order_id, decoded.quantity)]
        if isinstance(decoded, StockReserved):
            return [ConfirmOrder(decoded.order_id)]
        if isinstance(decoded, StockUnavailable):
            return [CancelOrder(decoded.order_id, "out of stock")]
        return []
