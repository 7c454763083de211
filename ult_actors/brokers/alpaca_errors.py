"""Alpaca HTTP failures mapped onto the gateway's error codes.

The HTTP status is the primary signal; Alpaca's numeric ``code`` is advisory
(it is not documented per error). Bodies are usually ``{"code", "message"}``
JSON but proxies answer 5xx with HTML, so unreadable bodies are tolerated.
Messages quote Alpaca's own text, never a request: credentials travel in
headers only and so can never end up in an error.

| HTTP | error |
|---|---|
| 401, 403 without an order reason | ``AuthFailed`` (fatal) |
| 403 buying power / qty not sufficient | ``InsufficientFunds`` |
| 403 other order refusals (shorting, wash trade, PDT) | ``InvalidOrder`` |
| 404 | ``NotFound`` |
| 422 "client_order_id must be unique" | ``DuplicateOrder`` |
| 400, 422 | ``InvalidOrder`` (``field`` when Alpaca names one) |
| 429 | ``RateLimited`` with ``retry_after`` from the headers |
| 5xx, timeouts, network | ``BrokerUnavailable`` |
"""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Mapping

import httpx
import msgspec

from ult_actors.brokers.alpaca_wire import WireError
from ult_actors.errors import (
    AuthFailed,
    BrokerUnavailable,
    DuplicateOrder,
    InsufficientFunds,
    Internal,
    InvalidOrder,
    NotFound,
    RateLimited,
    UltError,
)

_FIELDS = (
    "client_order_id",
    "limit_price",
    "stop_price",
    "time_in_force",
    "extended_hours",
    "notional",
    "symbol",
    "side",
    "type",
    "qty",
)
_FIELD_RE = re.compile(r"\b(" + "|".join(_FIELDS) + r")\b")
_FUNDS_RE = re.compile(r"insufficient|buying power|not sufficient", re.IGNORECASE)
_MAX_MESSAGE = 300


def read_error_body(content: bytes) -> WireError:
    """Alpaca's ``{"code", "message"}``, or an empty one when the body is not that JSON."""
    try:
        return msgspec.json.decode(content, type=WireError)
    except msgspec.DecodeError:
        return WireError()


def retry_after_s(headers: Mapping[str, str], now_ns: int) -> float | None:
    """Seconds to wait, from ``Retry-After`` or ``X-RateLimit-Reset`` (Unix seconds)."""
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                return max(0.0, when.timestamp() - now_ns / 1e9)
    reset = headers.get("x-ratelimit-reset")
    if reset:
        try:
            return max(0.0, float(reset) - now_ns / 1e9)
        except ValueError:
            return None
    return None


def rate_limit_exhausted(headers: Mapping[str, str]) -> bool:
    """Whether a successful reply says the window has no requests left."""
    remaining = headers.get("x-ratelimit-remaining")
    if remaining is None:
        return False
    try:
        return int(remaining) <= 0
    except ValueError:
        return False


def error_from_response(response: httpx.Response, *, broker: str, now_ns: int) -> UltError:
    """The narrowest ``UltError`` for a non-2xx Alpaca reply."""
    status = response.status_code
    body = read_error_body(response.content)
    text = " ".join(body.message.split())[:_MAX_MESSAGE] or response.reason_phrase or "no reason"
    said = f"Alpaca answered HTTP {status}: {text}"
    if status == 401:
        return AuthFailed(f"{said}; check ALPACA_API_KEY / ALPACA_API_SECRET", broker=broker)
    if status == 403:
        if _FUNDS_RE.search(text):
            return InsufficientFunds(said, broker=broker)
        if body.code is None:
            # A bare {"message": "forbidden."}: the keys are not valid for this host.
            return AuthFailed(
                f"{said}; the key may belong to the other (paper/live) environment",
                broker=broker,
            )
        return InvalidOrder(said, broker=broker)
    if status == 404:
        return NotFound(said, broker=broker)
    if status in (400, 422):
        if "client_order_id" in text and "unique" in text:
            return DuplicateOrder(said, field="client_order_id", broker=broker)
        match = _FIELD_RE.search(text)
        return InvalidOrder(said, field=match.group(1) if match else None, broker=broker)
    if status == 429:
        wait = retry_after_s(response.headers, now_ns)
        return RateLimited(
            f"Alpaca rate limit reached; retry in {_seconds(wait)}",
            retry_after=wait,
            broker=broker,
        )
    if status >= 500:
        return BrokerUnavailable(
            said, retry_after=retry_after_s(response.headers, now_ns), broker=broker
        )
    return Internal(said, broker=broker)


def error_from_transport(exc: httpx.HTTPError, *, broker: str, what: str) -> BrokerUnavailable:
    """``BrokerUnavailable`` for a timeout or network failure while doing ``what``."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "network error"
    # The exception's text names the host at most; the request (and its headers) stay out.
    return BrokerUnavailable(f"Alpaca {what}: {kind} ({type(exc).__name__})", broker=broker)


def _seconds(wait: float | None) -> str:
    return "a moment" if wait is None else f"{math.ceil(wait * 10) / 10:g} s"
