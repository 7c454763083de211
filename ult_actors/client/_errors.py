"""Errors only a client can meet: no service, a lost connection, a dropped subscription.

They sit under ``UltError`` with the wire errors, so ``except UltError``
catches everything the client library raises about the service.
"""

from __future__ import annotations

from pathlib import Path

from ult_actors.errors import Timeout, UltError


class ServiceUnreachable(UltError):
    """Nothing answers on the socket (or NATS URL); ``socket_path`` says where the
    client looked."""

    transient = True

    def __init__(self, socket_path: Path | str, reason: str) -> None:
        super().__init__(f"cannot reach the ult service at {socket_path}: {reason}")
        self.socket_path = socket_path


class ConnectionLost(ServiceUnreachable):
    """The connection closed while requests were waiting for their replies.

    A submit caught here may or may not have reached the broker: look the
    order up by its client order id before sending it again.
    """


class SubscriptionLost(UltError):
    """The service dropped this event subscription; ``reason`` says why (e.g. fell behind)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"event subscription dropped by the service: {reason}")
        self.reason = reason


class OutcomeUnknown(Timeout):
    """A submit (or replace, or order list) got no reply in time: the order may or may
    not have been placed.

    The request carried its deadline, so the service does not send the order
    once it has passed; but it may have reached the broker before. Look it up
    by ``client_order_id`` (``ult order ID``) before submitting it again.
    """

    def __init__(self, client_order_id: str, timeout: float | None, what: str = "submit") -> None:
        super().__init__(
            f"no reply from the service within {timeout} s to the {what} of order"
            f" {client_order_id}: its outcome is unknown (it may have reached the broker"
            " before its deadline; it is not sent after it). Check with"
            f" `ult order {client_order_id}` before sending it again"
        )
        self.client_order_id = client_order_id
