"""The wire schema: every message that crosses the IPC socket, as tagged msgspec unions.

The same types travel on in-process channels and, msgpack-encoded, over the
IPC socket, so there is exactly one schema (the commands actors send only
each other are ``ult_actors.actors.commands``). Money and quantities are
``Decimal`` (msgspec encodes them as strings, so they stay exact on the
wire); timestamps are UTC nanoseconds since the epoch.

Unions are tagged with ``kind`` because an order already has a ``type``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

import msgspec

# Re-exported: health records are part of the wire schema.
from ult_actors.runtime.health import ActorHealth as ActorHealth
from ult_actors.runtime.health import ActorState as ActorState
from ult_actors.runtime.health import LastError as LastError

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop", "stop_limit"]
TimeInForce = Literal["day", "gtc", "ioc", "fok", "opg", "cls"]
OrderStatus = Literal[
    "pending_new",
    "accepted",
    "partially_filled",
    "filled",
    "canceled",
    "rejected",
    "expired",
    "pending_cancel",
    # A replace was sent and not yet answered; the order still works on its old terms.
    "pending_replace",
    # Final: a replace took effect; ``replaced_by`` names the order that carries on.
    "replaced",
    # A leg of an order list waiting for its trigger (a bracket's exits before the
    # entry fills, an OTO's child before its parent fills): not working yet.
    "held",
    # Final, set by the service: the broker had the order and, asked twice, no longer
    # knows it (e.g. it restarted and lost its book). ``reject_reason`` says why.
    "lost",
]
# How sure we are of what the broker did with a submit (see docs/architecture.md):
# "local" never left the service, "definitive" the broker answered, "unknown"
# must be settled by looking the order up by client order id.
SubmitOutcome = Literal["local", "definitive", "unknown"]
# Who placed an order: a client through the service, or someone else (found open at the
# broker with no journal record, then journaled by reconciliation: "adopted").
OrderOrigin = Literal["client", "adopted"]
#: How the orders of one list depend on each other: a ``bracket`` (entry, then a
#: take-profit and a stop-loss that cancel each other), an ``oco`` (two exits, one
#: fill cancels the other), an ``oto`` (a child sent once its parent fills).
Contingency = Literal["bracket", "oco", "oto"]
#: An order's place in its list: ``entry`` / ``take_profit`` / ``stop_loss`` of a
#: bracket, the ``take_profit`` / ``stop_loss`` pair of an OCO, ``parent`` / ``child``
#: of an OTO.
LegRole = Literal["entry", "take_profit", "stop_loss", "parent", "child"]
TradingState = Literal["active", "reducing", "halted"]
#: Who set a trading state: a person (``ult trading-state``, the kill switch), the
#: service itself (for a cause it lifts once the cause is gone), or the configuration.
SetBy = Literal["person", "service", "config"]
#: Where an order's arrival price came from: the venue's quote when the service received
#: the order, or (no quote to hand) the last trade price the service had seen.
ArrivalSource = Literal["venue_quote", "last_trade"]

TERMINAL_STATUSES: frozenset[str] = frozenset(
    {"filled", "canceled", "rejected", "expired", "lost", "replaced"}
)
OPEN_STATUSES: frozenset[str] = frozenset(
    {"pending_new", "accepted", "partially_filled", "pending_cancel", "pending_replace", "held"}
)


class _Value(msgspec.Struct, frozen=True, kw_only=True):
    """A record inside messages: immutable, built by keyword.

    Subclasses say ``frozen=True`` again: msgspec inherits it, but type
    checkers do not (PEP 681) and would take them for mutable.
    """


class _Tagged(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """A message of a tagged union: its ``kind`` field (the subclass's ``tag``) names it.

    Subclasses say ``frozen=True`` again, as for ``_Value``.
    """


# ---------------------------------------------------------------------------
# Trading data
# ---------------------------------------------------------------------------


class OrderRequest(_Value, frozen=True):
    """What a client asks for. Validated by ``ult_actors.validation`` before use."""

    symbol: str
    side: Side
    qty: Decimal
    type: OrderType = "market"
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = "day"
    extended_hours: bool = False
    broker: BrokerName | None = None
    client_order_id: str | None = None
    # Absolute UTC deadline in ns; a command still queued past it is answered
    # with a ``timeout`` error instead of being sent.
    deadline_ns: int | None = None


class Leg(_Value, frozen=True):
    """An order's place in an order list (bracket, OCO, OTO)."""

    list_id: str
    contingency: Contingency
    role: LegRole
    #: Client order id of the leg that triggers this one (a bracket's entry for its
    #: exits, an OTO's parent for its child); ``None`` for a leg that works at once.
    parent_id: str | None = None
    #: The other exit of an OCO pair (also a bracket's), whose fill cancels this one.
    peer_id: str | None = None
    #: On a parent (a bracket's entry, an OTO's parent): the legs its fills trigger.
    children: tuple[str, ...] = ()
    #: The service, not the venue, holds this list's contingency (the venue has no
    #: such order list): it sends held legs and cancels or reduces peers itself.
    emulated: bool = False


class Order(_Value, frozen=True):
    """An order as the service knows it; one state machine for every broker."""

    id: str
    client_order_id: str
    broker: str
    symbol: str
    side: Side
    qty: Decimal
    type: OrderType
    time_in_force: TimeInForce
    status: OrderStatus
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    extended_hours: bool = False
    filled_qty: Decimal = Decimal(0)
    avg_fill_price: Decimal | None = None
    created_at: int = 0
    updated_at: int = 0
    reject_reason: str | None = None
    outcome: SubmitOutcome = "definitive"
    origin: OrderOrigin = "client"
    #: Client order id of the order this one replaced (set on the replacement).
    replaces: str | None = None
    #: Client order id of the order that replaced this one (set once ``replaced``).
    replaced_by: str | None = None
    #: Set on a leg of an order list: which list, and its place in it.
    leg: Leg | None = None
    #: The symbol's price when the service received the order (what its slippage is
    #: measured against), and where that price came from; ``None``: none was to hand.
    arrival_price: Decimal | None = None
    arrival_source: ArrivalSource | None = None

    @property
    def ref(self) -> str:
        """The id to show people and to look the order up by: ``broker:id``.

        ``id`` is the venue's own id (what the connectors need), unique only
        within one broker connection; the prefix makes it unique in the service.
        Before the broker has given an id, the client order id stands in.
        """
        return f"{self.broker}:{self.id}" if self.id else self.client_order_id


class Fill(_Value, frozen=True):
    """One execution of (part of) an order, or fees a venue charged for one later.

    A venue that reports fees apart from the execution, later (Alpaca's fee
    activities), brings them as a fill of ``qty`` 0 whose ``fee_of`` names the
    execution's ``fill_id``; its ``price`` is that execution's.
    """

    fill_id: str
    order_id: str
    client_order_id: str
    broker: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    commission: Decimal = Decimal(0)
    ts: int = 0
    #: Other costs of this execution, named as the venue names them (``exchange``,
    #: ``regulatory``, ``financing``, ``half_spread`` ...); positive is a cost.
    fees: dict[str, Decimal] = msgspec.field(default_factory=dict)
    #: Currency of ``commission`` and ``fees``; ``None``: the account's own.
    fee_currency: str | None = None
    #: Set on fees reported after their execution: that execution's ``fill_id``.
    fee_of: str | None = None

    @property
    def total_fees(self) -> Decimal:
        """Commission plus every named fee: what this execution cost beyond its price."""
        return self.commission + sum(self.fees.values(), Decimal(0))


class Position(_Value, frozen=True):
    """A net position at one broker; ``qty`` is signed (negative is short)."""

    broker: str
    symbol: str
    qty: Decimal
    avg_entry_price: Decimal
    market_value: Decimal | None = None
    unrealized_pl: Decimal | None = None
    realized_pl: Decimal | None = None


class Account(_Value, frozen=True):
    """Balances of one broker account."""

    broker: str
    cash: Decimal
    buying_power: Decimal
    equity: Decimal
    currency: str = "USD"


# ---------------------------------------------------------------------------
# Errors on the wire
# ---------------------------------------------------------------------------

ErrorCode = Literal[
    "invalid_order",
    "insufficient_funds",
    "risk_rejected",
    "rate_limited",
    "broker_unavailable",
    "auth_failed",
    "not_found",
    "ambiguous",
    "already_final",
    "timeout",
    "internal",
    "bad_request",
    "duplicate_order",
    "unauthorized",
    "journal_unavailable",
    "busy",
    "not_replaceable",
]


class ErrorInfo(_Value, frozen=True, omit_defaults=True):
    """A failure as the caller sees it: a stable code plus what to do about it."""

    code: ErrorCode
    message: str
    field: str | None = None
    limit: str | None = None
    retry_after: float | None = None
    broker: str | None = None


# ---------------------------------------------------------------------------
# Events (published to subscribers)
# ---------------------------------------------------------------------------


class OrderUpdate(_Tagged, frozen=True, tag="order_update"):
    """An order changed state; ``fill`` is set when the change was an execution.

    ``fill_only``: the order's state was published already (say, by the submit
    reply) and this event only brings the execution that made it; it goes to
    ``fills`` subscribers, not again to ``orders`` ones.
    """

    order: Order
    fill: Fill | None = None
    ts: int = 0
    fill_only: bool = False


class AccountReset(_Tagged, frozen=True, tag="account_reset"):
    """A broker account's history restarted (e.g. a reset practice account): its
    positions are these now; books built from its earlier fills are void."""

    broker: str
    positions: list[Position]
    reason: str
    ts: int = 0


class PositionDrift(_Tagged, frozen=True, tag="position_drift"):
    """The service's book and the broker's report disagree for one symbol."""

    broker: str
    symbol: str
    book_qty: Decimal
    broker_qty: Decimal | None
    ts: int = 0


class ActorHealthChanged(_Tagged, frozen=True, tag="actor_health"):
    """An actor changed state (started, crashed, restarting, failed, stopped)."""

    name: str
    state: ActorState
    restarts: int
    error: str | None = None
    ts: int = 0


class TradingStateChanged(_Tagged, frozen=True, tag="trading_state"):
    """Risk switched trading state (for example the kill switch)."""

    state: TradingState
    reason: str
    broker: str | None = None
    ts: int = 0
    set_by: SetBy = "person"


class TradingSetting(_Value, frozen=True):
    """A trading state with who set it, why, and when (ns)."""

    state: TradingState = "active"
    set_by: SetBy = "config"
    reason: str = ""
    at: int = 0


#: A broker connection's state: ``connecting`` (not connected, or waiting to try
#: again), ``resyncing`` (connected, recovering what was missed: new orders gated),
#: ``ready`` (in step), ``degraded`` (up, but the venue reports trouble), ``parked``
#: (down after repeated failures, retried later).
ConnectionState = Literal["connecting", "resyncing", "ready", "degraded", "parked"]


class ConnectionStateChanged(_Tagged, frozen=True, tag="connection_state"):
    """A broker connection changed state (topic ``health``); ``reason`` says why, if known."""

    broker: str
    state: ConnectionState
    reason: str = ""
    ts: int = 0


Event = (
    OrderUpdate
    | PositionDrift
    | ActorHealthChanged
    | TradingStateChanged
    | AccountReset
    | ConnectionStateChanged
)
EventTopic = Literal["orders", "fills", "health", "positions", "risk"]

# ---------------------------------------------------------------------------
# Health snapshot
# ---------------------------------------------------------------------------


class RequestBudget(_Value, frozen=True):
    """A broker account's request budget now (issue 18 §2)."""

    #: Tokens per second, and how many may be spent at once.
    rate_per_s: float
    burst: int
    #: Tokens spent and not yet refilled.
    used: int
    #: Requests waiting for a token, by class (cancel, replace, order, query).
    waiting: dict[str, int]
    #: Seconds until a venue-imposed pause (a 429) ends; 0 when not paused.
    paused_for_s: float = 0.0
    #: Requests refused because their deadline could not be met.
    refused: int = 0


class ConnectionHealth(_Value, frozen=True):
    """One broker connection: its state, since when, its stream, its budget."""

    state: ConnectionState
    #: When (ns) it entered ``state``.
    since: int
    #: Seconds since its update stream last said anything (``None``: not known).
    last_message_age_s: float | None = None
    budget: RequestBudget | None = None


class ClusterHealth(_Value, frozen=True):
    """This instance's place in its cluster (``[cluster]``): active, or standby to whom."""

    name: str
    #: This instance's name in the cluster (``[cluster] instance``, else host:pid).
    instance: str
    role: Literal["active", "standby"]
    #: The instance holding the cluster's lease (this one when active); "" if none does.
    active: str = ""
    #: The fencing epoch of that lease (0: none yet).
    epoch: int = 0
    #: Why this instance cannot read or renew the lease, e.g. ``database unreachable:
    #: OperationalError: ...`` (never a password); "" while the database answers.
    problem: str = ""
    #: Since when (ns since the epoch) ``problem`` has lasted; 0 without one.
    problem_since: int = 0


class NatsHealth(_Value, frozen=True):
    """The service's NATS connection (``[nats] url``), as ``ult health`` shows it."""

    #: The server's URL, any password in it masked.
    url: str
    #: ``connecting`` until NATS first answered; ``reconnecting`` after it was lost.
    state: Literal["connecting", "connected", "reconnecting"]
    #: When (ns) it entered ``state``.
    since: int
    #: The last error NATS or the connection reported: ``Type: message`` ("" if none).
    last_error: str = ""
    #: When (ns) that error came; 0 without one.
    last_error_at: int = 0
    #: Events taken for JetStream and not yet acknowledged (queued or in the batch in hand).
    publish_backlog: int = 0
    #: Events JetStream acknowledged since start.
    published: int = 0
    #: Times the publisher fell behind and lost the events of a gap.
    fell_behind: int = 0


class HealthSnapshot(_Value, frozen=True):
    """The whole tree in start order, plus process facts."""

    actors: list[ActorHealth]
    pid: int = 0
    version: str = ""
    started_at: int = 0
    taken_at: int = 0
    #: The global trading state (each broker's own may be stricter: ``broker_trading``).
    trading_state: TradingState = "active"
    #: The global state with who set it and why.
    trading: TradingSetting | None = None
    #: Every configured broker's state in force: the stricter of the global one and its own.
    broker_trading: dict[str, TradingSetting] = msgspec.field(default_factory=dict)
    #: Why the service runs degraded (empty: it does not), e.g. it started with a
    #: journal that had no record of orders a broker holds (they were adopted).
    degraded: list[str] = msgspec.field(default_factory=list)
    #: Log lines dropped since start because the log stream did not keep up.
    log_lines_dropped: int = 0
    #: Open legs of order lists the service holds itself (emulated), by broker.
    emulated_legs: dict[str, int] = msgspec.field(default_factory=dict)
    #: Each broker connection's state, stream age and request budget, by broker.
    connections: dict[str, ConnectionHealth] = msgspec.field(default_factory=dict)
    #: With ``[cluster]``: active or standby, and which instance is active.
    cluster: ClusterHealth | None = None
    #: With ``[nats]``: the NATS connection's state and the events not yet in JetStream.
    nats: NatsHealth | None = None


# ---------------------------------------------------------------------------
# Requests. ``id`` is the client's request id, echoed in the reply so a client may pipeline.
# ---------------------------------------------------------------------------


#: An order id, ``broker:id`` reference or client order id as a client sends one;
#: bounded so a lookup, and an error quoting it, stay small.
OrderRef = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
#: How many orders one ``list_orders`` may ask for (SQLite reads a negative LIMIT as none).
ListLimit = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
#: A broker connection's name as a client sends one.
BrokerName = Annotated[str, msgspec.Meta(max_length=64)]


class Submit(_Tagged, frozen=True, tag="submit"):
    """Place an order; ``wait`` holds the reply until the order is terminal."""

    id: int
    order: OrderRequest
    wait: bool = False


class ReplaceRequest(_Value, frozen=True):
    """New terms for a working order; fields left ``None`` keep their old value.

    ``qty`` is the order's new total quantity, counting what has filled already
    (as a trader says "make it 8"): it must exceed the filled quantity. A venue
    that issues a new order for the replacement (Alpaca, OANDA) is sent what is
    left to fill; one that modifies in place (TWS, paper) the total.

    ``client_order_id`` is the replacement's own id and the replace's idempotency
    key: a replace retried with the same key is applied at most once. The client
    library sets one when the caller does not.
    """

    order_id: OrderRef
    qty: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce | None = None
    client_order_id: OrderRef | None = None
    deadline_ns: int | None = None


class Replace(_Tagged, frozen=True, tag="replace"):
    """Change a working order's terms; the reply is the replacement order."""

    id: int
    change: ReplaceRequest
    wait: bool = False


class OrderListRequest(_Value, frozen=True):
    """Orders that depend on each other, sent as one list.

    ``legs`` in their roles' order: a ``bracket`` is [entry, take_profit (limit),
    stop_loss (stop or stop_limit)]; an ``oco`` is [take_profit (limit), stop_loss
    (stop or stop_limit)]; an ``oto`` is [parent, child]. Every leg is a full order
    with its own ``client_order_id`` (when left out: ``LIST_ID-1``, ``LIST_ID-2``, ...
    in a named list, else a fresh one).
    ``list_id`` names the list (and is its idempotency key); ``broker`` and
    ``deadline_ns`` apply to every leg.
    """

    contingency: Contingency
    legs: list[OrderRequest]
    list_id: OrderRef | None = None
    broker: BrokerName | None = None
    deadline_ns: int | None = None


class SubmitList(_Tagged, frozen=True, tag="submit_list"):
    """Place an order list; the reply is an ``OrdersReply`` with every leg."""

    id: int
    orders: OrderListRequest


class Cancel(_Tagged, frozen=True, tag="cancel"):
    """Cancel by order id or client order id."""

    id: int
    order_id: OrderRef


class GetOrder(_Tagged, frozen=True, tag="get_order"):
    """One order by order id or client order id."""

    id: int
    order_id: OrderRef


class ListOrders(_Tagged, frozen=True, tag="list_orders"):
    """Orders known to the service, optionally only open ones."""

    id: int
    open_only: bool = False
    broker: BrokerName | None = None
    limit: ListLimit = 1000


class GetPositions(_Tagged, frozen=True, tag="get_positions"):
    """Positions of one broker, or aggregated over all."""

    id: int
    broker: BrokerName | None = None


class GetAccount(_Tagged, frozen=True, tag="get_account"):
    """Balances of one broker, or of all."""

    id: int
    broker: BrokerName | None = None


class GetHealth(_Tagged, frozen=True, tag="get_health"):
    """The actor tree's health snapshot."""

    id: int


class SetKillSwitch(_Tagged, frozen=True, tag="kill_switch"):
    """On: halt trading and cancel every open order. Off: back to active."""

    id: int
    on: bool


class SetTradingState(_Tagged, frozen=True, tag="trading_state"):
    """Set active / reducing / halted, globally or for one broker."""

    id: int
    state: TradingState
    broker: BrokerName | None = None


class ClosePosition(_Tagged, frozen=True, tag="close_position"):
    """Close the whole position in ``symbol``: cancel its open orders, then close it.

    ``broker`` may be left out when exactly one broker holds the symbol. The
    reply is an ``OrdersReply`` with the canceled orders and the closing order.
    """

    id: int
    symbol: str
    broker: BrokerName | None = None


class Flatten(_Tagged, frozen=True, tag="flatten"):
    """Cancel every open order and close every position, at one broker or at all.

    The reply is an ``OrdersReply`` with the canceled and the closing orders.
    """

    id: int
    broker: BrokerName | None = None


class Subscribe(_Tagged, frozen=True, tag="subscribe"):
    """Start receiving events of these topics on this connection."""

    id: int
    topics: list[EventTopic] = msgspec.field(
        default_factory=lambda: ["orders", "fills", "health", "positions", "risk"]
    )


#: How a cost report groups orders.
ReportGrouping = Literal["order", "symbol", "broker", "day"]


#: A moment as UTC nanoseconds, within what the journal can store (a signed 64-bit integer).
TimeNs = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class ReportQuery(_Value, frozen=True):
    """Which orders a cost report covers and how it groups them.

    ``since_ns``/``until_ns`` bound the orders' creation time (UTC ns, until
    exclusive); ``with_orders`` adds each order's own figures, ``with_charts``
    the distributions the ``--html`` page draws.
    """

    since_ns: TimeNs | None = None
    until_ns: TimeNs | None = None
    broker: BrokerName | None = None
    symbol: str | None = None
    by: ReportGrouping = "symbol"
    with_orders: bool = False
    with_charts: bool = False


class GetReport(_Tagged, frozen=True, tag="get_report"):
    """Transaction costs of the journaled orders: fees, slippage, shortfall, fill times."""

    id: int
    query: ReportQuery = msgspec.field(default_factory=ReportQuery)


class Ping(_Tagged, frozen=True, tag="ping"):
    """Liveness check."""

    id: int


Request = (
    Submit
    | Replace
    | SubmitList
    | Cancel
    | GetOrder
    | ListOrders
    | GetPositions
    | GetAccount
    | GetHealth
    | SetKillSwitch
    | SetTradingState
    | ClosePosition
    | Flatten
    | Subscribe
    | GetReport
    | Ping
)

# ---------------------------------------------------------------------------
# Replies
# ---------------------------------------------------------------------------


class OrderReply(_Tagged, frozen=True, tag="order"):
    """One order."""

    id: int
    order: Order


class OrdersReply(_Tagged, frozen=True, tag="orders"):
    """A list of orders."""

    id: int
    orders: list[Order]


class PositionsReply(_Tagged, frozen=True, tag="positions"):
    """Positions."""

    id: int
    positions: list[Position]


class AccountsReply(_Tagged, frozen=True, tag="accounts"):
    """Accounts, one per broker asked."""

    id: int
    accounts: list[Account]


class HealthReply(_Tagged, frozen=True, tag="health"):
    """The health snapshot."""

    id: int
    health: HealthSnapshot


class OrderCost(_Value, frozen=True):
    """What one order cost.

    Signed so that positive is a cost: ``slippage_bps`` is the average fill
    price against the arrival price, in basis points of the arrival price;
    ``shortfall`` (implementation shortfall, in the quote currency) is
    ``price_impact`` (fills against arrival) + ``fees`` + ``opportunity``
    (the unfilled rest against arrival, priced at the symbol's last fill
    the journal had when the order ended). Figures that need an arrival
    price are ``None`` without one.
    """

    client_order_id: str
    broker: str
    symbol: str
    side: Side
    status: OrderStatus
    created_at: int
    qty: Decimal
    filled_qty: Decimal
    avg_fill_price: Decimal | None
    notional: Decimal
    fees: Decimal
    arrival_price: Decimal | None
    arrival_source: ArrivalSource | None
    slippage_bps: float | None
    price_impact: Decimal | None
    opportunity: Decimal | None
    shortfall: Decimal | None
    first_fill_s: float | None
    last_fill_s: float | None


class CostRow(_Value, frozen=True):
    """One group of a cost report (an order, a symbol, a broker or a UTC day)."""

    key: str
    orders: int
    filled_qty: Decimal
    notional: Decimal
    fees: Decimal
    slippage_bps_p50: float | None
    slippage_bps_p90: float | None
    shortfall: Decimal
    fill_time_p50_s: float | None
    fill_time_p90_s: float | None


class Histogram(_Value, frozen=True):
    """Counts of values in equal-width bins from ``low`` to ``high``."""

    low: float
    high: float
    counts: list[int]


class CostCharts(_Value, frozen=True):
    """What a report's charts draw, binned: its size does not grow with the orders."""

    #: Per broker: the orders' slippage in bps.
    slippage_bps: dict[str, Histogram]
    #: Per UTC day (``2026-12-04``): shortfall, or fees where an order had no arrival price.
    cost_per_day: dict[str, Decimal]
    #: Seconds from an order's creation to its last fill.
    fill_time_s: Histogram | None = None


class CostReport(_Value, frozen=True):
    """A cost report: its query, one row per group, and what the query asked for more."""

    query: ReportQuery
    rows: list[CostRow]
    orders: list[OrderCost] = msgspec.field(default_factory=list)
    #: Orders the query matched (rows may be fewer: one per group).
    total_orders: int = 0
    charts: CostCharts | None = None


class ReportReply(_Tagged, frozen=True, tag="report"):
    """A cost report."""

    id: int
    report: CostReport


class OkReply(_Tagged, frozen=True, tag="ok"):
    """The request was done; ``detail`` says what, for humans."""

    id: int
    detail: str = ""


class ErrorReply(_Tagged, frozen=True, tag="error"):
    """The request failed; ``id`` is 0 when the request could not be read."""

    id: int
    error: ErrorInfo


class EventMessage(_Tagged, frozen=True, tag="event"):
    """An event pushed to a subscriber."""

    event: Event


class SubscriptionDropped(_Tagged, frozen=True, tag="dropped"):
    """The server stopped this subscription and says why (e.g. fell behind)."""

    reason: str


Reply = (
    OrderReply
    | OrdersReply
    | PositionsReply
    | AccountsReply
    | HealthReply
    | ReportReply
    | OkReply
    | ErrorReply
    | EventMessage
    | SubscriptionDropped
)
