"""HTTP broker failures mapped onto the gateway's error tree: the part every REST broker shares.

A non-2xx reply is mapped in two steps. First the broker's own reading of
the body may name a narrower error (Alpaca's "insufficient buying power",
OANDA's ``INSUFFICIENT_MARGIN``); failing that, the status alone decides:

| HTTP | error |
|---|---|
| 400 | ``InvalidOrder`` |
| 401, 403 | ``AuthFailed`` (fatal) |
| 404 | ``NotFound`` |
| 429 | ``RateLimited`` (``retry_after`` as the broker reads it) |
| 5xx | ``BrokerUnavailable`` (transient) |
| anything else | ``Internal`` |

Each broker supplies that first step and the words of every message through
a ``ReplyReading`` (see ``alpaca.errors`` and ``oanda.errors``), so messages
keep naming the broker and the environment variables to check. A timeout or
network failure is ``BrokerUnavailable``: the outcome of a write is unknown.
So is a 2xx whose body cannot be read (truncated, mangled by a proxy, fields
missing): ``unreadable_reply`` says so, and the caller looks the order up.
Messages are built from the broker's reply text and exception class names
only, never from a request, so credentials (headers) cannot leak into them.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from typing import Protocol, TypeVar

import httpx
import msgspec

from ult_actors.errors import (
    AuthFailed,
    BrokerUnavailable,
    Internal,
    InvalidOrder,
    NotFound,
    RateLimited,
    UltError,
)

#: Longest piece of a broker's own error text quoted in a message.
MAX_MESSAGE = 300

_Body = TypeVar("_Body", bound=msgspec.Struct)


class ReplyReading(Protocol):
    """One broker's reading of one non-2xx reply, consulted by ``error_for_status``."""

    def narrowed(self) -> UltError | None:
        """A narrower error than the status alone says (from the body), or ``None``."""

    def text(self, error: type[UltError]) -> str:
        """The message of the ``error`` the status maps to."""

    def retry_after(self, error: type[UltError]) -> float | None:
        """Seconds to wait before retrying, for a transient ``error``."""


def status_error(status: int) -> type[UltError]:
    """The error class an HTTP status stands for when the body says nothing narrower."""
    if status == 400:
        return InvalidOrder
    if status in (401, 403):
        return AuthFailed
    if status == 404:
        return NotFound
    if status == 429:
        return RateLimited
    if status >= 500:
        return BrokerUnavailable
    return Internal


def error_for_status(status: int, reading: ReplyReading, *, broker: str) -> UltError:
    """The narrowest ``UltError`` for a non-2xx reply of ``status``."""
    narrowed = reading.narrowed()
    if narrowed is not None:
        return narrowed
    error = status_error(status)
    wait = reading.retry_after(error) if error.transient else None
    return error(reading.text(error), retry_after=wait, broker=broker)


def decode_error_body(content: bytes, body_type: type[_Body]) -> _Body:
    """The broker's error body, or an empty one when the reply is not that JSON (proxies send HTML)."""
    try:
        return msgspec.json.decode(content, type=body_type)
    except msgspec.DecodeError:  # also covers msgspec.ValidationError
        return body_type()


def retry_after_header_s(value: str | None, now_ns: int | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value; ``None`` when absent or unreadable.

    The seconds form is always read; the HTTP-date form only when ``now_ns``
    (the current Unix time) is given to measure it from.
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    if now_ns is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_ns / 1e9)


def reset_header_s(value: str | None, now_ns: int) -> float | None:
    """Seconds until a rate-limit reset given in Unix seconds (``X-RateLimit-Reset``)."""
    if not value:
        return None
    try:
        return max(0.0, float(value) - now_ns / 1e9)
    except ValueError:
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


def transport_error(
    exc: httpx.HTTPError, *, broker: str, doing: str, network: str
) -> BrokerUnavailable:
    """``BrokerUnavailable`` for a timeout or network failure while ``doing`` (e.g. "OANDA submit").

    ``network`` is the broker's word for a failure other than a timeout. Only
    the exception's class is quoted: its text may name the request.
    """
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else network
    return BrokerUnavailable(f"{doing} {kind} ({type(exc).__name__})", broker=broker)


def unreadable_reply(
    exc: Exception, *, broker: str, doing: str, status: int | None = None
) -> BrokerUnavailable:
    """``BrokerUnavailable`` for a success reply to ``doing`` whose body cannot be read.

    The broker may have done what was asked (a mangled 2xx is still a 2xx), so
    this is an unknown outcome, never a refusal: a write must be looked up
    before it is sent again. Only the decoder's message is quoted, never the body.
    """
    answer = "the reply" if status is None else f"the reply (HTTP {status})"
    return BrokerUnavailable(
        f"{doing}: {answer} cannot be read ({str(exc)[:MAX_MESSAGE]});"
        " whether it was applied is unknown",
        broker=broker,
    )
