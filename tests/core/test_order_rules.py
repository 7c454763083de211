"""Each broker-independent rule of an order request: refused with the field it names and a
message a trader can act on; a request within every rule passes."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from ult_actors.errors import InvalidOrder
from ult_actors.messages import OrderRequest
from ult_actors.validation import (
    MAX_DECIMAL,
    SYMBOL_RE,
    _plain_ticker,
    check_decimal,
    validate_order,
)


def _order(**terms: Any) -> OrderRequest:
    return OrderRequest(**{"symbol": "AAPL", "side": "buy", "qty": Decimal(1), **terms})


@pytest.mark.parametrize(
    "terms",
    [
        {},
        {"type": "limit", "limit_price": Decimal("10.5"), "time_in_force": "gtc"},
        {"type": "stop", "stop_price": Decimal("9")},
        {"type": "stop_limit", "limit_price": Decimal("10"), "stop_price": Decimal("9")},
        {"type": "limit", "limit_price": Decimal("10"), "extended_hours": True},
        {"symbol": "EUR_USD", "client_order_id": "a.b_c:d-1"},
    ],
)
def test_an_order_within_every_rule_passes(terms: dict[str, Any]) -> None:
    validate_order(_order(**terms))


@pytest.mark.parametrize(
    ("terms", "field", "message"),
    [
        ({"symbol": "aapl"}, "symbol", "'aapl' is not a valid symbol"),
        ({"qty": Decimal(0)}, "qty", "qty must be greater than 0"),
        ({"qty": Decimal("1e1")}, "qty", "plain digits"),
        ({"type": "limit"}, "limit_price", "limit_price is required for limit orders"),
        ({"type": "stop_limit", "stop_price": Decimal(9)}, "limit_price", "is required"),
        ({"limit_price": Decimal(10)}, "limit_price", "does not apply to market orders"),
        ({"type": "limit", "limit_price": Decimal(-1)}, "limit_price", "greater than 0"),
        ({"type": "stop"}, "stop_price", "stop_price is required for stop orders"),
        ({"type": "stop_limit", "limit_price": Decimal(9)}, "stop_price", "is required"),
        (
            {"type": "limit", "limit_price": Decimal(9), "stop_price": Decimal(8)},
            "stop_price",
            "stop_price does not apply to limit orders",
        ),
        ({"type": "stop", "stop_price": Decimal("0.0000000001")}, "stop_price", "decimal places"),
        (
            {"type": "stop", "stop_price": Decimal(9), "time_in_force": "ioc"},
            "time_in_force",
            "time_in_force ioc is not allowed for stop orders (allowed: day, gtc)",
        ),
        ({"extended_hours": True}, "extended_hours", "needs a limit order"),
        ({"client_order_id": "has space"}, "client_order_id", "1-48 characters"),
        ({"client_order_id": "x" * 49}, "client_order_id", "1-48 characters"),
        # A trailing newline is no part of a symbol or an id (a regex's ``$`` let it by).
        ({"symbol": "AAPL\n"}, "symbol", "'AAPL\\n' is not a valid symbol"),
        ({"client_order_id": "abc\n"}, "client_order_id", "1-48 characters"),
    ],
)
def test_an_order_breaking_a_rule_is_refused_naming_its_field(
    terms: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InvalidOrder, match=re.escape(message)) as info:
        validate_order(_order(**terms))
    assert info.value.field == field


@pytest.mark.parametrize(
    "symbol",
    [
        "A", "AAPL", "A" * 12, "A" * 13, "A1", "1A", "BRK.B", "EUR_USD", "BTC/USD", "A-", "",
        "Aapl", "aAPL", "AAPL\n", " AAPL", "ÄAPL", "\uff21APL", "A²", "ǅ", "A" * 12 + ".B",
    ],
)
def test_a_symbol_passes_exactly_when_the_symbol_pattern_matches_it(symbol: str) -> None:
    # Plain tickers are told without the regex engine: that shortcut must agree with it.
    if SYMBOL_RE.fullmatch(symbol):
        validate_order(_order(symbol=symbol))
    else:
        with pytest.raises(InvalidOrder, match="is not a valid symbol"):
            validate_order(_order(symbol=symbol))


@pytest.mark.parametrize(
    "symbol",
    [
        "A", "AAPL", "A" * 12, "A" * 13, "A1", "1A", "Z9", "@A", "[A", "A/", "A:", "BRK.B", "",
        "Aapl", "aAPL", "AAPL\n", " AAPL", "ÄAPL", "\uff21APL", "A²", "ǅ", "A\u0660",
    ],
)  # fmt: skip
def test_a_plain_ticker_is_told_exactly_when_it_is_a_letter_then_letters_or_digits(
    symbol: str,
) -> None:
    # The shortcut before the regex engine: ASCII A-Z, then up to 11 of A-Z or 0-9.
    plain = re.fullmatch(r"[A-Z][A-Z0-9]{0,11}", symbol) is not None
    assert _plain_ticker(symbol) is plain


@pytest.mark.parametrize(
    "qty",
    ["1", "7", "999999999999", "1000000000000", "0", "-0", "-5", "1E+2", "1.0", "0.5", "NaN",
     "sNaN", "Infinity", "-Infinity", "1E+12", "123456789012345"],
)  # fmt: skip
def test_a_whole_quantity_passes_exactly_when_it_is_plain_positive_and_below_the_bound(
    qty: str,
) -> None:
    # Whole numbers are told by their exponent and two compares: the same answer as the
    # full check's (plain digits, finite, > 0, < MAX_DECIMAL, at most 9 places).
    value = Decimal(qty)
    plain = value.is_finite() and value.as_tuple().exponent in range(-9, 1)
    if plain and 0 < value < MAX_DECIMAL:
        check_decimal(value, "qty")
    else:
        with pytest.raises(InvalidOrder) as info:
            check_decimal(value, "qty")
        assert info.value.field == "qty"
