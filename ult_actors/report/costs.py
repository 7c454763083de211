"""One order's transaction costs, from the order and its fills."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from decimal import Decimal

from ult_actors.messages import TERMINAL_STATUSES, Fill, Order, OrderCost

_ZERO = Decimal(0)
#: A symbol's last trade price at a moment (``CostInputs.last_trade``).
LastTradeAt = Callable[[str, int], Decimal | None]
_DAY_NS = 86_400 * 10**9
#: ``date.toordinal()`` of 1970-01-01.
_EPOCH_ORDINAL = 719_163


def utc_day(ts_ns: int) -> str:
    """The UTC date of ``ts_ns`` (ns since the epoch), ``2026-12-04``."""
    return _day_name(ts_ns // _DAY_NS)


@functools.lru_cache(maxsize=4096)
def _day_name(number: int) -> str:
    return dt.date.fromordinal(_EPOCH_ORDINAL + number).isoformat()


def order_cost(order: Order, fills: Sequence[Fill], last_trade: LastTradeAt) -> OrderCost:
    """What ``order`` cost; ``fills`` are its own (from the journal).

    An order journaled before fills were (no fill rows, yet filled) falls
    back on its own filled quantity and average price, with no fees.
    """
    first_fill_s: float | None = None
    last_fill_s: float | None = None
    if fills:
        # One loop, no generators: a report walks every fill of a big journal.
        filled = notional = fees = _ZERO
        first: int | None = None
        last: int | None = None
        for f in fills:
            fees += f.commission
            if f.fees:
                fees += sum(f.fees.values(), _ZERO)
            if not f.qty:
                continue  # fees reported after their execution
            filled += f.qty
            notional += f.qty * f.price
            first = f.ts if first is None else min(first, f.ts)
            last = f.ts if last is None else max(last, f.ts)
        avg = notional / filled if filled else None
        if first is not None and last is not None:
            first_fill_s, last_fill_s = _seconds(first, order), _seconds(last, order)
    else:
        filled, avg, fees = order.filled_qty, order.avg_fill_price, _ZERO
        notional = filled * avg if avg is not None else _ZERO
    sign = 1 if order.side == "buy" else -1
    arrival = order.arrival_price
    slippage_bps: float | None = None
    impact: Decimal | None = None
    opportunity: Decimal | None = None
    shortfall: Decimal | None = None
    if arrival is not None and arrival > 0:
        if avg is not None and filled > 0:
            slippage_bps = float(sign * (avg - arrival) / arrival * 10_000)
            impact = sign * (avg - arrival) * filled
        else:
            impact = _ZERO
        opportunity = _opportunity(order, filled, arrival, sign, last_trade)
        shortfall = impact + fees + (opportunity or _ZERO)
    return OrderCost(
        client_order_id=order.client_order_id,
        broker=order.broker,
        symbol=order.symbol,
        side=order.side,
        status=order.status,
        created_at=order.created_at,
        qty=order.qty,
        filled_qty=filled,
        avg_fill_price=avg,
        notional=notional,
        fees=fees,
        arrival_price=arrival,
        arrival_source=order.arrival_source,
        slippage_bps=slippage_bps,
        price_impact=impact,
        opportunity=opportunity,
        shortfall=shortfall,
        first_fill_s=first_fill_s,
        last_fill_s=last_fill_s,
    )


def _opportunity(
    order: Order, filled: Decimal, arrival: Decimal, sign: int, last_trade: LastTradeAt
) -> Decimal | None:
    """What the rest that never filled cost: how far the price moved against the order
    from arrival to the order's end (its symbol's last fill then). None: no such fill."""
    # A replaced order's rest carries on in its replacement; an open one is not over.
    if order.status not in TERMINAL_STATUSES or order.status == "replaced":
        return _ZERO
    unfilled = order.qty - filled
    if unfilled <= 0:
        return _ZERO
    end_price = last_trade(order.symbol, order.updated_at)
    if end_price is None:
        return None
    return sign * (end_price - arrival) * unfilled


def _seconds(ts: int, order: Order) -> float:
    return max(0, ts - order.created_at) / 1e9
