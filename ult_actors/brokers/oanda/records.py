"""v20's order records read back as ours, and what one connection remembers of them.

``OrderRecords`` answers "what is this order of ours now?" from v20's REST
records: an order with its fills and how it ended (``complete``), or as it
stood before its own fill or cancel (``before_own``, for the stream, which
applies that transaction itself). v20 spreads one order of ours over several
of its own records: a resting order filled in part is reissued for the rest
under a new id and the same client id (the fills add up along that chain),
a replace is a cancel and a new order linked by ``replacesOrderID`` /
``replacedByOrderID``, and a bracket's exits live on the entry
(``takeProfitOnFill`` / ``stopLossOnFill``) until its fill makes them
orders on the trade. What the connection has seen (our orders by v20 id,
fill and cancel transactions, each order's fills, the exits a pending entry
holds) is remembered in bounded caches, so the stream seldom asks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Protocol, TypeVar
from urllib.parse import quote

import msgspec

from ult_actors.brokers.oanda.mapping import (
    ENTRY_ORDER_TYPES,
    EXIT_ORDER_TYPES,
    exit_order,
    fill_from,
    held_exits,
    order_from_wire,
    wire_client_id,
    with_cancel,
    with_fills,
)
from ult_actors.brokers.oanda.wire import (
    OrderReply,
    OrdersReply,
    TradeReply,
    TransactionReply,
    WireOrder,
    WireTrade,
    WireTransaction,
    time_ns,
)
from ult_actors.errors import NotFound
from ult_actors.messages import Fill, Order, OrderUpdate
from ult_actors.recent import Recent

_CACHE = 10_000  # orders and transactions remembered per connector
#: Most recent orders searched for a bracket's exit that v20 never made (v20's maximum).
_ORDER_SCAN = 500

_T = TypeVar("_T")


class AccountGet(Protocol):
    """``GET`` of a path under the account (``/orders/42``), decoded as ``type_``."""

    async def __call__(
        self, tail: str, type_: type[_T], *, what: str, params: dict[str, str] | None = None
    ) -> _T: ...


class OrderRecords:
    """v20's records of our orders, read back as ours (see the module docstring)."""

    def __init__(
        self, name: str, get: AccountGet, *, now_ns: Callable[[], int] = time.time_ns
    ) -> None:
        self.name = name
        self._get = get
        self._now_ns = now_ns
        #: Latest known state of orders by v20 id (the stream needs type and size).
        self.orders: Recent[str, Order] = Recent(_CACHE, refresh=True)
        #: Fill and cancel transactions by id (an order lookup needs their details).
        self.transactions: Recent[str, WireTransaction] = Recent(_CACHE, refresh=True)
        #: Fills of each of our orders by client order id, by fill id (ours may be several
        #: v20 orders: a partly filled one is reissued for the rest).
        self._fills: Recent[str, dict[str, Fill]] = Recent(_CACHE, refresh=True)
        #: A bracket's exits waiting for the entry's fill, by the entry's v20 id.
        self.held: Recent[str, list[Order]] = Recent(_CACHE, refresh=True)

    def known_fields(self, order: Order | None) -> Order | None:
        """``order`` with the type and time in force we asked for, if we placed it."""
        # What we asked for reads back differently at v20 (a ``day`` market order is FOK).
        if order is None:
            return None
        known = self.orders.get(order.id)
        if known is None:
            return order
        return msgspec.structs.replace(order, type=known.type, time_in_force=known.time_in_force)

    def after_fill(self, order: Order, txn: WireTransaction) -> tuple[Order, OrderUpdate]:
        """``order`` after the ``ORDER_FILL`` ``txn`` (counted once), and its update."""
        self.transactions.put(txn.id or "", txn)
        fill = fill_from(txn, order)
        fills = self._fills.get(order.client_order_id) or {}
        fills[fill.fill_id] = fill
        self._fills.put(order.client_order_id, fills)
        filled = with_fills(order, list(fills.values()))
        return filled, OrderUpdate(order=filled, fill=fill, ts=fill.ts)

    def after_cancel(self, order: Order, txn: WireTransaction) -> Order:
        """``order`` after the ``ORDER_CANCEL`` ``txn``: its reason decides the state."""
        self.transactions.put(txn.id or "", txn)
        return with_cancel(order, txn.reason, time_ns(txn.time, self._now_ns()))

    async def lookup(self, specifier: str) -> Order:
        """Our order by v20 id or ``@clientID``, as it stands; ``NotFound`` if not ours."""
        path = f"/orders/{quote(specifier, safe='')}"
        wire = (await self._get(path, OrderReply, what="order lookup")).order
        order = await self.complete(wire)
        if order is None:
            raise NotFound(
                f"OANDA order {wire.id} is a {wire.type} order, not one the gateway places",
                broker=self.name,
            )
        self.orders.put(order.id, order)
        return order

    async def complete(self, wire: WireOrder) -> Order | None:
        """A v20 order as ours, with its fills and how it ended looked up.

        Reissues count: an order filled in part whose rest v20 reissued goes
        on in the reissued one (same client id), so its fills are added up
        along the chain. One canceled to be replaced by another client id is
        ``replaced``.
        """
        if wire.state == "FILLED" and wire.replacedByOrderID:
            later = await self.wire(wire.replacedByOrderID)
            if later is not None and wire_client_id(later) == wire_client_id(wire):
                return await self.complete(later)  # the order goes on there
        order = await self.before_own(wire)
        if order is None:
            return None
        if wire.fillingTransactionID:
            order = self.after_fill(order, await self.transaction(wire.fillingTransactionID))[0]
        if wire.state != "CANCELLED":
            return order
        if wire.replacedByOrderID:
            replacement = await self.wire(wire.replacedByOrderID)
            if replacement is not None:
                coid = wire_client_id(replacement)
                return msgspec.structs.replace(
                    order,
                    status="replaced",
                    replaced_by=coid,
                    updated_at=max(order.updated_at, time_ns(wire.cancelledTime)),
                )
        if wire.cancellingTransactionID:
            return self.after_cancel(order, await self.transaction(wire.cancellingTransactionID))
        return with_cancel(order, None, time_ns(wire.cancelledTime))

    async def before_own(self, wire: WireOrder) -> Order | None:
        """Ours as it stood before this v20 order's own fill or cancel; ``None`` if not ours.

        An order reissued for the rest of a partly filled one is the same
        order of ours: its quantity is the first's, and the fills of the
        orders before it in the chain are counted.
        """
        chain = [wire]
        replaced = None  # the order of ours this one replaced, if any
        while chain[0].replacesOrderID:
            earlier = await self.wire(chain[0].replacesOrderID)
            if earlier is None:
                break
            if wire_client_id(earlier) != wire_client_id(wire):
                replaced = earlier  # a replace by another client id: another order of ours
                break
            chain.insert(0, earlier)
        if wire.type in EXIT_ORDER_TYPES:
            trade = await self.trade(wire.tradeID)
            order = (
                exit_order(wire, trade, self.name, ts=time_ns(wire.createTime)) if trade else None
            )
        else:
            order = order_from_wire(chain[0], self.name)
        order = self.known_fields(order)
        if order is None:
            return None
        order = msgspec.structs.replace(
            order, id=wire.id, status="accepted", filled_qty=Decimal(0), avg_fill_price=None
        )
        if replaced is not None:
            order = msgspec.structs.replace(order, replaces=wire_client_id(replaced))
        for earlier in chain[:-1]:
            if earlier.fillingTransactionID:
                txn = await self.transaction(earlier.fillingTransactionID)
                order = self.after_fill(order, txn)[0]
        return order

    async def order_for(self, order_id: str) -> Order | None:
        """Our order behind v20's ``order_id`` before a transaction about it; ``None``: not ours."""
        known = self.orders.get(order_id)
        if known is not None:
            return known
        wire = await self.wire(order_id)
        if wire is None or (
            wire.type not in ENTRY_ORDER_TYPES and wire.type not in EXIT_ORDER_TYPES
        ):
            return None
        # Its state as of this transaction is applied by the caller.
        return await self.before_own(wire)

    async def wire(self, order_id: str) -> WireOrder | None:
        """v20's record of an order (``None`` if it has none)."""
        path = f"/orders/{quote(order_id, safe='')}"
        try:
            return (await self._get(path, OrderReply, what="order lookup")).order
        except NotFound:
            return None

    async def trade(self, trade_id: str | None) -> WireTrade | None:
        """v20's record of a trade (``None`` if it has none)."""
        if not trade_id:
            return None
        path = f"/trades/{quote(trade_id, safe='')}"
        try:
            return (await self._get(path, TradeReply, what="trade lookup")).trade
        except NotFound:
            return None

    async def transaction(self, txn_id: str) -> WireTransaction:
        """One transaction, remembered once fetched."""
        cached = self.transactions.get(txn_id)
        if cached is not None:
            return cached
        path = f"/transactions/{quote(txn_id, safe='')}"
        txn = (await self._get(path, TransactionReply, what="transaction lookup")).transaction
        self.transactions.put(txn_id, txn)
        return txn

    async def pending(self) -> list[WireOrder]:
        """v20's pending orders."""
        reply = await self._get("/pendingOrders", OrdersReply, what="open orders")
        return reply.orders

    async def unmade_exit(self, client_order_id: str) -> Order | None:
        """A bracket's exit v20 has not made (yet), found on its entry; ``None`` if none is.

        Held while its entry is pending; canceled, naming why, once the entry
        ended without making it (canceled, or filled without opening a trade).
        """
        for held in self.held_exits(await self.pending()):
            if held.client_order_id == client_order_id:
                return held
        path = "/orders"
        params = {"state": "ALL", "count": str(_ORDER_SCAN)}
        for wire in (await self._get(path, OrdersReply, what="order lookup", params=params)).orders:
            for held in self.held_exits([wire]):
                if held.client_order_id == client_order_id:
                    entry = await self.complete(wire)
                    assert entry is not None
                    return exit_ended(held, entry)
        return None

    def held_exits(self, pending: list[WireOrder]) -> list[Order]:
        """The take profits and stop losses these pending entries create when they fill."""
        held = []
        for wire in pending:
            entry = order_from_wire(wire, self.name)
            if entry is not None:
                held += held_exits(wire, entry)
        return held


def exit_ended(exit_: Order, entry: Order) -> Order:
    """A bracket's exit that will never work: its entry ended without opening a trade."""
    return msgspec.structs.replace(
        exit_,
        status="canceled",
        reject_reason=f"its entry {entry.client_order_id} is {entry.status}",
        updated_at=entry.updated_at,
    )
