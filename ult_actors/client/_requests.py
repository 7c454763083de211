"""What both clients share: each request built from method arguments, paired with
how to read its reply, and how replies and events are told apart.

``Client`` and ``AsyncClient`` differ only in how bytes travel; what a method
sends and what it returns live here once.
"""

from __future__ import annotations

import datetime
import enum
import itertools
import time
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Final, TypeVar

import msgspec

from ult_actors.client._call import Call
from ult_actors.client._errors import OutcomeUnknown, SubscriptionLost
from ult_actors.errors import BadRequest, Internal, InvalidOrder, Timeout, UltError, from_info
from ult_actors.ipc.framing import ReplyCodec
from ult_actors.messages import (
    Account,
    AccountsReply,
    Cancel,
    ClosePosition,
    CostReport,
    ErrorReply,
    Event,
    EventMessage,
    EventTopic,
    Flatten,
    GetAccount,
    GetHealth,
    GetOrder,
    GetPositions,
    GetReport,
    HealthReply,
    HealthSnapshot,
    ListOrders,
    OkReply,
    Order,
    OrderListRequest,
    OrderReply,
    OrderRequest,
    OrdersReply,
    OrderType,
    Ping,
    Position,
    PositionsReply,
    Replace,
    ReplaceRequest,
    Reply,
    ReportGrouping,
    ReportQuery,
    ReportReply,
    Request,
    SetKillSwitch,
    SetTradingState,
    Side,
    Submit,
    SubmitList,
    Subscribe,
    SubscriptionDropped,
    TimeInForce,
    TradingState,
)
from ult_actors.validation import MAX_DECIMAL, PLAIN_DECIMAL, check_decimal, with_leg_ids

R = TypeVar("R")
#: What ``Requests._stamped`` stamps: anything with a deadline (and maybe a client order id).
S = TypeVar("S", OrderRequest, ReplaceRequest, OrderListRequest)

#: What a quantity or price may be given as: never a float, which cannot hold 0.1 exactly.
Number = Decimal | int | str

#: The largest reply a client accepts (a long order list is big, but not this big).
MAX_REPLY_BYTES = 64 << 20

#: Every int from 1 up to below this is a quantity or price ``check_decimal`` accepts.
_INT_BOUND = int(MAX_DECIMAL)


class Unset(enum.Enum):
    """The type of ``UNSET``: "not given" for a ``timeout`` argument, where ``None``
    already means "no bound" (a typed sentinel: the compiled client checks argument
    types)."""

    UNSET = "unset"


UNSET: Final = Unset.UNSET

#: What the service pushes on a subscribed connection, outside any request.
EVENT_FRAMES = (EventMessage, SubscriptionDropped)


def to_decimal(name: str, value: object) -> Decimal:
    """A number argument as a ``Decimal``; ``InvalidOrder`` naming the field otherwise.

    ``value`` is whatever the caller passed for a ``Number`` (a float, ``None``,
    from code no type checker saw), so it is typed ``object``. Typed ``Number``,
    mypy saw the refusal below reached by a bool alone, and compiled code casts
    to what mypy sees: a float raised mypyc's "TypeError: bool object expected;
    got float" instead. The public signatures keep ``Number`` for type checkers:
    compiled, they check nothing (``Decimal`` is no class of mypyc's own, so the
    union holds ``object``); tests/client/test_numbers.py holds both.

    Text must be a plain decimal (``PLAIN_DECIMAL``); the result is bounded as the
    service bounds it (``ult_actors.validation.check_decimal``), so a bad number is
    refused before it is sent.
    """
    if type(value) is int and 0 < value < _INT_BOUND:
        return Decimal(value)  # the common case, plain and bounded by construction
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise InvalidOrder(
            f"{name} must be a str, int or Decimal, not {type(value).__name__}"
            " (floats cannot hold prices exactly)",
            field=name,
        )
    if isinstance(value, str):
        if not PLAIN_DECIMAL.fullmatch(value):
            raise InvalidOrder(
                f"{name} {value!r} is not a plain positive decimal (digits with at most"
                " one '.', e.g. 10 or 187.25)",
                field=name,
            )
        value = Decimal(value)
    result = Decimal(value)
    exponent = result.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0 and result.adjusted() < 28:
        result = Decimal(int(result))  # a Decimal such as 1E+1 is sent as plain 10
    check_decimal(result, name)
    return result


