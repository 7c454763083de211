"""How the ``ult`` commands write numbers for people.

Decimals are always written in plain notation (``10``, never ``1E+1``;
``0.0000001``, never ``1E-7``). Tables also round for reading: money to
cents, prices to the instrument's usual tick (2 decimals for a stock at $1
or more, 5 for an FX pair, 3 for a yen pair), other prices to 6 significant
digits. Quantities and the prices a person set (limit, stop) are shown
exactly. ``--json`` keeps full precision, in plain notation too.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import msgspec

_CENT = Decimal("0.01")
#: FX instruments as the venues spell them: ``EUR_USD`` (OANDA), ``EUR/USD``, ``EUR.USD``.
_FX_PAIR = re.compile(r"^[A-Z]{3}[_/.][A-Z]{3}$")
_SIGNIFICANT = 6


def plain(value: Decimal | None) -> str:
    """``value`` exactly, in plain notation without trailing zeros; ``""`` for ``None``."""
    if value is None:
        return ""
    if not value.is_finite():
        return str(value)
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def money(value: Decimal | None) -> str:
    """An amount of money rounded to cents (``93650.40``)."""
    if value is None:
        return ""
    if not value.is_finite():
        return str(value)
    return format(value.quantize(_CENT, rounding=ROUND_HALF_UP), "f")


def price_decimals(symbol: str, value: Decimal) -> int | None:
    """Decimals of ``symbol``'s usual tick at this price, ``None`` if not known."""
    if _FX_PAIR.match(symbol.upper()):
        return 3 if "JPY" in symbol.upper() else 5
    if abs(value) >= 1 and symbol.isalpha():
        return 2  # US equities trade in cents from $1 up
    return None


def price(value: Decimal | None, symbol: str) -> str:
    """A price rounded for reading: the tick's decimals if known, else 6 significant digits."""
    if value is None:
        return ""
    if not value.is_finite():
        return str(value)
    decimals = price_decimals(symbol, value)
    if decimals is not None:
        return format(value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP), "f")
    if value == 0:
        return "0"
    # Keep 6 significant digits: quantize to the digit 6 places below the leading one.
    exponent = value.adjusted() - (_SIGNIFICANT - 1)
    return plain(value.quantize(Decimal(1).scaleb(min(exponent, 0)), rounding=ROUND_HALF_UP))


def plain_json(value: Any) -> Any:
    """``value`` as JSON builtins with every Decimal as a plain-notation string, full precision."""
    return _plain_decimals(msgspec.to_builtins(value, builtin_types=(Decimal,)))


def _plain_decimals(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else str(value)
    if isinstance(value, dict):
        return {k: _plain_decimals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_decimals(v) for v in value]
    return value
