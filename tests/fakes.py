"""An in-memory broker for actor tests, with switches for the failures actors must survive.

Its book (``FakeVenue``) outlives connector instances, like a real broker
outlives our connections to it. Market orders fill at once at ``price``;
limit orders rest.
"""

from __future__ import annotations

import itertools
import math
from decimal import Decimal
from typing import Any

import msgspec
import trio

from ult_actors.brokers.base import UpdateSink
from ult_actors.errors import (
    AuthFailed,
    BrokerUnavailable,
    DuplicateOrder,
    NotFound,
    NotReplaceable,
)
from ult_actors.messages import (
    OPEN_STATUSES,
    Account,
    Fill,
    Order,
    OrderRequest,
    OrderUpdate,
    Position,
    ReplaceRequest,
)
from ult_actors.order_state import fill_of, order_from_request


class FakeVenue:
    """The broker side: orders, positions, and fault switches."""

    def __init__(self, name: str = "fake", price: Decimal = Decimal("100")) -> None:
        self.name = name
        self.price = price
        self.orders: dict[str, Order] = {}  # by broker id
        self.by_client: dict[str, str] = {}
        self.positions: dict[str, Decimal] = {}
        self.submits = 0  # submit calls that reached the venue
        self.ids = itertools.count(1)
        self.fail_submits = 0  # next N submits raise BrokerUnavailable before applying
        self.lose_replies = 0  # next N submits apply, then raise BrokerUnavailable
        self.refuse_auth = False
        self.unreachable = False  # connect raises BrokerUnavailable (an outage)
        self.fail_positions = False  # position reports raise BrokerUnavailable
        self.connects = 0
        self.stream_send, self.stream_recv = trio.open_memory_channel[OrderUpdate](math.inf)
        self.kill_stream = trio.Event()
        self.submit_gate: trio.Event | None = None  # when set, submits wait for it
        self.replaces = 0  # replace calls that took effect at the venue
        self.lose_replace_replies = 0  # next N replaces apply, then raise BrokerUnavailable
        self.fail_replaces = 0  # next N replaces raise BrokerUnavailable before applying

    def fill(self, order_id: str, qty: Decimal | None = None) -> Order:
        """Fill ``qty`` (all that is left if ``None``) of a resting order at ``price``."""
        order = self.orders[order_id]
        qty = order.qty - order.filled_qty if qty is None else qty
        done = order.filled_qty + qty
        filled = msgspec.structs.replace(
            order,
            status="filled" if done >= order.qty else "partially_filled",
            filled_qty=done,
            avg_fill_price=self.price,
        )
        sign = 1 if order.side == "buy" else -1
        self.positions[order.symbol] = self.positions.get(order.symbol, Decimal(0)) + sign * qty
        fill_id = f"f{order_id}-{done}"
        self._update(filled, fill_of(filled, fill_id=fill_id, qty=qty, price=self.price, ts=0))
        return filled

    def _update(self, order: Order, fill: Fill | None = None) -> None:
        self.orders[order.id] = order
        self.stream_send.send_nowait(OrderUpdate(order=order, fill=fill))