def order_request(
    symbol: str,
    side: Side,
    qty: Number,
    *,
    type: OrderType = "market",
    limit_price: Number | None = None,
    stop_price: Number | None = None,
    time_in_force: TimeInForce = "day",
    extended_hours: bool = False,
    broker: str | None = None,
    client_order_id: str | None = None,
) -> OrderRequest:
    """An ``OrderRequest`` from friendly arguments (prices may be strings)."""
    return OrderRequest(
        symbol=symbol,
        side=side,
        qty=to_decimal("qty", qty),
        type=type,
        limit_price=None if limit_price is None else to_decimal("limit_price", limit_price),
        stop_price=None if stop_price is None else to_decimal("stop_price", stop_price),
        time_in_force=time_in_force,
        extended_hours=extended_hours,
        broker=broker,
        client_order_id=client_order_id,
    )


def replace_request(
    order_id: str,
    *,
    qty: Number | None = None,
    limit_price: Number | None = None,
    stop_price: Number | None = None,
    time_in_force: TimeInForce | None = None,
    client_order_id: str | None = None,
) -> ReplaceRequest:
    """A ``ReplaceRequest`` from friendly arguments; ``InvalidOrder`` if nothing changes."""
    if qty is None and limit_price is None and stop_price is None and time_in_force is None:
        raise InvalidOrder(
            "a replace needs at least one change: qty, limit_price, stop_price or time_in_force"
        )
    return ReplaceRequest(
        order_id=order_id,
        qty=None if qty is None else to_decimal("qty", qty),
        limit_price=None if limit_price is None else to_decimal("limit_price", limit_price),
        stop_price=None if stop_price is None else to_decimal("stop_price", stop_price),
        time_in_force=time_in_force,
        client_order_id=client_order_id,
    )


def _exits(
    symbol: str,
    side: Side,
    qty: Number,
    *,
    take_profit: Number,
    stop_loss: Number,
    stop_limit: Number | None,
    time_in_force: TimeInForce,
    broker: str | None,
) -> list[OrderRequest]:
    """A take-profit limit and a stop-loss stop (or stop-limit) on ``side``."""
    return [
        order_request(
            symbol, side, qty, type="limit", limit_price=take_profit,
            time_in_force=time_in_force, broker=broker,
        ),
        order_request(
            symbol, side, qty, type="stop" if stop_limit is None else "stop_limit",
            stop_price=stop_loss, limit_price=stop_limit, time_in_force=time_in_force,
            broker=broker,
        ),
    ]  # fmt: skip


def bracket_request(
    symbol: str,
    side: Side,
    qty: Number,
    *,
    take_profit: Number,
    stop_loss: Number,
    stop_limit: Number | None = None,
    type: OrderType = "market",
    limit_price: Number | None = None,
    time_in_force: TimeInForce = "day",
    broker: str | None = None,
    list_id: str | None = None,
) -> OrderListRequest:
    """An entry with its exits: a take-profit limit and a stop-loss (stop, or stop-limit
    at ``stop_limit``) on the other side, for the entry's quantity and time in force."""
    entry = order_request(
        symbol, side, qty, type=type, limit_price=limit_price, time_in_force=time_in_force,
        broker=broker,
    )  # fmt: skip
    exits = _exits(
        symbol, "sell" if side == "buy" else "buy", qty, take_profit=take_profit,
        stop_loss=stop_loss, stop_limit=stop_limit, time_in_force=time_in_force, broker=broker,
    )  # fmt: skip
    return OrderListRequest(
        contingency="bracket", legs=[entry, *exits], list_id=list_id, broker=broker
    )


def oco_request(
    symbol: str,
    side: Side,
    qty: Number,
    *,
    take_profit: Number,
    stop_loss: Number,
    stop_limit: Number | None = None,
    time_in_force: TimeInForce = "gtc",
    broker: str | None = None,
    list_id: str | None = None,
) -> OrderListRequest:
    """Two exits on ``side`` (``sell`` to leave a long): a take-profit limit and a stop-loss;
    the fill of one cancels the other."""
    exits = _exits(
        symbol, side, qty, take_profit=take_profit, stop_loss=stop_loss, stop_limit=stop_limit,
        time_in_force=time_in_force, broker=broker,
    )  # fmt: skip
    return OrderListRequest(contingency="oco", legs=exits, list_id=list_id, broker=broker)


def oto_request(
    parent: OrderRequest,
    child: OrderRequest,
    *,
    broker: str | None = None,
    list_id: str | None = None,
) -> OrderListRequest:
    """``child`` is sent once ``parent`` fills (sized to what filled)."""
    return OrderListRequest(contingency="oto", legs=[parent, child], list_id=list_id, broker=broker)


