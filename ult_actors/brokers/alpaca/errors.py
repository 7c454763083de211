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

import math
import re
from collections.abc import Mapping

import httpx

from ult_actors.brokers.alpaca.wire import WireError
from ult_actors.brokers.http.errors import (
    MAX_MESSAGE,
    decode_error_body,
    error_for_status,
    rate_limit_exhausted,
    reset_header_s,
    retry_after_header_s,
    transport_error,
)
from ult_actors.errors import (
    AuthFailed,
    BrokerUnavailable,
    DuplicateOrder,
    InsufficientFunds,
    InvalidOrder,
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


def read_error_body(content: bytes) -> WireError:
    """Alpaca's ``{"code", "message"}``, or an empty one when the body is not that JSON."""
    return decode_error_body(content, WireError)


def retry_after_s(headers: Mapping[str, str], now_ns: int) -> float | None:
    """Seconds to wait, from ``Retry-After`` or ``X-RateLimit-Reset`` (Unix seconds)."""
    wait = retry_after_header_s(headers.get("retry-after"), now_ns)
    if wait is not None:
        return wait
    return reset_header_s(headers.get("x-ratelimit-reset"), now_ns)


def venue_window(headers: Mapping[str, str], now_ns: int) -> tuple[int | None, float | None]:
    """What a reply says is left of the key's rate-limit window: (requests, seconds to reset).

    From ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (Unix seconds);
    ``None`` for what is missing or unreadable.
    """
    try:
        remaining: int | None = int(headers.get("x-ratelimit-remaining", ""))
    except ValueError:
        remaining = None
    return remaining, reset_header_s(headers.get("x-ratelimit-reset"), now_ns)


class _AlpacaReply:
    """Alpaca's side of mapping one non-2xx reply (``brokers.http.errors.ReplyReading``)."""

    def __init__(self, response: httpx.Response, *, broker: str, now_ns: int) -> None:
        self.response = response
        self.status = response.status_code
        self.broker = broker
        self.now_ns = now_ns
        self.body = read_error_body(response.content)
        self.message = (
            " ".join(self.body.message.split())[:MAX_MESSAGE]
            or response.reason_phrase
            or "no reason"
        )
        self.said = f"Alpaca answered HTTP {self.status}: {self.message}"

    def narrowed(self) -> UltError | None:
        status, text, said, broker = self.status, self.message, self.said, self.broker
        if status == 403:
            if _FUNDS_RE.search(text):
                return InsufficientFunds(said, broker=broker)
            if self.body.code is not None:
                # Shorting, wash trade, PDT: an order refusal. A bare {"message":
                # "forbidden."} has no code: the keys, as the status says.
                return InvalidOrder(said, broker=broker)
        if status in (400, 422):
            if "client_order_id" in text and "unique" in text:
                return DuplicateOrder(said, field="client_order_id", broker=broker)
            match = _FIELD_RE.search(text)
            return InvalidOrder(said, field=match.group(1) if match else None, broker=broker)
        return None

    def text(self, error: type[UltError]) -> str:
        if error is AuthFailed:
            if self.status == 401:
                return f"{self.said}; check ALPACA_API_KEY / ALPACA_API_SECRET"
            return f"{self.said}; the key may belong to the other (paper/live) environment"
        if error is RateLimited:
            return f"Alpaca rate limit reached; retry in {_seconds(self.retry_after(error))}"
        return self.said

    def retry_after(self, error: type[UltError]) -> float | None:
        return retry_after_s(self.response.headers, self.now_ns)


def error_from_response(response: httpx.Response, *, broker: str, now_ns: int) -> UltError:
    """The narrowest ``UltError`` for a non-2xx Alpaca reply."""
    reading = _AlpacaReply(response, broker=broker, now_ns=now_ns)
    return error_for_status(response.status_code, reading, broker=broker)


def error_from_transport(exc: httpx.HTTPError, *, broker: str, what: str) -> BrokerUnavailable:
    """``BrokerUnavailable`` for a timeout or network failure while doing ``what``."""
    return transport_error(exc, broker=broker, doing=f"Alpaca {what}:", network="network error")


def _seconds(wait: float | None) -> str:
    return "a moment" if wait is None else f"{math.ceil(wait * 10) / 10:g} s"


__all__ = [
    "error_from_response",
    "error_from_transport",
    "rate_limit_exhausted",
    "read_error_body",
    "retry_after_s",
    "venue_window",
]