class FakeConnector:
    """A connector onto a ``FakeVenue``."""

    def __init__(self, name: str, venue: FakeVenue) -> None:
        self.name = name
        self.venue = venue
        self.closed = False

    async def connect(self) -> None:
        self.venue.connects += 1
        if self.venue.refuse_auth:
            raise AuthFailed("credentials refused by fake broker")
        if self.venue.unreachable:
            raise BrokerUnavailable("fake broker: connection refused")

    async def disconnect(self) -> None:
        self.closed = True

    async def submit(self, request: OrderRequest) -> Order:
        venue = self.venue
        if venue.submit_gate is not None:
            await venue.submit_gate.wait()
        await trio.lowlevel.checkpoint()
        if venue.fail_submits:
            venue.fail_submits -= 1
            raise BrokerUnavailable("fake broker: 503")
        assert request.client_order_id is not None
        if request.client_order_id in venue.by_client:
            raise DuplicateOrder("client_order_id must be unique")
        venue.submits += 1
        oid = str(next(venue.ids))
        order = order_from_request(
            request, broker=self.name, order_id=oid, status="accepted", now_ns=0
        )
        venue.by_client[request.client_order_id] = oid
        venue._update(order)
        if request.type == "market":
            filled = msgspec.structs.replace(
                order, status="filled", filled_qty=request.qty, avg_fill_price=venue.price
            )
            sign = 1 if request.side == "buy" else -1
            venue.positions[request.symbol] = (
                venue.positions.get(request.symbol, Decimal(0)) + sign * request.qty
            )
            fill = fill_of(filled, fill_id=f"f{oid}", qty=request.qty, price=venue.price, ts=0)
            venue._update(filled, fill)
            order = filled
        if venue.lose_replies:
            venue.lose_replies -= 1
            raise BrokerUnavailable("fake broker: connection reset after the order was applied")
        return order

    async def replace(self, order: Order, change: ReplaceRequest) -> Order:
        """Alpaca-like: a new order for what is left, the old one ``replaced``."""
        venue = self.venue
        await trio.lowlevel.checkpoint()
        if venue.fail_replaces:
            venue.fail_replaces -= 1
            raise BrokerUnavailable("fake broker: 503")
        old = venue.orders.get(order.id)
        if old is None:
            raise NotFound(f"no order {order.id}")
        if old.status not in ("accepted", "partially_filled"):
            raise NotReplaceable(f"order {old.id} is {old.status}; it cannot be replaced")
        assert change.client_order_id is not None
        if change.client_order_id in venue.by_client:
            raise DuplicateOrder("client_order_id must be unique")
        venue.replaces += 1
        oid = str(next(venue.ids))
        new = msgspec.structs.replace(
            old,
            id=oid,
            client_order_id=change.client_order_id,
            status="accepted",
            qty=(change.qty or old.qty) - old.filled_qty,
            filled_qty=Decimal(0),
            avg_fill_price=None,
            limit_price=change.limit_price or old.limit_price,
            stop_price=change.stop_price or old.stop_price,
            time_in_force=change.time_in_force or old.time_in_force,
            replaces=old.client_order_id,
        )
        venue.by_client[new.client_order_id] = oid
        venue._update(
            msgspec.structs.replace(old, status="replaced", replaced_by=new.client_order_id)
        )
        venue._update(new)
        if venue.lose_replace_replies:
            venue.lose_replace_replies -= 1
            raise BrokerUnavailable("fake broker: connection reset after the replace was applied")
        return new

    async def cancel(self, order_id: str) -> Order:
        order = self.venue.orders.get(order_id)
        if order is None:
            raise NotFound(f"no order {order_id}")
        if order.status in OPEN_STATUSES:
            order = msgspec.structs.replace(order, status="canceled")
            self.venue._update(order)
        return order

    async def get_order(self, order_id: str) -> Order:
        try:
            return self.venue.orders[order_id]
        except KeyError:
            raise NotFound(f"no order {order_id}") from None

    async def get_order_by_client_id(self, client_order_id: str) -> Order:
        oid = self.venue.by_client.get(client_order_id)
        if oid is None:
            raise NotFound(f"no order with client id {client_order_id}")
        return self.venue.orders[oid]

    async def open_orders(self) -> list[Order]:
        return [o for o in self.venue.orders.values() if o.status in OPEN_STATUSES]

    async def positions(self) -> list[Position]:
        if self.venue.fail_positions:
            raise BrokerUnavailable("fake broker: positions failing")
        return [
            Position(broker=self.name, symbol=s, qty=q, avg_entry_price=self.venue.price)
            for s, q in self.venue.positions.items()
            if q
        ]

    async def close_position(self, position: Position, client_order_id: str) -> Order | None:
        return None  # no close of its own: the broker actor submits a market order

    async def close_all_positions(self) -> list[Order] | None:
        return None

    async def account(self) -> Account:
        return Account(
            broker=self.name,
            cash=Decimal(100000),
            buying_power=Decimal(100000),
            equity=Decimal(100000),
        )

    async def stream_updates(
        self, sink: UpdateSink, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        kill = self.venue.kill_stream
        async with trio.open_nursery() as nursery:

            async def watch_kill() -> None:
                await kill.wait()
                self.venue.kill_stream = trio.Event()
                raise BrokerUnavailable("fake stream dropped")

            nursery.start_soon(watch_kill)
            async for update in self.venue.stream_recv:
                await sink(update)


class StoreWith:
    """The journal's store with some methods replaced: ``StoreWith(store, record_fill=f)``.

    Put in the service's journal slot (``monkeypatch.setattr(svc.journal, "_store", ...)``)
    to inject a fault: the compiled build's store does not let its methods be replaced.
    """

    def __init__(self, store: Any, **methods: Any) -> None:
        self._store = store
        for name, method in methods.items():
            setattr(self, name, method)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
