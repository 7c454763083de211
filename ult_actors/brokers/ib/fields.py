"""Typed reading and writing of TWS text fields.

TWS writes "no value" three ways: an empty field, IB's integer sentinel
(2**31 - 1) and its double sentinel (``sys.float_info.max``, printed as
``1.7976931348623157E308``); version 10 clients add a decimal sentinel
(2**127 - 1). All of them read as ``None`` here, and ``None`` is written as
an empty field, which every server version accepts.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

#: IB's "unset" integer.
UNSET_INTEGER = 2**31 - 1
_UNSET_TEXTS = frozenset(
    {
        str(UNSET_INTEGER),
        "1.7976931348623157E308",
        "1.7976931348623157e+308",
        str(2**127 - 1),
        "9223372036854775807",
    }
)


class FieldError(ValueError):
    """A message ended early or a field does not hold the expected type."""


class FieldReader:
    """Reads a message's fields in order; each read names what it expected on failure."""

    def __init__(self, fields: list[str], start: int = 0) -> None:
        self.fields = fields
        self.pos = start

    def remaining(self) -> int:
        return len(self.fields) - self.pos

    def text(self) -> str:
        if self.pos >= len(self.fields):
            raise FieldError(f"message ended after {self.pos} fields")
        value = self.fields[self.pos]
        self.pos += 1
        return value

    def skip(self, n: int = 1) -> None:
        for _ in range(n):
            self.text()

    def integer(self, default: int = 0) -> int:
        text = self.text()
        if text == "":
            return default
        try:
            return int(text)
        except ValueError:
            try:
                return int(Decimal(text))  # some servers print ints as "5.0"
            except InvalidOperation:
                raise FieldError(f"field {self.pos - 1}: not an integer: {text!r}") from None

    def opt_integer(self) -> int | None:
        text = self.text()
        if text == "" or text in _UNSET_TEXTS:
            return None
        try:
            return int(text)
        except ValueError:
            raise FieldError(f"field {self.pos - 1}: not an integer: {text!r}") from None

    def flag(self) -> bool:
        text = self.text()
        if text in ("", "0", "false", "False"):
            return False
        if text in ("1", "true", "True"):
            return True
        raise FieldError(f"field {self.pos - 1}: not a boolean: {text!r}")

    def decimal(self) -> Decimal | None:
        """A price or quantity; ``None`` for empty or IB's unset sentinels."""
        text = self.text()
        if text == "" or text in _UNSET_TEXTS:
            return None
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise FieldError(f"field {self.pos - 1}: not a number: {text!r}") from None
        if not value.is_finite() or abs(value) > Decimal("1e300"):
            return None
        return value

    def decimal_or_zero(self) -> Decimal:
        value = self.decimal()
        return Decimal(0) if value is None else value


def message_id(fields: list[str]) -> int:
    """The id every TWS message starts with, in either direction."""
    try:
        return int(fields[0])
    except (IndexError, ValueError):
        raise FieldError(f"message id is not a number: {fields[:1]!r}") from None


def fmt_bool(value: bool) -> str:
    return "1" if value else "0"


def fmt_decimal(value: Decimal | None) -> str:
    """A number as TWS reads it: plain notation, never an exponent."""
    if value is None:
        return ""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".") or "0"
    return text


def fmt_price(value: Decimal | None) -> str:
    """Like ``fmt_decimal`` but always with a decimal point, as IB prints doubles."""
    text = fmt_decimal(value)
    return text if text == "" or "." in text else text + ".0"


def fmt_int(value: int | None) -> str:
    return "" if value is None else str(value)
