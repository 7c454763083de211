"""Our orders as TWS reports them: ids, statuses and fills, and the updates they make.

TWS describes an order in several messages (OPEN_ORDER says what it is,
ORDER_STATUS how far it got, EXECUTION_DATA each fill, ERR_MSG a refusal)
that arrive in no promised order and repeat. ``OrderTracker`` folds them
into one ``Order`` per IB order id and returns an ``OrderUpdate`` whenever
something a client would see changed. It does no I/O.

A modification keeps TWS's order id, but the service sees a replacement: a
new record under the new client order id (carried to TWS as the orderRef),
the old one ``replaced``. TWS keeps counting fills per order id, so a
record subtracts what the records before it had filled. A leg waiting for
its parent to fill is ``held`` (TWS says PreSubmitted, as for a stop).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec
import structlog

from ult_actors.brokers.ib import errors as ib_errors
from ult_actors.brokers.ib import wire
from ult_actors.brokers.ib.mapping import order_from_ib, status_from_ib
from ult_actors.errors import UltError
from ult_actors.messages import TERMINAL_STATUSES, Fill, Order, OrderStatus, OrderUpdate
from ult_actors.order_state import fill_of


@dataclass
class TrackedOrder:
    """One order as this connection knows it."""

    #: IB's order id; negative (minus the perm id) for an order known only as completed.
    order_id: int
    order: Order
    perm_id: int = 0
    #: TWS answered the placement (status, open order or error).
    acked: bool = False
    error: UltError | None = None
    cancel_error: UltError | None = None
    #: The order as last sent to TWS (or as TWS described it): a modify resends it.
    placed: wire.PlaceOrder | None = None
    #: TWS's cumulative fill of this order id, quantity and value (every record's).
    ib_filled: Decimal = Decimal(0)
    ib_value: Decimal = Decimal(0)
    #: TWS's cumulative fill of the order id as its executions tell it (those heard).
    executed: Decimal = Decimal(0)
    #: Of that, what the records this one replaced had filled.
    offset_qty: Decimal = Decimal(0)
    offset_value: Decimal = Decimal(0)
    #: A modify sent and not yet answered: the record it makes once TWS takes it.
    replacing: Order | None = None
    replace_error: UltError | None = None

    def note_fills(self, cum_qty: Decimal, avg_price: Decimal | None) -> None:
        """Remember TWS's cumulative fill of the order id, when it grew."""
        if cum_qty > self.ib_filled and avg_price:
            self.ib_filled, self.ib_value = cum_qty, cum_qty * avg_price

    def own_fills(
        self, cum_qty: Decimal, avg_price: Decimal | None
    ) -> tuple[Decimal, Decimal | None]:
        """This record's filled quantity and average price, from TWS's cumulative ones."""
        if not self.offset_qty:
            return cum_qty, avg_price
        filled = max(Decimal(0), cum_qty - self.offset_qty)
        if not filled or not avg_price:
            return filled, None
        own = (cum_qty * avg_price - self.offset_value) / filled
        return filled, own.quantize(Decimal("0.0001"))


