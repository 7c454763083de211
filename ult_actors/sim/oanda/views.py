"""Read-only v20 views of the simulated account: positions, trades, summary, instruments, transactions.

Each function renders ``OandaBook`` state in v20's shapes (``(status, body)``
replies or plain objects), times still in nanoseconds.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ult_actors.sim.oanda.book import OandaBook, Reply
from ult_actors.sim.oanda.orders import MAX_UNITS, SimTrade
from ult_actors.sim.oanda.wire import DatetimeFormat, format_time, money, parse_time, units

#: ``GET .../transactions`` page size: v20's default and its maximum.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
#: Where a trade shows the pending orders that would close it.
_TRADE_ORDER_KEYS = {
    "TAKE_PROFIT": "takeProfitOrder",
    "STOP_LOSS": "stopLossOrder",
    "TRAILING_STOP_LOSS": "trailingStopLossOrder",
}


def position_wire(book: OandaBook, instrument: str) -> dict[str, Any]:
    inst = book.feed.instruments[instrument]
    open_trades = book.open_trades(instrument)
    sides = {}
    for name, trades in (
        ("long", [t for t in open_trades if t.current_units > 0]),
        ("short", [t for t in open_trades if t.current_units < 0]),
    ):
        total = sum((t.current_units for t in trades), Decimal(0))
        side_pl = sum(
            (
                t.realized_pl
                for t in book.trades.values()
                if t.instrument == instrument and (t.initial_units > 0) == (name == "long")
            ),
            Decimal(0),
        )
        side: dict[str, Any] = {
            "units": units(total),
            "pl": money(side_pl),
            "resettablePL": "0.0000",
            "financing": money(Decimal(0)),
            "guaranteedExecutionFees": money(Decimal(0)),
            "unrealizedPL": money(sum((book.unrealized(t) for t in trades), Decimal(0))),
        }
        if total:
            vwap = sum((t.price * t.current_units for t in trades), Decimal(0)) / total
            side["averagePrice"] = inst.text(vwap, extra=1)
            side["tradeIDs"] = [t.id for t in trades]
        sides[name] = side
    unrealized = sum((book.unrealized(t) for t in open_trades), Decimal(0))
    pl = book.position_pl.get(instrument, Decimal(0))
    return {
        "instrument": instrument,
        "pl": money(pl),
        "unrealizedPL": money(unrealized),
        "marginUsed": money(book.value(instrument, book.net(instrument)) * book.margin_rate),
        "resettablePL": money(pl),
        "financing": money(Decimal(0)),
        "commission": money(Decimal(0)),
        "dividendAdjustment": money(Decimal(0)),
        "guaranteedExecutionFees": money(Decimal(0)),
        **sides,
    }


def positions(book: OandaBook, *, open_only: bool) -> Reply:
    names = [i for i in book.traded() if not open_only or book.net(i) != 0]
    return 200, {
        "positions": [position_wire(book, i) for i in names],
        "lastTransactionID": book.last_id,
    }


def position(book: OandaBook, instrument: str) -> Reply:
    if instrument not in book.feed.instruments:
        return 404, {"errorMessage": f"The instrument {instrument} is unknown"}
    return 200, {"position": position_wire(book, instrument), "lastTransactionID": book.last_id}


def trade_wire(book: OandaBook, t: SimTrade) -> dict[str, Any]:
    """One trade, with the pending orders that would close it."""
    inst = book.feed.instruments[t.instrument]
    return {
        "id": t.id,
        "instrument": t.instrument,
        "price": inst.text(t.price),
        "openTime": t.open_ns,
        "state": "OPEN" if t.current_units else "CLOSED",
        "initialUnits": units(t.initial_units),
        "currentUnits": units(t.current_units),
        "realizedPL": money(t.realized_pl),
        "unrealizedPL": money(book.unrealized(t) if t.current_units else Decimal(0)),
        "marginUsed": money(book.value(t.instrument, t.current_units) * book.margin_rate),
        "financing": money(Decimal(0)),
        **(
            {"closeTime": t.close_ns, "closingTransactionIDs": t.closing_txns} if t.close_ns else {}
        ),
        **{
            _TRADE_ORDER_KEYS[o.type]: book.order_wire(o)
            for o in book.pending()
            if o.trade_id == t.id
        },
    }


def trades(book: OandaBook, *, open_only: bool) -> Reply:
    chosen = [
        t
        for t in sorted(book.trades.values(), key=lambda t: int(t.id), reverse=True)
        if not open_only or t.current_units != 0
    ]
    return 200, {
        "trades": [trade_wire(book, t) for t in chosen],
        "lastTransactionID": book.last_id,
    }


def trade(book: OandaBook, specifier: str) -> Reply:
    """``GET .../trades/{tradeID}``."""
    found = book.trades.get(specifier)
    if found is None:
        return 404, {"errorMessage": f"The trade {specifier} does not exist"}
    return 200, {"trade": trade_wire(book, found), "lastTransactionID": book.last_id}


def summary(book: OandaBook) -> dict[str, Any]:
    """The ``AccountSummary`` object."""
    unrealized = book.unrealized_pl()
    nav = book.balance + unrealized
    used = book.margin_used()
    available = max(Decimal(0), nav - used)
    position_value = sum((book.value(i, book.net(i)) for i in book.traded()), Decimal(0))
    percent = (used / 2 / nav) if nav > 0 else Decimal(0)
    summary: dict[str, Any] = {
        "id": book.account_id,
        "alias": "ult simulator",
        "currency": book.currency,
        "balance": money(book.balance),
        "createdByUserID": book.user_id,
        "createdTime": book.created_ns,
        "guaranteedStopLossOrderMode": "DISABLED",
        "pl": money(book.realized_pl),
        "resettablePL": money(book.realized_pl),
        "financing": money(Decimal(0)),
        "commission": money(Decimal(0)),
        "dividendAdjustment": money(Decimal(0)),
        "guaranteedExecutionFees": money(Decimal(0)),
        "marginRate": f"{book.margin_rate:f}",
        "openTradeCount": sum(1 for t in book.trades.values() if t.current_units),
        "openPositionCount": sum(1 for i in book.traded() if book.net(i)),
        "pendingOrderCount": sum(1 for o in book.orders.values() if o.state == "PENDING"),
        "hedgingEnabled": False,
        "unrealizedPL": money(unrealized),
        "NAV": money(nav),
        "marginUsed": money(used),
        "marginAvailable": money(available),
        "positionValue": money(position_value),
        "marginCloseoutUnrealizedPL": money(unrealized),
        "marginCloseoutNAV": money(nav),
        "marginCloseoutMarginUsed": money(used),
        "marginCloseoutPercent": f"{percent.quantize(Decimal('0.00001')):f}",
        "marginCloseoutPositionValue": money(position_value),
        "withdrawalLimit": money(available),
        "marginCallMarginUsed": money(used),
        "marginCallPercent": f"{percent.quantize(Decimal('0.00001')):f}",
        "lastTransactionID": book.last_id,
    }
    if book.last_fill_ns is not None:
        summary["lastOrderFillTimestamp"] = book.last_fill_ns
    return summary


def instruments(book: OandaBook) -> list[dict[str, Any]]:
    return [
        {
            "name": i.name,
            "type": i.type,
            "displayName": i.name.replace("_", "/"),
            "pipLocation": -(i.display_precision - 1),
            "displayPrecision": i.display_precision,
            "tradeUnitsPrecision": 0,
            "minimumTradeSize": "1",
            "maximumTrailingStopDistance": "1.00000",
            "minimumTrailingStopDistance": "0.00050",
            "maximumPositionSize": "0",
            "maximumOrderUnits": units(MAX_UNITS),
            "marginRate": f"{book.margin_rate:f}",
        }
        for i in book.feed.instruments.values()
    ]


def transaction_pages(
    book: OandaBook, query: dict[str, str], *, base_url: str, fmt: DatetimeFormat
) -> Reply:
    """``GET .../transactions``: how many transactions match, as pages of ``idrange`` URLs.

    ``from``/``to`` (times, default: the account's creation and now),
    ``pageSize`` (1..1000, default 100) and ``type`` (comma-separated) select;
    each page URL fetches up to ``pageSize`` of them, as the real API does.
    """
    try:
        start = parse_time(query["from"]) if query.get("from") else book.created_ns
        end = parse_time(query["to"]) if query.get("to") else book.now_ns()
    except ValueError:
        return 400, {"errorMessage": "Invalid value specified for 'from' or 'to'"}
    size_text = query.get("pageSize", str(DEFAULT_PAGE_SIZE))
    if not size_text.isdigit() or not 1 <= int(size_text) <= MAX_PAGE_SIZE:
        return 400, {"errorMessage": "Invalid value specified for 'pageSize'"}
    size = int(size_text)
    types = [t for t in query.get("type", "").split(",") if t]
    ids = [
        int(t["id"])
        for t in book.transactions
        if start <= t["time"] <= end and (not types or t["type"] in types)
    ]
    suffix = f"&type={','.join(types)}" if types else ""
    root = f"{base_url}/v3/accounts/{book.account_id}/transactions/idrange"
    pages = [
        f"{root}?from={chunk[0]}&to={chunk[-1]}{suffix}"
        for chunk in (ids[i : i + size] for i in range(0, len(ids), size))
    ]
    body: dict[str, Any] = {
        "from": format_time(start, fmt),
        "to": format_time(end, fmt),
        "pageSize": size,
        "count": len(ids),
        "pages": pages,
        "lastTransactionID": book.last_id,
    }
    if types:
        body["type"] = types
    return 200, body


def transaction_range(book: OandaBook, query: dict[str, str]) -> Reply:
    """``GET .../transactions/idrange?from=&to=[&type=]``: the transactions with ids in range."""
    first, last = query.get("from", ""), query.get("to", "")
    if not first.isdigit() or not last.isdigit() or int(first) > int(last):
        return 400, {"errorMessage": "Invalid value specified for 'from' or 'to'"}
    if int(first) > len(book.transactions):
        return 416, {"errorMessage": f"Transaction ID {first} is out of range"}
    types = {t for t in query.get("type", "").split(",") if t}
    chosen = [
        t for t in book.transactions[int(first) - 1 : int(last)] if not types or t["type"] in types
    ]
    return 200, {"transactions": chosen, "lastTransactionID": book.last_id}
