"""How the OANDA simulator writes numbers and times on the wire.

v20 sends every decimal as a string and every time either as RFC 3339 with
nanoseconds (the default) or, when the request says
``Accept-Datetime-Format: UNIX``, as seconds since the epoch in a decimal
string. Records are kept with times as integer nanoseconds under keys named
``time`` or ending in ``Time``; ``render`` turns them into the asked format.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

DatetimeFormat = Literal["RFC3339", "UNIX"]

_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
)
_MONEY = Decimal("0.0001")


def money(value: Decimal) -> str:
    """An account-currency amount, four decimals as OANDA shows them."""
    return f"{value.quantize(_MONEY):f}"


def units(value: Decimal) -> str:
    """Signed units; whole numbers without a decimal point."""
    if value == value.to_integral_value():
        return str(int(value))
    return f"{value.normalize():f}"


def format_time(ns: int, fmt: DatetimeFormat) -> str:
    """Nanoseconds since the epoch in the asked format."""
    seconds, frac = divmod(ns, 1_000_000_000)
    if fmt == "UNIX":
        return f"{seconds}.{frac:09d}"
    stamp = dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:09d}Z"


def parse_time(text: str) -> int:
    """RFC 3339 or UNIX seconds to nanoseconds; ``ValueError`` if neither."""
    text = text.strip()
    match = _RFC3339.match(text)
    if match:
        day, clock, frac, zone = match.groups()
        zone = "+00:00" if zone == "Z" else zone
        whole = dt.datetime.fromisoformat(f"{day}T{clock}{zone}")
        return int(whole.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))
    try:
        seconds = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a time: {text!r}") from None
    if not seconds.is_finite():
        raise ValueError(f"not a time: {text!r}")
    return int(seconds * 1_000_000_000)


def datetime_format(headers: dict[str, str]) -> DatetimeFormat:
    """The format a request asked for (RFC 3339 unless it says UNIX)."""
    return "UNIX" if headers.get("accept-datetime-format", "").upper() == "UNIX" else "RFC3339"


def render(value: Any, fmt: DatetimeFormat) -> Any:
    """A copy of ``value`` with nanosecond times formatted; other values as they are."""
    if isinstance(value, dict):
        return {
            k: format_time(v, fmt)
            if isinstance(v, int) and not isinstance(v, bool) and _is_time_key(k)
            else render(v, fmt)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [render(v, fmt) for v in value]
    return value


def _is_time_key(key: str) -> bool:
    return key == "time" or key.endswith("Time") or key == "timestamp"
