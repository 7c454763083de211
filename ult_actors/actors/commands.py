"""Commands the actors send each other in-process: never on the IPC socket.

A broker actor's mailbox takes ``BrokerCommand``; risk's and the router's
unions (``RiskCommand``, ``RouterCommand``) sit beside their actors, since
they mix these with the client requests of ``ult_actors.messages``.
"""

from __future__ import annotations

import msgspec

from ult_actors.messages import (
    Order,
    OrderListRequest,
    OrderRequest,
    Position,
    ReplaceRequest,
    TradingState,
)


class _Command(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """An in-process command: tagged like the wire messages, so logs and tests name it.

    Subclasses say ``frozen=True`` again: msgspec inherits it, type checkers do not.
    """


class PlaceOrder(_Command, frozen=True, tag="place_order"):
    """A validated order on its way to a broker; ``request`` has broker and client id set."""

    request: OrderRequest


class PlaceList(_Command, frozen=True, tag="place_list"):
    """A validated order list on its way to a broker: ``broker``, ``list_id`` and every
    leg's ``broker`` and ``client_order_id`` are set."""

    request: OrderListRequest


class ReplaceOrder(_Command, frozen=True, tag="replace_order"):
    """A checked replace on its way to a broker.

    ``order`` is the working order as the router found it, ``change`` the
    client's request (``client_order_id`` set: the replacement's id), ``terms``
    the whole order the replace asks for (``validation.replaced_terms``).
    """

    order: Order
    change: ReplaceRequest
    terms: OrderRequest


class CancelOrder(_Command, frozen=True, tag="cancel_order"):
    """Cancel one order at its broker (by broker order id or client order id)."""

    order_id: str


class CancelAll(_Command, frozen=True, tag="cancel_all"):
    """Cancel every open order at a broker (kill switch)."""

    reason: str = "kill switch"


class QueryOrder(_Command, frozen=True, tag="query_order"):
    """Ask a broker for one order (by broker order id or client order id)."""

    order_id: str


class QueryOpenOrders(_Command, frozen=True, tag="query_open_orders"):
    """Ask a broker for its open orders."""


class QueryPositions(_Command, frozen=True, tag="query_positions"):
    """Ask a broker for its positions."""


class QueryAccount(_Command, frozen=True, tag="query_account"):
    """Ask a broker for its account."""


class CloseOut(_Command, frozen=True, tag="close_out"):
    """Close positions at one broker: ``symbol``'s, or (``None``) all of them.

    Open orders of what is closed are canceled first, so none can reopen it.
    The closing orders take ``client_order_id`` (suffixed ``-1``, ``-2`` ...
    when several). Answered with the canceled and closing orders.
    """

    broker: str
    symbol: str | None
    client_order_id: str


class RestrictTrading(_Command, frozen=True, tag="restrict"):
    """Tighten one broker's trading state (never loosens it).

    Sent by positions when the service cannot vouch for a broker's positions
    (fail closed). The service lifts it itself (``LiftRestriction``) once the
    cause is gone; a person's ``SetTradingState`` replaces it at any time.
    """

    broker: str
    reason: str
    state: TradingState = "reducing"


class LiftRestriction(_Command, frozen=True, tag="lift"):
    """The cause of a service restriction is gone: set the broker active again.

    Sent by positions when a broker's report arrived and the book agrees with
    it. Risk lifts only a restriction the service set; one a person set stays.
    """

    broker: str
    reason: str


class SeedPositions(_Command, frozen=True, tag="seed"):
    """A broker's first position report since start: risk's book for it begins here."""

    broker: str
    positions: list[Position]


BrokerCommand = (
    PlaceOrder
    | PlaceList
    | ReplaceOrder
    | CloseOut
    | CancelOrder
    | CancelAll
    | QueryOrder
    | QueryOpenOrders
    | QueryPositions
    | QueryAccount
)
