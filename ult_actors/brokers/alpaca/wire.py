"""Alpaca Trading API v2 JSON, as the connector reads it: msgspec Structs and timestamps.

Only the fields the gateway uses are declared; every other field Alpaca
sends is ignored, so additions on Alpaca's side never break decoding.
Decimal fields accept both of Alpaca's spellings (``"168.41"`` and
``168.41``) and stay exact.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache

import msgspec

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9})\d*)?([Zz]|[+-]\d{2}:\d{2})$"
)


class WireOrder(msgspec.Struct, kw_only=True):
    """An order object (REST replies and the ``order`` of a trade update)."""

    id: str
    client_order_id: str
    status: str
    symbol: str | None = None
    side: str = "buy"
    type: str | None = None
    order_type: str | None = None  # deprecated duplicate of ``type``
    time_in_force: str = "day"
    qty: Decimal | None = None
    notional: Decimal | None = None
    filled_qty: Decimal | None = None
    filled_avg_price: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    extended_hours: bool | None = False
    created_at: str | None = None
    updated_at: str | None = None
    submitted_at: str | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    order_class: str | None = None
    #: A bracket's / oco's / oto's other orders, in replies that nest them.
    legs: list[WireOrder] | None = None


class WirePosition(msgspec.Struct, kw_only=True):
    """A position object; ``qty`` is negative for shorts."""

    symbol: str
    qty: Decimal
    avg_entry_price: Decimal
    market_value: Decimal | None = None
    unrealized_pl: Decimal | None = None


class WireAccount(msgspec.Struct, kw_only=True):
    """The account object (only balances and blocking flags are read)."""

    cash: Decimal
    buying_power: Decimal
    equity: Decimal
    currency: str = "USD"
    status: str = ""
    trading_blocked: bool = False
    account_blocked: bool = False


class WireClock(msgspec.Struct, kw_only=True):
    """``GET /v2/clock``."""

    timestamp: str
    is_open: bool
    next_open: str
    next_close: str


class WireError(msgspec.Struct, kw_only=True):
    """An error body: ``{"code": 40310000, "message": "..."}``; both may be missing."""

    code: int | None = None
    message: str = ""


class WireCancelResult(msgspec.Struct, kw_only=True):
    """One entry of the 207 reply to ``DELETE /v2/orders``."""

    id: str
    status: int


class WireCloseResult(msgspec.Struct, kw_only=True):
    """One entry of the 207 reply to ``DELETE /v2/positions``: an order, or why not."""

    symbol: str
    status: int
    body: msgspec.Raw


class WireTradeUpdate(msgspec.Struct, kw_only=True):
    """The ``data`` of a ``trade_updates`` message; fill events carry price/qty."""

    event: str
    order: WireOrder
    timestamp: str | None = None
    price: Decimal | None = None
    qty: Decimal | None = None
    position_qty: Decimal | None = None
    execution_id: str | None = None


class WireFillActivity(msgspec.Struct, kw_only=True):
    """One FILL activity (``GET /v2/account/activities/FILL``): one execution of an order."""

    id: str
    order_id: str
    transaction_time: str
    qty: Decimal
    price: Decimal
    #: What the order had filled once this execution was done.
    cum_qty: Decimal

    @property
    def execution_id(self) -> str:
        """The execution's id: the part of ``id`` after ``<time>::``."""
        return self.id.partition("::")[2] or self.id


class WireFeeActivity(msgspec.Struct, kw_only=True):
    """One FEE or CFEE activity (``GET /v2/account/activities``): a charge posted after
    the execution it is for, naming only its symbol, quantity and price."""

    id: str
    activity_type: str
    #: Negative: what the account paid.
    net_amount: Decimal
    description: str = ""
    symbol: str | None = None
    qty: Decimal | None = None
    price: Decimal | None = None


class WireQuote(msgspec.Struct, kw_only=True):
    """A stock's latest quote (market data ``GET /v2/stocks/{symbol}/quotes/latest``)."""

    #: Best ask and bid prices (0 when the book has none).
    ap: Decimal = Decimal(0)
    bp: Decimal = Decimal(0)


class WireLatestQuote(msgspec.Struct, kw_only=True):
    symbol: str
    quote: WireQuote


class WireAuthorization(msgspec.Struct, kw_only=True):
    """The ``data`` of an ``authorization`` message."""

    status: str
    action: str = "authenticate"


class WireStreamMessage(msgspec.Struct, kw_only=True):
    """One stream frame: which stream it belongs to, and its data (decoded by stream)."""

    stream: str
    data: msgspec.Raw = msgspec.Raw(b"null")


@lru_cache(maxsize=256)  # an order's timestamps repeat across its fields and its updates
def rfc3339_to_ns(text: str) -> int:
    """UTC nanoseconds from Alpaca's RFC 3339 timestamps (nanosecond fractions, any offset)."""
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    day, clock, fraction, zone = match.groups()
    offset = "+00:00" if zone in ("Z", "z") else zone
    moment = datetime.fromisoformat(f"{day}T{clock}{offset}")
    seconds = (moment - _EPOCH) // timedelta(seconds=1)
    return seconds * 1_000_000_000 + int((fraction or "").ljust(9, "0"))


def optional_ns(text: str | None) -> int:
    """``rfc3339_to_ns``, or 0 for a missing or unreadable timestamp."""
    if not text:
        return 0
    try:
        return rfc3339_to_ns(text)
    except ValueError:
        return 0


def ns_to_rfc3339(ns: int) -> str:
    """RFC 3339 in UTC with nanoseconds, the way Alpaca writes timestamps."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"
