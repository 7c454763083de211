"""OANDA v20 JSON shapes as msgspec Structs (only the fields the gateway reads).

Field names are v20's own spelling, so a Struct reads like the API
reference. Unknown keys and newer fields are ignored, as OANDA adds fields
over time. Decimals arrive as strings and decode straight to ``Decimal``.
Times are requested as UNIX seconds (``Accept-Datetime-Format: UNIX``);
``time_ns`` also reads RFC 3339 in case a server ignores that header.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

import msgspec

_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
)


def time_ns(text: str | None, default: int = 0) -> int:
    """A v20 time (UNIX seconds or RFC 3339) in nanoseconds; ``default`` if absent or garbled."""
    if not text:
        return default
    match = _RFC3339.match(text)
    if match:
        day, clock, frac, zone = match.groups()
        stamp = dt.datetime.fromisoformat(f"{day}T{clock}{'+00:00' if zone == 'Z' else zone}")
        return int(stamp.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))
    try:
        seconds = Decimal(text)
    except InvalidOperation:
        return default
    return int(seconds * 1_000_000_000) if seconds.is_finite() else default


class _Wire(msgspec.Struct, kw_only=True):
    pass


class WireClientExtensions(_Wire):
    id: str | None = None
    tag: str | None = None
    comment: str | None = None


class WireOnFill(_Wire):
    """``takeProfitOnFill`` / ``stopLossOnFill`` of an entry order: what its fill creates."""

    price: Decimal | None = None
    clientExtensions: WireClientExtensions | None = None


class WireOrder(_Wire):
    """An order as ``GET .../orders/{specifier}`` and the order lists show it."""

    id: str
    type: str
    state: str = "PENDING"
    instrument: str = ""
    units: Decimal = Decimal(0)
    price: Decimal | None = None
    priceBound: Decimal | None = None
    timeInForce: str = "GTC"
    clientExtensions: WireClientExtensions | None = None
    createTime: str | None = None
    fillingTransactionID: str | None = None
    filledTime: str | None = None
    cancellingTransactionID: str | None = None
    cancelledTime: str | None = None
    replacesOrderID: str | None = None
    replacedByOrderID: str | None = None
    #: Orders on a trade (take profit, stop loss): the trade they close.
    tradeID: str | None = None
    takeProfitOnFill: WireOnFill | None = None
    stopLossOnFill: WireOnFill | None = None


class WireTradeOpen(_Wire):
    tradeID: str


class WireTransaction(_Wire):
    """Any transaction (or a stream heartbeat); fields not in its type stay ``None``."""

    type: str
    id: str | None = None
    time: str | None = None
    orderID: str | None = None
    clientOrderID: str | None = None
    instrument: str | None = None
    units: Decimal | None = None
    price: Decimal | None = None
    priceBound: Decimal | None = None
    fullVWAP: Decimal | None = None
    timeInForce: str | None = None
    reason: str | None = None
    rejectReason: str | None = None
    commission: Decimal | None = None
    #: Fills: financing paid (negative) or received with the trades it closed.
    financing: Decimal | None = None
    guaranteedExecutionFee: Decimal | None = None
    clientExtensions: WireClientExtensions | None = None
    #: Creates: the order a ``REPLACEMENT`` replaces; cancels: the order replacing it.
    replacesOrderID: str | None = None
    replacedByOrderID: str | None = None
    #: Orders on a trade: the trade; fills: the trade opened.
    tradeID: str | None = None
    tradeOpened: WireTradeOpen | None = None
    #: Heartbeats only: the account's newest transaction id.
    lastTransactionID: str | None = None


class WirePriceBucket(_Wire):
    price: Decimal


class WirePrice(_Wire):
    """One ``PRICE`` (``GET .../pricing``): an instrument's best bids and asks."""

    instrument: str
    bids: list[WirePriceBucket] = msgspec.field(default_factory=list)
    asks: list[WirePriceBucket] = msgspec.field(default_factory=list)


class PricingReply(_Wire):
    prices: list[WirePrice]


class WirePositionSide(_Wire):
    units: Decimal = Decimal(0)
    averagePrice: Decimal | None = None


class WirePosition(_Wire):
    instrument: str
    long: WirePositionSide = msgspec.field(default_factory=WirePositionSide)
    short: WirePositionSide = msgspec.field(default_factory=WirePositionSide)
    pl: Decimal | None = None
    unrealizedPL: Decimal | None = None


class WireAccountSummary(_Wire):
    id: str
    balance: Decimal
    NAV: Decimal
    marginAvailable: Decimal
    currency: str = "USD"
    marginRate: Decimal | None = None


class WireAccountRef(_Wire):
    id: str


# -- replies --------------------------------------------------------------


class AccountsReply(_Wire):
    accounts: list[WireAccountRef]


class SummaryReply(_Wire):
    account: WireAccountSummary
    lastTransactionID: str


class OrderReply(_Wire):
    order: WireOrder


class OrdersReply(_Wire):
    orders: list[WireOrder]


class PositionsReply(_Wire):
    positions: list[WirePosition]


class CreateReply(_Wire):
    orderCreateTransaction: WireTransaction | None = None
    orderFillTransaction: WireTransaction | None = None
    orderCancelTransaction: WireTransaction | None = None


class ClosePositionReply(_Wire):
    """``PUT .../positions/{instrument}/close``: the closing order of each side asked."""

    longOrderCreateTransaction: WireTransaction | None = None
    longOrderFillTransaction: WireTransaction | None = None
    longOrderCancelTransaction: WireTransaction | None = None
    shortOrderCreateTransaction: WireTransaction | None = None
    shortOrderFillTransaction: WireTransaction | None = None
    shortOrderCancelTransaction: WireTransaction | None = None


class ReplaceReply(_Wire):
    """``PUT .../orders/{specifier}``: the old order's cancel and its replacement's create."""

    orderCancelTransaction: WireTransaction | None = None
    orderCreateTransaction: WireTransaction | None = None
    orderFillTransaction: WireTransaction | None = None
    replacingOrderCancelTransaction: WireTransaction | None = None


class WireTrade(_Wire):
    id: str
    instrument: str
    initialUnits: Decimal


class TradeReply(_Wire):
    trade: WireTrade


class CancelReply(_Wire):
    orderCancelTransaction: WireTransaction | None = None


class TransactionReply(_Wire):
    transaction: WireTransaction


class TransactionsReply(_Wire):
    transactions: list[WireTransaction]
    lastTransactionID: str


class ErrorBody(_Wire):
    """What v20 says on a 4xx: a message, sometimes a code and a reject transaction."""

    errorMessage: str | None = None
    errorCode: str | None = None
    orderRejectTransaction: WireTransaction | None = None
    orderCancelRejectTransaction: WireTransaction | None = None