def report_query(
    since: datetime.datetime | None,
    until: datetime.datetime | None,
    broker: str | None,
    symbol: str | None,
    by: ReportGrouping,
    with_orders: bool,
    with_charts: bool,
) -> ReportQuery:
    """The query of a cost report; naive datetimes are taken as UTC."""
    return ReportQuery(
        since_ns=_utc_ns(since),
        until_ns=_utc_ns(until),
        broker=broker,
        symbol=symbol,
        by=by,
        with_orders=with_orders,
        with_charts=with_charts,
    )


def _utc_ns(moment: datetime.datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    ns = int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000
    # Nothing is journaled outside what a signed 64-bit count of nanoseconds holds, so a
    # bound beyond it (year 1 or 9999) means the same as the end of that range.
    return max(-(2**63), min(ns, 2**63 - 1))


def framed(codec: ReplyCodec, request: Request) -> bytes:
    """``request`` as a frame for the socket; ``BadRequest`` naming what cannot be sent
    (a field holding a value msgpack has no form for), before anything is sent."""
    try:
        return codec.encode(request)
    except TypeError as exc:
        raise BadRequest(f"cannot send this {type(request).__name__}: {exc}") from None


def expect(reply: Reply, kind: type[R]) -> R:
    """The reply if it is a ``kind``; the matching ``UltError`` if it is an error."""
    if isinstance(reply, ErrorReply):
        raise from_info(reply.error)
    if not isinstance(reply, kind):
        raise Internal(f"expected a {kind.__name__} from the service, got {type(reply).__name__}")
    return reply


def submit_timeout(
    timeout: float | Unset | None, *, wait: bool, default: float | None
) -> float | None:
    """A submit's bound: as given; else none with ``wait=True`` (an order may rest for
    long), else the client's ``default``."""
    if timeout is UNSET:
        return None if wait else default
    return timeout


def no_reply(request: Request, timeout: float | None) -> Timeout:
    """The error for a request whose reply did not come in time; for a submit it says
    the outcome is unknown and names the order to look up."""
    if isinstance(request, Submit):
        assert request.order.client_order_id is not None  # ``Requests.submit`` set it
        return OutcomeUnknown(request.order.client_order_id, timeout)
    if isinstance(request, Replace):
        assert request.change.client_order_id is not None  # ``Requests.replace`` set it
        return OutcomeUnknown(request.change.client_order_id, timeout, "replace")
    if isinstance(request, SubmitList):
        first = request.orders.legs[0].client_order_id
        assert first is not None  # ``Requests.submit_list`` set it
        return OutcomeUnknown(first, timeout, f"{request.orders.contingency} order list")
    return Timeout(f"no reply from the service within {timeout} s to {type(request).__name__}")


def connection_error(reply: Reply) -> UltError | None:
    """The error an id-0 ``ErrorReply`` carries about the whole connection (unauthorized,
    oversize frame) rather than one request; ``None`` for any other reply."""
    if isinstance(reply, ErrorReply) and reply.id == 0:
        return from_info(reply.error)
    return None


def event_of(message: EventMessage | SubscriptionDropped) -> Event:
    """The event a pushed message carries; ``SubscriptionLost`` if it says we were dropped."""
    if isinstance(message, SubscriptionDropped):
        raise SubscriptionLost(message.reason)
    return message.event


def read_order(reply: Reply) -> Order:
    """The order an ``OrderReply`` carries (submit, cancel, order lookup)."""
    return expect(reply, OrderReply).order


def _read_orders(reply: Reply) -> list[Order]:
    return expect(reply, OrdersReply).orders


def _read_detail(reply: Reply) -> str:
    return expect(reply, OkReply).detail


def _read_ok(reply: Reply) -> None:
    expect(reply, OkReply)


class Requests:
    """The requests of one connection, each with the connection's next id.

    Submits leave with a client order id made here when the caller gave none
    (``coid_prefix`` plus a counter; the prefix is random per connection
    unless given), so a timeout can name the order to look up.
    """

    def __init__(
        self, *, coid_prefix: str | None = None, now_ns: Callable[[], int] = time.time_ns
    ) -> None:
        self._ids = itertools.count(1)
        self._coid_prefix = coid_prefix or f"ult-{uuid.uuid4().hex[:12]}"
        self._coids = itertools.count(1)
        self._now_ns = now_ns

    def next_id(self) -> int:
        """A request id not used before on this connection (they start at 1: 0 is the
        connection's own)."""
        return next(self._ids)

    def submit(
        self, order: OrderRequest, *, wait: bool = False, timeout: float | None = None
    ) -> Call[Order]:
        """Place ``order``; with ``wait`` the reply comes once it is terminal.

        The order gets a client order id if it has none and, with a ``timeout``,
        the deadline (``deadline_ns``) past which the service must not send it:
        the moment this client stops waiting.
        """
        return Call(
            Submit(id=self.next_id(), order=self._stamped(order, timeout), wait=wait), read_order
        )

    def replace(self, change: ReplaceRequest, *, timeout: float | None = None) -> Call[Order]:
        """Change a working order; the reply is the replacement. Stamped as a submit is:
        the replacement's client order id (the replace's idempotency key) and deadline."""
        return Call(Replace(id=self.next_id(), change=self._stamped(change, timeout)), read_order)

    def submit_list(
        self, orders: OrderListRequest, *, timeout: float | None = None
    ) -> Call[list[Order]]:
        """Place an order list; every leg, and the list, get an id if they have none."""
        stamped = self._stamped(with_leg_ids(orders, self._new_client_order_id), timeout)
        return Call(SubmitList(id=self.next_id(), orders=stamped), _read_orders)

    def _new_client_order_id(self) -> str:
        return f"{self._coid_prefix}-{next(self._coids)}"

    def _stamped(self, order: S, timeout: float | None) -> S:
        deadline_ns = order.deadline_ns
        if timeout is not None and deadline_ns is None:
            deadline_ns = self._now_ns() + int(timeout * 1e9)
        if isinstance(order, OrderListRequest) or order.client_order_id is not None:
            if deadline_ns == order.deadline_ns:
                return order
            return msgspec.structs.replace(order, deadline_ns=deadline_ns)
        coid = self._new_client_order_id()
        return msgspec.structs.replace(order, client_order_id=coid, deadline_ns=deadline_ns)

    def cancel(self, order_id: str) -> Call[Order]:
        """Cancel by order id or client order id."""
        return Call(Cancel(id=self.next_id(), order_id=order_id), read_order)

    def order(self, order_id: str) -> Call[Order]:
        """One order by order id or client order id."""
        return Call(GetOrder(id=self.next_id(), order_id=order_id), read_order)

    def orders(self, open_only: bool, broker: str | None, limit: int) -> Call[list[Order]]:
        """Orders the service knows."""
        request = ListOrders(id=self.next_id(), open_only=open_only, broker=broker, limit=limit)
        return Call(request, _read_orders)

    def positions(self, broker: str | None) -> Call[list[Position]]:
        """Positions at one broker, or at all."""
        request = GetPositions(id=self.next_id(), broker=broker)
        return Call(request, lambda reply: expect(reply, PositionsReply).positions)

    def account(self, broker: str | None) -> Call[list[Account]]:
        """Balances per broker."""
        request = GetAccount(id=self.next_id(), broker=broker)
        return Call(request, lambda reply: expect(reply, AccountsReply).accounts)

    def health(self) -> Call[HealthSnapshot]:
        """The actor tree's health."""
        return Call(GetHealth(id=self.next_id()), lambda reply: expect(reply, HealthReply).health)

    def report(self, query: ReportQuery) -> Call[CostReport]:
        """Transaction costs of the journaled orders ``query`` covers."""
        request = GetReport(id=self.next_id(), query=query)
        return Call(request, lambda reply: expect(reply, ReportReply).report)

    def kill_switch(self, on: bool) -> Call[str]:
        """Halt (and cancel everything) or resume."""
        return Call(SetKillSwitch(id=self.next_id(), on=on), _read_detail)

    def trading_state(self, state: TradingState, broker: str | None) -> Call[str]:
        """Set active / reducing / halted, globally or for one broker."""
        return Call(SetTradingState(id=self.next_id(), state=state, broker=broker), _read_detail)

    def close_position(self, symbol: str, broker: str | None) -> Call[list[Order]]:
        """Close the position in ``symbol`` (its open orders canceled first)."""
        request = ClosePosition(id=self.next_id(), symbol=symbol, broker=broker)
        return Call(request, _read_orders)

    def flatten(self, broker: str | None) -> Call[list[Order]]:
        """Cancel every open order and close every position, at ``broker`` or at all."""
        return Call(Flatten(id=self.next_id(), broker=broker), _read_orders)

    def ping(self) -> Call[None]:
        """A round trip."""
        return Call(Ping(id=self.next_id()), _read_ok)

    def subscribe(self, topics: Iterable[EventTopic] | None) -> Call[None]:
        """Start events on this connection: the given topics, or the service's default."""
        request = (
            Subscribe(id=self.next_id())
            if topics is None
            else Subscribe(id=self.next_id(), topics=list(topics))
        )
        return Call(request, _read_ok)
