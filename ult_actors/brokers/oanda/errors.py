"""OANDA v20 failures mapped onto the gateway's error tree.

By status: 400 is a refused request (``InvalidOrder``, narrowed by the
``rejectReason`` of the reject transaction), 401 and 403 are refused
credentials (``AuthFailed``, fatal), 404 is ``NotFound``, 429 is
``RateLimited`` (``Retry-After`` honoured), 5xx and every network failure are
``BrokerUnavailable`` (transient). Reject reasons narrow further:
``INSUFFICIENT_MARGIN`` is ``InsufficientFunds``,
``CLIENT_ORDER_ID_ALREADY_EXISTS`` is ``DuplicateOrder``,
``ORDER_DOESNT_EXIST`` is ``NotFound``, and an ``InvalidOrder`` names the
request field the reason is about (``UNITS_*`` -> ``qty`` ...).

Messages carry OANDA's ``errorMessage`` and reason, never a header, so the
token cannot leak through an error.
"""

from __future__ import annotations

import httpx

from ult_actors.brokers.http.errors import (
    MAX_MESSAGE,
    error_for_status,
    retry_after_header_s,
    transport_error,
)
from ult_actors.brokers.http.errors import (
    decode_error_body as _decode,
)
from ult_actors.brokers.oanda.wire import ErrorBody
from ult_actors.errors import (
    AuthFailed,
    BrokerUnavailable,
    DuplicateOrder,
    InsufficientFunds,
    InvalidOrder,
    NotFound,
    RateLimited,
    UltError,
)
from ult_actors.messages import OrderRequest

#: Wait this long after a 429 that names no ``Retry-After``.
DEFAULT_RETRY_AFTER_S = 1.0

# Reject-reason prefixes and the request field they are about.
_FIELD_BY_PREFIX: tuple[tuple[str, str], ...] = (
    ("INSTRUMENT_", "symbol"),
    ("UNITS_", "qty"),
    ("PRICE_BOUND_", "limit_price"),
    ("TIME_IN_FORCE_", "time_in_force"),
    ("CLIENT_ORDER_ID_", "client_order_id"),
    ("CLIENT_ORDER_TAG_", "client_order_id"),
    ("CLIENT_ORDER_COMMENT_", "client_order_id"),
)
_NOT_FOUND_REASONS = frozenset({"ORDER_DOESNT_EXIST", "TRADE_DOESNT_EXIST", "ACCOUNT_NOT_FOUND"})
_UNAVAILABLE_REASONS = frozenset({"INTERNAL_SERVER_ERROR", "INSTRUMENT_PRICE_UNKNOWN"})


def decode_error_body(content: bytes) -> ErrorBody:
    """The error body, or an empty one if the server sent something else."""
    return _decode(content, ErrorBody)


def reject_reason(body: ErrorBody) -> str | None:
    """The machine-readable reason of a refused order or cancel, if any."""
    for txn in (body.orderRejectTransaction, body.orderCancelRejectTransaction):
        if txn is not None and txn.rejectReason:
            return txn.rejectReason
    return body.errorCode


def retry_after_s(value: str | None) -> float:
    """Seconds from a ``Retry-After`` header (seconds form), else the default."""
    wait = retry_after_header_s(value)
    return DEFAULT_RETRY_AFTER_S if wait is None else wait


class _OandaReply:
    """OANDA's side of mapping one non-2xx reply (``brokers.http.errors.ReplyReading``)."""

    def __init__(
        self,
        response: httpx.Response,
        *,
        broker: str,
        what: str,
        request: OrderRequest | None,
    ) -> None:
        self.response = response
        self.status = response.status_code
        self.broker = broker
        self.what = what
        self.request = request
        body = decode_error_body(response.content)
        self.message = (body.errorMessage or response.reason_phrase or "no message")[:MAX_MESSAGE]
        self.reason = reject_reason(body)

    def narrowed(self) -> UltError | None:
        reason, message = self.reason, self.message
        if self.status not in (400, 404) or not reason:
            return None
        said = f"{reason}: {message}" if reason not in message else message
        error = error_for_reason(
            reason, f"OANDA {self.what}: {said}", broker=self.broker, request=self.request
        )
        if self.status == 404 and isinstance(error, InvalidOrder):
            return NotFound(error.message, broker=self.broker)  # e.g. NO_SUCH_ORDER
        return error

    def text(self, error: type[UltError]) -> str:
        status, message, what = self.status, self.message, self.what
        if error is AuthFailed:
            return (
                f"OANDA refused the credentials of broker {self.broker} ({status} {message});"
                " check OANDA_API_TOKEN, OANDA_ACCOUNT_ID and OANDA_ENVIRONMENT"
            )
        if error is RateLimited:
            return f"OANDA rate limit hit during {what}"
        if error is BrokerUnavailable:
            return f"OANDA {what} failed: {status} {message}"
        if error is NotFound:
            return f"OANDA {what}: {message}"
        if error is InvalidOrder:
            return f"OANDA refused {what}: {message}"
        return f"OANDA {what}: unexpected status {status} ({message})"

    def retry_after(self, error: type[UltError]) -> float | None:
        # Only a 429 says when to come back; a 5xx is retried on the caller's own schedule.
        if error is RateLimited:
            return retry_after_s(self.response.headers.get("Retry-After"))
        return None


def error_from_response(
    response: httpx.Response,
    *,
    broker: str,
    what: str,
    request: OrderRequest | None = None,
) -> UltError:
    """The error a non-2xx reply stands for."""
    reading = _OandaReply(response, broker=broker, what=what, request=request)
    return error_for_status(response.status_code, reading, broker=broker)


def error_for_reason(
    reason: str, message: str, *, broker: str, request: OrderRequest | None = None
) -> UltError:
    """The error a v20 reject reason stands for."""
    if reason == "INSUFFICIENT_MARGIN":
        return InsufficientFunds(message, broker=broker)
    if reason == "CLIENT_ORDER_ID_ALREADY_EXISTS":
        return DuplicateOrder(message, field="client_order_id", broker=broker)
    if reason in _NOT_FOUND_REASONS:
        return NotFound(message, broker=broker)
    if reason in _UNAVAILABLE_REASONS:
        return BrokerUnavailable(message, broker=broker)
    return InvalidOrder(message, field=field_for_reason(reason, request), broker=broker)


def field_for_reason(reason: str, request: OrderRequest | None) -> str | None:
    """Which of our request fields a reject reason is about (``None`` if none is)."""
    for prefix, field in _FIELD_BY_PREFIX:
        if reason.startswith(prefix):
            return field
    if reason.startswith("PRICE_") and request is not None:
        # LIMIT's price is our limit_price; STOP's (also under stop_limit) is our stop_price.
        return "limit_price" if request.type == "limit" else "stop_price"
    return None


def error_from_transport(exc: httpx.HTTPError, *, broker: str, what: str) -> BrokerUnavailable:
    """A network failure or timeout: transient, the outcome of a write unknown."""
    return transport_error(exc, broker=broker, doing=f"OANDA {what}", network="connection failed")
