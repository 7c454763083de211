"""Talk to a running ult service from Python.

``Client`` is blocking, ``AsyncClient`` runs on trio or asyncio (via anyio);
both have one method per request, return the message types of
``ult_actors.messages`` and raise one ``UltError`` subclass per error code::

    from ult_actors.client import Client, AsyncClient

    with Client() as c:
        order = c.submit("AAPL", "buy", 10, type="limit", limit_price="187.50")
        c.cancel(order.ref)  # broker:id, unique across brokers

    async with AsyncClient() as c:
        order = await c.submit("AAPL", "buy", 10)
        async for event in c.events():
            ...

The socket defaults as for the server: ``$ULT_SOCKET``, the systemd runtime
directory, ``$XDG_RUNTIME_DIR/ult/ult.sock``, ``/tmp/ult-$UID/ult.sock``. A
service on another host is reached over NATS with the same calls:
``Client(url="nats://gw:4222", cluster="prod")`` (needs the ``nats`` extra).
"""

from ult_actors.client._async import AsyncClient
from ult_actors.client._blocking import Client
from ult_actors.client._errors import (
    ConnectionLost,
    OutcomeUnknown,
    ServiceUnreachable,
    SubscriptionLost,
)
from ult_actors.client._requests import (
    bracket_request,
    oco_request,
    order_request,
    oto_request,
    replace_request,
)
from ult_actors.errors import (
    AlreadyFinal,
    AmbiguousOrderId,
    AuthFailed,
    BadRequest,
    BrokerUnavailable,
    DuplicateOrder,
    InsufficientFunds,
    Internal,
    InvalidOrder,
    JournalUnavailable,
    NotFound,
    NotReplaceable,
    RateLimited,
    RiskRejected,
    ServiceBusy,
    Timeout,
    UltError,
    Unauthorized,
)

__all__ = [
    "AlreadyFinal",
    "AmbiguousOrderId",
    "AsyncClient",
    "AuthFailed",
    "BadRequest",
    "BrokerUnavailable",
    "Client",
    "ConnectionLost",
    "DuplicateOrder",
    "InsufficientFunds",
    "Internal",
    "InvalidOrder",
    "JournalUnavailable",
    "NotFound",
    "NotReplaceable",
    "OutcomeUnknown",
    "RateLimited",
    "RiskRejected",
    "ServiceBusy",
    "ServiceUnreachable",
    "SubscriptionLost",
    "Timeout",
    "UltError",
    "Unauthorized",
    "bracket_request",
    "oco_request",
    "order_request",
    "oto_request",
    "replace_request",
]
