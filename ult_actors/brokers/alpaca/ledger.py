"""Per-order fill accounting, so stream repeats and stream gaps both come out right.

Alpaca's ``trade_updates`` stream has no replay: fills that happen while it
is down are only visible afterwards as a higher cumulative ``filled_qty`` in
the REST sweep. The ledger remembers, per order, how much has been delivered
as ``Fill`` events; anything an update reports beyond that becomes a fill
(the stream's own execution when there is one, a synthesised one for the
gap), and anything already delivered is not delivered again.

Fills are only synthesised for orders whose whole fill history this
connection has watched (placed after it first connected, or submitted
through it). For an older order first met in a sweep, what it had filled
before is taken as the baseline, since an earlier connection may have
delivered it.

One ledger serves every incarnation of a connection (see ``kind``), so a
restarted broker actor's connector still watches the orders its predecessor
did and resumes the sweep where that one stopped (``cursor_ns``). A report
whose delivery failed (the broker actor crashed applying it) is taken back
(``take_back``): the next sweep delivers it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ult_actors.messages import TERMINAL_STATUSES, Fill, Order
from ult_actors.order_state import fill_of

#: Precision of a synthesised fill price (derived from Alpaca's average price).
_PRICE_STEP = Decimal("0.000000001")
_MAX_TERMINAL = 10_000


@dataclass(frozen=True)
class Execution:
    """One fill as the stream reports it."""

    execution_id: str
    qty: Decimal
    price: Decimal
    ts: int


@dataclass
class _Delivered:
    status: str | None
    qty: Decimal
    notional: Decimal
    submitted_ns: int


class FillLedger:
    """What has been delivered for each order this connection has seen."""

    def __init__(self, watch_from_ns: int) -> None:
        #: Orders created at or after this time are watched from their birth.
        self.watch_from_ns = watch_from_ns
        #: Alpaca's time of the newest event delivered: where the next sweep starts.
        self.cursor_ns = watch_from_ns
        self._orders: dict[str, _Delivered] = {}
        self._terminal = 0

    def expect(self, order: Order) -> None:
        """Register an order submitted through this connector: all its fills are ours to deliver.

        ``order`` is the venue's answer, which the caller returns: its status
        counts as delivered, so a stream update that only repeats it is no
        news. An update the stream delivered first is left as it stands.
        """
        if order.id in self._orders:
            return
        self._orders[order.id] = _Delivered(order.status, Decimal(0), Decimal(0), order.created_at)
        if order.status in TERMINAL_STATUSES:
            self._terminal += 1

    def watching(self, order: Order) -> bool:
        """Whether this order is ours to report: seen before, or born since we started."""
        return order.id in self._orders or order.created_at >= self.watch_from_ns

    def open_order_ids(self) -> list[str]:
        """Orders last seen in a non-terminal state."""
        return [oid for oid, d in self._orders.items() if d.status not in TERMINAL_STATUSES]

    def earliest_open_ns(self) -> int | None:
        """Creation time of the oldest order last seen open (to bound a sweep)."""
        times = [
            d.submitted_ns
            for d in self._orders.values()
            if d.status not in TERMINAL_STATUSES and d.submitted_ns
        ]
        return min(times) if times else None

    def repeats(self, order_id: str, status: str, filled_qty: Decimal) -> bool:
        """Whether a report of ``status`` and ``filled_qty`` (no execution) is what was delivered."""
        seen = self._orders.get(order_id)
        return seen is not None and seen.status == status and seen.qty == filled_qty

    def delivered(self, order_id: str) -> tuple[Decimal, Decimal | None] | None:
        """(qty delivered as fills, their average price) for an order seen before, else ``None``."""
        seen = self._orders.get(order_id)
        if seen is None:
            return None
        return seen.qty, (seen.notional / seen.qty if seen.qty else None)

    def settle(self, order: Order, execution: Execution | None) -> tuple[bool, list[Fill]]:
        """Account for one report of ``order``: (anything new?, fills to deliver)."""
        seen = self._orders.get(order.id)
        if seen is None:
            seen = self._baseline(order, execution)
            self._orders[order.id] = seen
        fills: list[Fill] = []
        missing = order.filled_qty - seen.qty
        if missing > 0:
            if execution is not None and execution.qty > 0:
                gap = missing - execution.qty
                if gap > 0:
                    fills.append(self._synthesised(order, seen, gap, execution))
                fills.append(
                    fill_of(
                        order,
                        fill_id=execution.execution_id,
                        qty=min(execution.qty, missing),
                        price=execution.price,
                        ts=execution.ts,
                    )
                )
            else:
                fills.append(self._synthesised(order, seen, missing, None))
        changed = bool(fills) or seen.status != order.status
        for fill in fills:
            seen.qty += fill.qty
            seen.notional += fill.qty * fill.price
        if seen.status not in TERMINAL_STATUSES and order.status in TERMINAL_STATUSES:
            self._terminal += 1
        seen.status = order.status
        if self._terminal > _MAX_TERMINAL:
            self._forget_terminal()
        return changed, fills

    def take_back(self, order_id: str, fill: Fill | None) -> None:
        """Undo a settled report of ``order_id`` (and its ``fill``) that the sink never took.

        Its fill counts as undelivered again, and the order's status as
        unknown, so the next report of the order is news.
        """
        seen = self._orders.get(order_id)
        if seen is None:
            return
        if fill is not None:
            seen.qty -= fill.qty
            seen.notional -= fill.qty * fill.price
        if seen.status in TERMINAL_STATUSES:
            self._terminal -= 1
        seen.status = None

    def _baseline(self, order: Order, execution: Execution | None) -> _Delivered:
        if order.created_at >= self.watch_from_ns:
            return _Delivered(None, Decimal(0), Decimal(0), order.created_at)
        # Older than our watch: what filled before this report is not ours to repeat.
        before = order.filled_qty - (execution.qty if execution else Decimal(0))
        before = max(before, Decimal(0))
        return _Delivered(
            None, before, before * (order.avg_fill_price or Decimal(0)), order.created_at
        )

    def _synthesised(
        self, order: Order, seen: _Delivered, qty: Decimal, execution: Execution | None
    ) -> Fill:
        """A fill standing for executions the stream never showed us."""
        avg = order.avg_fill_price
        price = avg or (execution.price if execution else Decimal(0))
        if avg is not None:
            known = seen.notional + (execution.qty * execution.price if execution else 0)
            derived = (order.filled_qty * avg - known) / qty
            if derived > 0:
                price = derived
        if price.as_tuple().exponent < _PRICE_STEP.as_tuple().exponent:  # type: ignore[operator]
            price = price.quantize(_PRICE_STEP)
        ts = execution.ts if execution else order.updated_at
        return fill_of(
            order, fill_id=f"{order.id}:gap:{seen.qty + qty}", qty=qty, price=price, ts=ts
        )

    def _forget_terminal(self) -> None:
        for oid in [o for o, d in self._orders.items() if d.status in TERMINAL_STATUSES]:
            del self._orders[oid]
        self._terminal = 0