@dataclass
class OrderTracker:
    """Every order of one API connection, indexed by order id, client order id, perm id."""

    broker: str
    client_id: int
    now_ns: Callable[[], int] = time.time_ns
    #: Executions before the connection are history: counted, not announced as fills.
    emit_fills: bool = False
    orders: dict[int, TrackedOrder] = field(default_factory=dict)
    by_ref: dict[str, int] = field(default_factory=dict)
    by_perm: dict[int, int] = field(default_factory=dict)
    seen_execs: set[str] = field(default_factory=set)
    #: Records a modification replaced, final, by client order id.
    replaced: dict[str, Order] = field(default_factory=dict)
    #: Executions of orders not tracked when they came, by perm id.
    untracked_execs: dict[int, wire.ExecDetails] = field(default_factory=dict)
    #: Fills waiting for their commission report, by exec id: TWS sends the report
    #: apart (after the execution, or on the next connection's executions request).
    awaiting_fees: dict[str, tuple[TrackedOrder, Fill]] = field(default_factory=dict)
    log: Any = field(default_factory=structlog.get_logger)

    def add(self, order_id: int, order: Order) -> TrackedOrder:
        """A new order of ours, about to be sent, under an id no tracked order has."""
        if order_id in self.orders:
            # One broker id for two orders would let TWS's reports of one update the other.
            raise ValueError(f"IB order id {order_id} is already tracked")
        tracked = TrackedOrder(order_id=order_id, order=order)
        self.orders[order_id] = tracked
        self.by_ref[order.client_order_id] = order_id
        return tracked

    def by_client_id(self, client_order_id: str) -> TrackedOrder | None:
        key = self.by_ref.get(client_order_id)
        return self.orders.get(key) if key is not None else None

    def find(self, match: Callable[[TrackedOrder], bool]) -> Order | None:
        for tracked in list(self.orders.values()):
            if match(tracked):
                return tracked.order
        return None

    def forget(self, tracked: TrackedOrder) -> None:
        """Drop an order that never reached TWS."""
        self.orders.pop(tracked.order_id, None)
        if self.by_ref.get(tracked.order.client_order_id) == tracked.order_id:
            del self.by_ref[tracked.order.client_order_id]

    def set(
        self, tracked: TrackedOrder, *, fill: Fill | None = None, **changes: Any
    ) -> list[OrderUpdate]:
        """Change a tracked order; an update when something a client sees changed."""
        current = tracked.order
        if (
            current.status in TERMINAL_STATUSES
            and changes.get("status", current.status) != current.status
        ):
            changes.pop("status")  # final states stay final
        new = msgspec.structs.replace(current, **changes)
        if new == current and fill is None:
            return []
        now = self.now_ns()
        tracked.order = new = msgspec.structs.replace(new, updated_at=now, outcome="definitive")
        return [OrderUpdate(order=new, fill=fill, ts=now)]

    def _remember_perm(self, tracked: TrackedOrder, perm_id: int) -> None:
        if perm_id:
            tracked.perm_id = perm_id
            self.by_perm[perm_id] = tracked.order_id

    def track_from_ib(
        self, order_id: int, contract: wire.Contract, order: wire.IbOrder, ib_status: str
    ) -> TrackedOrder | None:
        """Start tracking an order TWS told us about (placed before this connection)."""
        status = status_from_ib(ib_status, Decimal(0)) or "accepted"
        filled = order.total_quantity if status == "filled" else Decimal(0)
        ours = order_from_ib(
            broker=self.broker,
            order_id=order_id or None,
            contract=contract,
            order=order,
            status=status,
            now=self.now_ns(),
            filled=filled,
        )
        if ours is None:
            return None
        key = order_id or -order.perm_id
        if key in self.orders and order.perm_id:
            # The id names another order (e.g. a completed one from an earlier TWS
            # session): keep each under its own key rather than overwrite ours.
            key = -order.perm_id
        tracked = TrackedOrder(order_id=key, order=ours, acked=True)
        if order_id:
            tracked.placed = wire.PlaceOrder(order_id=order_id, contract=contract, order=order)
        self.orders[key] = tracked
        self.by_ref.setdefault(ours.client_order_id, key)
        self._remember_perm(tracked, order.perm_id)
        return tracked

    # -- messages -------------------------------------------------------------

    def on_open_order(self, msg: wire.OpenOrder) -> list[OrderUpdate]:
        tracked = self.orders.get(msg.order_id)
        if tracked is None:
            if msg.order.client_id not in (0, self.client_id) and self.client_id != 0:
                return []  # another API client's order (seen by a master client id)
            if self.track_from_ib(msg.order_id, msg.contract, msg.order, msg.status) is None:
                self.log.debug("open order of a kind we do not model", order_id=msg.order_id)
            return []
        tracked.acked = True
        self._remember_perm(tracked, msg.order.perm_id)
        if tracked.placed is None:
            tracked.placed = wire.PlaceOrder(
                order_id=msg.order_id, contract=msg.contract, order=msg.order
            )
        updates = []
        pending = tracked.replacing
        if pending is not None and msg.order.order_ref == pending.client_order_id:
            updates = self._take_replacement(tracked, pending, msg.order.total_quantity)
        status = self._held_or(tracked, status_from_ib(msg.status, tracked.order.filled_qty))
        if status is None or status == "filled":
            return updates  # fills are counted from executions and order status, which carry quantities
        return updates + self.set(tracked, status=status)

    def _take_replacement(
        self, tracked: TrackedOrder, new: Order, ib_total: Decimal
    ) -> list[OrderUpdate]:
        """TWS took a modify: the old record ends ``replaced``, the new one carries on
        for what is left of TWS's new total (every fill so far stays with the old)."""
        old = tracked.order
        tracked.replacing = None
        tracked.offset_qty, tracked.offset_value = tracked.ib_filled, tracked.ib_value
        now = self.now_ns()
        retired = msgspec.structs.replace(
            old, status="replaced", replaced_by=new.client_order_id, updated_at=now
        )
        self.replaced[old.client_order_id] = retired
        if self.by_ref.get(old.client_order_id) == tracked.order_id:
            del self.by_ref[old.client_order_id]
        self.by_ref[new.client_order_id] = tracked.order_id
        tracked.order = msgspec.structs.replace(
            new, qty=ib_total - tracked.ib_filled, updated_at=now, outcome="definitive"
        )
        return [OrderUpdate(order=retired, ts=now), OrderUpdate(order=tracked.order, ts=now)]

    def _held_or(self, tracked: TrackedOrder, status: OrderStatus | None) -> OrderStatus | None:
        """``held`` for a working child whose parent has not filled yet, else ``status``.

        The parent is TWS's (``parentId``), so a leg found at TWS after a restart,
        whose list this connection never saw, is held all the same.
        """
        parent_id = tracked.placed.order.parent_id if tracked.placed is not None else 0
        if status != "accepted" or not parent_id:
            return status
        parent = self.orders.get(parent_id)
        return "held" if parent is not None and parent.order.status != "filled" else status

    def on_order_status(self, msg: wire.OrderStatus) -> list[OrderUpdate]:
        tracked = self.orders.get(msg.order_id)
        if tracked is None:
            return []  # the open order (which says what it is) comes first
        tracked.acked = True
        self._remember_perm(tracked, msg.perm_id)
        tracked.note_fills(msg.filled, msg.avg_fill_price)
        filled, avg = tracked.own_fills(msg.filled, msg.avg_fill_price)
        status = self._held_or(tracked, status_from_ib(msg.status, filled))
        if status is None:
            return []
        changes: dict[str, Any] = {
            "status": status,
            "filled_qty": max(tracked.order.filled_qty, filled),
        }
        if filled > 0 and avg:
            changes["avg_fill_price"] = avg
        return self.set(tracked, **changes)

    def on_execution(self, msg: wire.ExecDetails) -> list[OrderUpdate]:
        """A fill: counted once per exec id, announced only if ``emit_fills``."""
        if msg.exec_id in self.seen_execs:
            return []
        tracked = self.owner_of(msg)
        self.seen_execs.add(msg.exec_id)
        if tracked is not None:
            tracked.executed = max(tracked.executed, msg.cum_qty or tracked.executed + msg.shares)
        if tracked is None:
            # An order from before this connection, finished: history, never a new
            # fill. Remember which order it was: completed orders carry no order id.
            if msg.client_id == self.client_id:
                self.untracked_execs[msg.perm_id] = msg
            return []
        if msg.order_ref and msg.order_ref != tracked.order.client_order_id:
            return self._earlier_record_fill(tracked, msg)
        fill = None
        if self.emit_fills:
            fill = self._fill_of(tracked.order, msg, self.now_ns())
        if fill is not None:
            self.awaiting_fees[msg.exec_id] = (tracked, fill)
        tracked.note_fills(msg.cum_qty, msg.avg_price)
        own, avg = tracked.own_fills(msg.cum_qty, msg.avg_price)
        filled = max(tracked.order.filled_qty, own)
        status = "filled" if filled >= tracked.order.qty else "partially_filled"
        if tracked.order.status in TERMINAL_STATUSES and tracked.order.status != "filled":
            status = tracked.order.status  # e.g. canceled after a partial fill
        return self.set(
            tracked,
            status=status,
            filled_qty=filled,
            avg_fill_price=avg or msg.price,
        )

    def _fill_of(self, order: Order, msg: wire.ExecDetails, ts: int) -> Fill:
        """The fill an execution makes of ``order`` (its commission comes apart)."""
        return fill_of(
            order,
            fill_id=msg.exec_id,
            qty=msg.shares,
            price=msg.price,
            ts=ts,
            side="buy" if msg.side == "BOT" else "sell",
            broker=self.broker,
        )

    def owner_of(self, msg: wire.ExecDetails) -> TrackedOrder | None:
        """The tracked order an execution belongs to (by perm id, order id, order ref)."""
        tracked = self.orders.get(self.by_perm.get(msg.perm_id, msg.order_id))
        if tracked is None and msg.order_ref:
            tracked = self.by_client_id(msg.order_ref)
        return tracked

    def missed_fill(
        self, msg: wire.ExecDetails, report: wire.CommissionReport | None
    ) -> OrderUpdate | None:
        """The fill of an execution a connection before this one never delivered.

        The execution is counted already (the day's executions rebuilt the
        book); this is its fill, with its commission when the report came, and
        the order as it now stands. ``None`` if its order is not ours.
        """
        tracked = self.owner_of(msg)
        if tracked is None:
            return None
        order = tracked.order
        if msg.order_ref and msg.order_ref != order.client_order_id:
            order = self.replaced.get(msg.order_ref, order)  # an earlier record's fill
        fill = self._fill_of(order, msg, self.now_ns())
        if report is not None:
            fill = msgspec.structs.replace(
                fill, commission=report.commission, fee_currency=report.currency or None
            )
        return OrderUpdate(order=order, fill=fill, ts=self.now_ns())

    def executions_behind(self, msg: wire.OrderStatus) -> bool:
        """Whether TWS says an order filled more than the executions heard of it.

        TWS may send the status first, so this is a reason to ask, not proof:
        asking again costs a request, and a fill found twice is applied once.
        """
        tracked = self.orders.get(msg.order_id)
        return self.emit_fills and tracked is not None and msg.filled > tracked.executed

    def still_behind(self) -> bool:
        """Whether any order's status still shows fills its executions do not."""
        return any(t.ib_filled > t.executed for t in self.orders.values())

    def executions_listed(self) -> None:
        """TWS just listed every execution it has: a status still ahead of them is
        about fills it no longer lists (an earlier day's), not a reason to ask again."""
        for tracked in self.orders.values():
            tracked.executed = max(tracked.executed, tracked.ib_filled)

    def on_commission_report(self, msg: wire.CommissionReport) -> list[OrderUpdate]:
        """An execution's commission: its fill, held until now, goes out complete.

        Joined by exec id, whenever it comes: a report TWS sends only on the next
        connection (with the executions asked for after a reconnect) completes the
        fill then. A report of an execution that was no new fill is history.
        """
        held = self.awaiting_fees.pop(msg.exec_id, None)
        if held is None:
            return []
        tracked, fill = held
        fill = msgspec.structs.replace(
            fill, commission=msg.commission, fee_currency=msg.currency or None
        )
        order = self.replaced.get(fill.client_order_id) or tracked.order
        # The order's state went out with the execution; this brings only the fill.
        return [OrderUpdate(order=order, fill=fill, ts=self.now_ns(), fill_only=True)]

    def _earlier_record_fill(
        self, tracked: TrackedOrder, msg: wire.ExecDetails
    ) -> list[OrderUpdate]:
        """A fill under an orderRef the order id had before a modify: an earlier record's.

        Heard late (it crossed the modify), or as history after a restart, when
        this connection first learns that the order was modified: either way it
        is not the current record's, which works for what is left.
        """
        tracked.note_fills(msg.cum_qty, msg.avg_price)
        tracked.offset_qty += msg.shares
        tracked.offset_value += msg.shares * msg.price
        updates: list[OrderUpdate] = []
        earlier = self.replaced.get(msg.order_ref)
        if earlier is not None and self.emit_fills:
            now = self.now_ns()
            fill = self._fill_of(earlier, msg, now)
            earlier = msgspec.structs.replace(
                earlier, filled_qty=earlier.filled_qty + msg.shares, updated_at=now
            )
            self.replaced[msg.order_ref] = earlier
            self.awaiting_fees[msg.exec_id] = (tracked, fill)
            updates.append(OrderUpdate(order=earlier, ts=now))
        assert tracked.placed is not None, "an order placed under two refs was placed or listed"
        average = tracked.ib_value / tracked.ib_filled if tracked.ib_filled else None
        filled, avg = tracked.own_fills(tracked.ib_filled, average)
        status = tracked.order.status
        if status == "partially_filled" and not filled:
            status = "accepted"  # the fills it showed were all an earlier record's
        # Recomputed, not merged: what this record counted as its own was not.
        return updates + self.set(
            tracked,
            status=status,
            qty=tracked.placed.order.total_quantity - tracked.offset_qty,
            filled_qty=filled,
            avg_fill_price=avg,
        )

    def on_order_error(self, tracked: TrackedOrder, msg: wire.ErrorMessage) -> list[OrderUpdate]:
        """ERR_MSG whose request id is one of our orders: notice, refused cancel or rejection."""
        code = msg.code
        log = self.log.bind(
            client_order_id=tracked.order.client_order_id, code=code, text=msg.message
        )
        if code in ib_errors.ORDER_WARNINGS or code == ib_errors.ORDER_CANCELED:
            log.info("tws order notice")
            return []
        if tracked.replacing is not None:
            tracked.replacing = None
            tracked.replace_error = ib_errors.modify_refusal(
                code, msg.message, tracked.order, self.broker
            )
            log.warning("tws refused a modification")
            return []
        if code in (ib_errors.CANCEL_NOT_FOUND, ib_errors.CANCEL_NOT_ALLOWED):
            tracked.cancel_error = ib_errors.order_rejection(code, msg.message, self.broker)
            log.warning("tws refused a cancel")
            return []
        error = ib_errors.order_rejection(code, msg.message, self.broker)
        if tracked.acked and tracked.order.status != "pending_new":
            log.warning("tws error on a live order")  # e.g. a refused modification
            return []
        log.warning("tws rejected an order")
        tracked.error = error
        tracked.acked = True
        if code in ib_errors.ORDER_ID_REFUSED:
            # Never placed: forget it so a retry under the same client id goes out anew.
            self.forget(tracked)
            return []
        return self.set(tracked, status="rejected", reject_reason=error.message)

    def apply_completed(self, tracked: TrackedOrder, msg: wire.CompletedOrder) -> list[OrderUpdate]:
        """A completed order's final status and filled quantity."""
        filled, _ = tracked.own_fills(msg.filled_quantity or Decimal(0), None)
        status = status_from_ib(msg.status, filled) or "canceled"
        return self.set(tracked, status=status, filled_qty=max(filled, tracked.order.filled_qty))

    def adopt_completed(self, msg: wire.CompletedOrder) -> TrackedOrder | None:
        """Track a completed order not seen before (its id recovered from its executions)."""
        known = self.by_perm.get(msg.order.perm_id)
        if known is not None and known in self.orders:
            return None
        execution = self.untracked_execs.get(msg.order.perm_id)
        order_id = execution.order_id if execution is not None else 0
        tracked = self.track_from_ib(order_id, msg.contract, msg.order, msg.status)
        if tracked is not None:
            self.apply_completed(tracked, msg)
            if execution is not None:
                self.set(tracked, avg_fill_price=execution.avg_price or execution.price)
        return tracked
