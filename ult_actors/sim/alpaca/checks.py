"""How the Alpaca simulator refuses a request: ``ApiError`` and the field checks that raise it."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from ult_actors.brokers.alpaca.wire import rfc3339_to_ns


class ApiError(Exception):
    """A refusal, answered with Alpaca's status and JSON body."""

    def __init__(self, status: int, code: int | None, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = (
            {"code": code, "message": message} if code is not None else {"message": message}
        )
        self.body.update(extra)


def invalid(message: str) -> ApiError:
    """Alpaca's 422 for a request it cannot accept as written."""
    return ApiError(422, 42210000, message)


def decimal_field(value: Any, name: str) -> Decimal | None:
    """A decimal field sent as a string or a JSON number, normalized (``None`` when absent)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise invalid(f"{name} must be a decimal string")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise invalid(f"invalid {name} {value!r}") from None
    if not number.is_finite():
        raise invalid(f"invalid {name} {value!r}")
    return number.normalize()  # JSON numbers come as floats ("2.0"): Alpaca answers "2"


def price_field(value: Any, name: str) -> Decimal | None:
    """A positive price in whole cents (four places below $1), or ``None`` when absent."""
    price = decimal_field(value, name)
    if price is None:
        return None
    if price <= 0:
        raise invalid(f"{name} must be > 0")
    places = -price.normalize().as_tuple().exponent  # type: ignore[operator]
    if places > (2 if price >= 1 else 4):
        raise invalid("sub-penny increment does not fulfill minimum pricing criteria")
    return price


def query_time(query: dict[str, str], name: str) -> int | None:
    """A timestamp query parameter (``after``, ``until``) in UTC ns; ``None`` if absent."""
    text = query.get(name)
    if not text:
        return None
    try:
        return rfc3339_to_ns(text)
    except ValueError:
        raise invalid(f"{name} must be an RFC 3339 timestamp") from None
