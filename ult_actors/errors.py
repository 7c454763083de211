"""One exception tree; each leaf maps 1:1 to a stable wire error code.

Raise the narrowest class with a message a trader can act on. Connectors map
every broker failure onto these; the IPC layer turns them into
``ErrorInfo`` and the client library turns them back into the same classes.
"""

from __future__ import annotations

from typing import ClassVar

from ult_actors.messages import ErrorCode, ErrorInfo


class UltError(Exception):
    """Base of every error the service reports to a caller."""

    code: ClassVar[ErrorCode] = "internal"
    #: Whether retrying the same request (same client order id) may succeed.
    transient: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        limit: str | None = None,
        retry_after: float | None = None,
        broker: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.limit = limit
        self.retry_after = retry_after
        self.broker = broker

    def to_info(self) -> ErrorInfo:
        """The wire form of this error."""
        return ErrorInfo(
            code=self.code,
            message=self.message,
            field=self.field,
            limit=self.limit,
            retry_after=self.retry_after,
            broker=self.broker,
        )


class InvalidOrder(UltError):
    """The order is malformed or not allowed as asked; ``field`` names the culprit."""

    code = "invalid_order"


class InsufficientFunds(UltError):
    """The account's buying power does not cover the order."""

    code = "insufficient_funds"


class RiskRejected(UltError):
    """A pre-trade risk limit refused the order; ``limit`` names which."""

    code = "risk_rejected"


class RateLimited(UltError):
    """The broker throttled us; retry after ``retry_after`` seconds."""

    code = "rate_limited"
    transient = True


class BrokerUnavailable(UltError):
    """The broker cannot be reached right now (outage, reconnecting, 5xx)."""

    code = "broker_unavailable"
    transient = True


class AuthFailed(UltError):
    """The broker refused our credentials. Fatal: fix the configuration."""

    code = "auth_failed"


class NotFound(UltError):
    """No such order, broker or symbol."""

    code = "not_found"


class AmbiguousOrderId(UltError):
    """An order id matches more than one order (ids are only unique per broker).

    The message lists the candidates as ``broker:id``; ask again with one of them
    or with the client order id.
    """

    code = "ambiguous"


class AlreadyFinal(UltError):
    """The order is already final (filled, canceled, rejected, expired, lost): nothing to cancel.

    The message names the state, e.g. "order 42 (client order id c-1) is already filled".
    """

    code = "already_final"


class NotReplaceable(UltError):
    """The order cannot be replaced in the state it is in (filled, being canceled,
    replaced already, a replace still pending, a leg not yet working).

    The message names the state, e.g. "order 42 (client order id c-1) is filled;
    it cannot be replaced". A partial fill before the refusal is kept.
    """

    code = "not_replaceable"


class Timeout(UltError):
    """The request's deadline passed before it could be answered."""

    code = "timeout"
    transient = True


class Internal(UltError):
    """A bug or unexpected failure inside the service."""

    code = "internal"


class BadRequest(UltError):
    """The IPC frame could not be read as a request."""

    code = "bad_request"


class DuplicateOrder(UltError):
    """A different order already uses this client order id."""

    code = "duplicate_order"


class Unauthorized(UltError):
    """The connecting user is not allowed to use the service."""

    code = "unauthorized"


class ServiceBusy(UltError):
    """The service is at a limit of its own (connections, memory for replies); try later."""

    code = "busy"
    transient = True


class JournalUnavailable(UltError):
    """The order journal cannot be written (disk full, read-only, I/O errors).

    New orders are refused before they are sent; cancels, queries and the kill
    switch keep working, and orders are accepted again once the journal can
    be written. The message says whether the order reached the broker.
    """

    code = "journal_unavailable"
    transient = True


class ConfigError(ValueError):
    """The configuration is wrong; raised at start-up, names the key and file."""


_BY_CODE: dict[str, type[UltError]] = {
    cls.code: cls
    for cls in (
        InvalidOrder,
        InsufficientFunds,
        RiskRejected,
        RateLimited,
        BrokerUnavailable,
        AuthFailed,
        NotFound,
        AmbiguousOrderId,
        AlreadyFinal,
        NotReplaceable,
        Timeout,
        Internal,
        BadRequest,
        DuplicateOrder,
        Unauthorized,
        ServiceBusy,
        JournalUnavailable,
    )
}


def error_class(code: str) -> type[UltError]:
    """The exception class for a wire error code (``Internal`` if unknown)."""
    return _BY_CODE.get(code, Internal)


def from_info(info: ErrorInfo) -> UltError:
    """Rebuild the exception a reply's ``ErrorInfo`` stands for."""
    return error_class(info.code)(
        info.message,
        field=info.field,
        limit=info.limit,
        retry_after=info.retry_after,
        broker=info.broker,
    )
