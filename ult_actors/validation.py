"""Checks an order request before anything leaves the service.

Broker-independent rules only; a connector may refuse more (for example a
venue that has no ``opg``). Every failure is an ``InvalidOrder`` naming the
field, with a message a trader can act on.
"""

from __future__ import annotations

import re
from decimal import Decimal

from ult_actors.errors import InvalidOrder
from ult_actors.messages import OrderRequest

# Upper-case tickers and FX pairs: AAPL, BRK.B, EUR_USD, BTC/USD.
SYMBOL_RE = re.compile(r"^[A-Z][A-Z0-9]{0,11}([._/-][A-Z0-9]{1,11})?$")
# Printable ASCII without spaces; brokers limit the length (Alpaca 128, IB orderRef).
CLIENT_ORDER_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,48}$")

_TIFS_BY_TYPE: dict[str, frozenset[str]] = {
    "market": frozenset({"day", "gtc", "ioc", "fok", "opg", "cls"}),
    "limit": frozenset({"day", "gtc", "ioc", "fok", "opg", "cls"}),
    "stop": frozenset({"day", "gtc"}),
    "stop_limit": frozenset({"day", "gtc"}),
}


def _positive(value: Decimal | None, field: str) -> None:
    if value is not None and (not value.is_finite() or value <= 0):
        raise InvalidOrder(f"{field} must be a positive number, got {value}", field=field)


def validate_order(req: OrderRequest) -> None:
    """Raise ``InvalidOrder`` if ``req`` breaks a broker-independent rule."""
    if not SYMBOL_RE.match(req.symbol):
        raise InvalidOrder(
            f"symbol {req.symbol!r} is not a valid symbol (upper-case, e.g. AAPL or EUR_USD)",
            field="symbol",
        )
    if not req.qty.is_finite() or req.qty <= 0:
        raise InvalidOrder(f"qty must be greater than 0, got {req.qty}", field="qty")
    _positive(req.limit_price, "limit_price")
    _positive(req.stop_price, "stop_price")
    needs_limit = req.type in ("limit", "stop_limit")
    needs_stop = req.type in ("stop", "stop_limit")
    if needs_limit and req.limit_price is None:
        raise InvalidOrder(f"limit_price is required for {req.type} orders", field="limit_price")
    if not needs_limit and req.limit_price is not None:
        raise InvalidOrder(f"limit_price does not apply to {req.type} orders", field="limit_price")
    if needs_stop and req.stop_price is None:
        raise InvalidOrder(f"stop_price is required for {req.type} orders", field="stop_price")
    if not needs_stop and req.stop_price is not None:
        raise InvalidOrder(f"stop_price does not apply to {req.type} orders", field="stop_price")
    if req.time_in_force not in _TIFS_BY_TYPE[req.type]:
        allowed = ", ".join(sorted(_TIFS_BY_TYPE[req.type]))
        raise InvalidOrder(
            f"time_in_force {req.time_in_force} is not allowed for {req.type} orders"
            f" (allowed: {allowed})",
            field="time_in_force",
        )
    if req.extended_hours and not (req.type == "limit" and req.time_in_force == "day"):
        raise InvalidOrder(
            "extended_hours needs a limit order with time_in_force day", field="extended_hours"
        )
    if req.client_order_id is not None and not CLIENT_ORDER_ID_RE.match(req.client_order_id):
        raise InvalidOrder(
            "client_order_id must be 1-48 characters of letters, digits and . _ : -",
            field="client_order_id",
        )
