"""Checks an order request before anything leaves the service.

Broker-independent rules only; a connector may refuse more (for example a
venue that has no ``opg``). Every failure is an ``InvalidOrder`` naming the
field, with a message a trader can act on.

Every decimal a client sends is bounded here, before any actor does
arithmetic on it (see "Client numbers" in docs/architecture.md): finite,
written as plain digits (no exponent), at most ``MAX_DECIMAL_PLACES``
places and below ``MAX_DECIMAL`` in magnitude. Within those bounds no sum,
product or comparison in risk, positions or a connector can leave the
default decimal context (28 digits, exponents to 999999), so none can raise.
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


#: A quantity or price as text: ASCII digits with at most one '.', nothing else
#: (no exponent, sign, underscore or space: "1e1" and "1_0" are not 10 here).
PLAIN_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)
#: Most decimal places of a quantity or price: Alpaca's crypto quantities go to 9,
#: no venue quotes a price finer, and 1e-9 is far below any lot or tick size.
MAX_DECIMAL_PLACES = 9
#: Quantities and prices must be below this (a trillion): beyond any real order,
#: and it keeps ``qty * price`` (at most 42 digits) far from the context's limits.
MAX_DECIMAL = Decimal(10) ** 12
_MAX_ADJUSTED = 11  # the exponent of the leading digit of anything below MAX_DECIMAL


def check_decimal(value: Decimal, field: str) -> None:
    """Raise ``InvalidOrder`` naming ``field`` unless ``value`` is a plain, bounded, positive
    decimal: finite, no exponent form, at most ``MAX_DECIMAL_PLACES`` places, below
    ``MAX_DECIMAL``.

    Reads the sign, digits and exponent first and compares ``value`` only once it is
    bounded, so any ``Decimal`` (``1E+999999999``, ``sNaN``) gets an answer rather
    than an exception.
    """
    if not value.is_finite():
        raise InvalidOrder(f"{field} must be a finite number, got {value}", field=field)
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    if value.adjusted() > _MAX_ADJUSTED:
        raise InvalidOrder(f"{field} is too large (must be below {MAX_DECIMAL:,})", field=field)
    if exponent > 0:
        # Plain digits never decode to a positive exponent: "1e1" did, which is 10.
        raise InvalidOrder(
            f"{field} must be written as plain digits such as 10 or 0.25, not {value}",
            field=field,
        )
    if -exponent > MAX_DECIMAL_PLACES:
        raise InvalidOrder(
            f"{field} has more than {MAX_DECIMAL_PLACES} decimal places: {value}", field=field
        )
    if value <= 0:
        raise InvalidOrder(f"{field} must be greater than 0, got {value}", field=field)


def _positive(value: Decimal | None, field: str) -> None:
    if value is not None:
        check_decimal(value, field)


def validate_symbol(symbol: str) -> None:
    """Raise ``InvalidOrder`` (field ``symbol``) unless ``symbol`` is a well-formed symbol."""
    if not SYMBOL_RE.match(symbol):
        raise InvalidOrder(
            f"symbol {symbol!r} is not a valid symbol (upper-case, e.g. AAPL or EUR_USD)",
            field="symbol",
        )


def validate_order(req: OrderRequest) -> None:
    """Raise ``InvalidOrder`` if ``req`` breaks a broker-independent rule."""
    validate_symbol(req.symbol)
    check_decimal(req.qty, "qty")
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
