"""The service's front door for IPC: turns each request into actor messages.

Submits and cancels go to the router, trading-state changes to risk,
positions to the positions actor, accounts to the broker actors, order
queries to the journal. Runtime failures become the wire error codes.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
import trio

from ult_actors.actors.closeout import close_positions
from ult_actors.actors.commands import BrokerCommand, QueryAccount
from ult_actors.actors.journal import JournalSlot
from ult_actors.actors.lookup import find_order, known_broker
from ult_actors.actors.risk import RiskCommand
from ult_actors.actors.router import RouterCommand
from ult_actors.errors import BrokerUnavailable, Internal, Timeout, UltError
from ult_actors.messages import (
    TERMINAL_STATUSES,
    Account,
    AccountReset,
    AccountsReply,
    ActorHealthChanged,
    Cancel,
    ClosePosition,
    ConnectionStateChanged,
    Event,
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
    OrderReply,
    OrdersReply,
    OrderUpdate,
    Ping,
    Position,
    PositionDrift,
    PositionsReply,
    Replace,
    Reply,
    ReportReply,
    Request,
    SetKillSwitch,
    SetTradingState,
    Submit,
    SubmitList,
    Subscribe,
    TradingStateChanged,
)
from ult_actors.report import build_report
from ult_actors.runtime import (
    ActorCrashed,
    ActorUnavailable,
    CallTimeout,
    EventBus,
    Mailbox,
    Subscription,
    call,
)
from ult_actors.runtime.intake import IntakeGate
from ult_actors.runtime.mailbox import Asked, InFlightUnanswered, ask
from ult_actors.validation import with_leg_ids

#: The event types of each topic (what a subscription to it is routed).
_TOPIC_KINDS: dict[EventTopic, tuple[type[Event], ...]] = {
    "orders": (OrderUpdate,),
    "fills": (OrderUpdate,),
    "health": (ActorHealthChanged, ConnectionStateChanged),
    "positions": (PositionDrift, AccountReset),
    "risk": (TradingStateChanged,),
}


def _topic_kinds(topics: frozenset[EventTopic]) -> tuple[type[Event], ...]:
    return tuple({kind for topic in topics for kind in _TOPIC_KINDS.get(topic, ())})


def _topic_filter(topics: frozenset[EventTopic]) -> Callable[[Event], bool]:
    def accepts(event: Event) -> bool:
        match event:
            case OrderUpdate():
                if "fills" in topics and event.fill is not None:
                    return True
                return "orders" in topics and not event.fill_only
            case ActorHealthChanged() | ConnectionStateChanged():
                return "health" in topics
            case PositionDrift() | AccountReset():
                return "positions" in topics
            case TradingStateChanged():
                return "risk" in topics
        return False

    return accepts


def _check_hint(request: Request) -> str:
    """Where to look for the order a request may have placed (a submit's only)."""
    if isinstance(request, Submit) and request.order.client_order_id is not None:
        return f" (check: ult order {request.order.client_order_id})"
    return ""


#: What the runtime raises to an asker, each told the client as its ``UltError`` (``_wire_error``).
_RUNTIME_ERRORS = (InFlightUnanswered, ActorUnavailable, CallTimeout, ActorCrashed)


def _wire_error(exc: Exception, request: Request) -> UltError:
    """The ``UltError`` a client is told for a runtime failure of its request."""
    if isinstance(exc, InFlightUnanswered):
        return BrokerUnavailable(
            f"request not answered: {exc}; its outcome is unknown until reconciled"
            f"{_check_hint(request)}"
        )
    if isinstance(exc, ActorUnavailable):
        return BrokerUnavailable(str(exc))
    if isinstance(exc, CallTimeout):
        return Timeout(f"the service did not answer in time: {exc}")
    if isinstance(exc, ActorCrashed) and isinstance(exc.cause, BrokerUnavailable):
        # Restarted by its connection, not by a bug: asking again (same ids) is
        # safe, but what the request sent may have reached the broker.
        return BrokerUnavailable(
            f"request not answered: {exc}; its outcome is unknown until reconciled"
            f"{_check_hint(request)}",
            broker=exc.cause.broker,
        )
    return Internal(f"request failed: {exc}")


# What a submit's way reads, as ``Final`` names: compiled, a C static each, not a look-up
# in this module's dict (a class from an uncompiled module is one otherwise).
_SUBMIT: Final = Submit
_ORDER: Final = Order
_ORDER_REPLY: Final = OrderReply


def _order_reply(request: Submit, order: object) -> OrderReply:
    """A submit's reply; its answer must be an order (as ``call(..., answer=Order)``)."""
    if not isinstance(order, _ORDER):
        raise TypeError(
            f"Submit was answered with type {type(order).__name__}, not {Order.__name__}"
        )
    return _ORDER_REPLY(request.id, order)  # by position: ``order_state`` checks the order


class ServiceGateway:
    """Implements ``ult_actors.ipc.gateway.Gateway`` on top of the actor tree."""

    def __init__(
        self,
        *,
        router: Mailbox[RouterCommand],
        risk: Mailbox[RiskCommand],
        positions: Mailbox[GetPositions],
        brokers: dict[str, Mailbox[BrokerCommand]],
        journal: JournalSlot,
        bus: EventBus[Event],
        health: Callable[[], HealthSnapshot],
        submit_timeout_s: float = 30.0,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.router = router
        self.risk = risk
        self.positions = positions
        self.brokers = brokers
        self.journal = journal
        self.bus = bus
        self.health = health
        self.submit_timeout_s = submit_timeout_s
        self.now_ns = now_ns
        # Client order ids made here are unique per process start: pid + start time + counter.
        self._coid_prefix = f"ult-{os.getpid():x}{now_ns() // 1_000_000 % 0xFFFFFFFF:x}"
        self._coid_seq = itertools.count(1)

    @property
    def intake(self) -> IntakeGate:
        """Closed while the journal's fold is too far behind: the IPC reads no requests."""
        return self.journal.intake

    def new_client_order_id(self) -> str:
        return f"{self._coid_prefix}-{next(self._coid_seq)}"

    def subscribe(self, topics: frozenset[EventTopic], capacity: int) -> Subscription[Event]:
        """A bounded subscription to events of these topics."""
        return self.bus.subscribe(
            _topic_filter(topics), capacity=capacity, kinds=_topic_kinds(topics)
        )

    def begin(self, request: Request, peer: Any = None) -> Reply | Awaitable[Reply]:
        """``handle``'s reply by a plain call when nothing on its way waits (a submit the
        router and the broker's step answer in this task: most), else the coroutine of
        the rest, which the caller awaits at once. Failures raise as ``handle``'s do.

        No checkpoint on the way: the caller checks for its cancellation.
        """
        if type(request) is not _SUBMIT or request.wait:  # decoded: never a subclass
            return self.handle(request, peer)
        order_req = request.order
        coid = order_req.client_order_id
        if coid is None:  # not prepared (the dispatcher prepares what it decodes)
            return self.handle(request, peer)
        timeout = self._time_left(coid, order_req.deadline_ns)
        try:
            asked = ask(self.router, request, timeout=timeout)
            if asked is None:  # the router's mailbox is full: wait for room
                return self.handle(request, peer)
            if not asked.answered():
                return self._submitted(request, asked)
            order = asked.answer()
        except _RUNTIME_ERRORS as exc:
            raise _wire_error(exc, request) from None
        return _order_reply(request, order)

    async def _submitted(self, request: Submit, asked: Asked) -> Reply:
        """The reply to a submit ``begin`` sent, once its answer comes."""
        try:
            order = await asked.wait()
        except _RUNTIME_ERRORS as exc:
            raise _wire_error(exc, request) from None
        return _order_reply(request, order)

    async def handle(self, request: Request, peer: Any = None) -> Reply:
        """Answer one request; failures raise the matching ``UltError``."""
        try:
            if isinstance(request, Submit):  # the usual request, without ``_handle``'s frame
                return await self._submit(request)
            return await self._handle(request)
        except _RUNTIME_ERRORS as exc:
            raise _wire_error(exc, request) from None

    async def _handle(self, request: Request) -> Reply:
        match request:
            case Submit():
                return await self._submit(request)
            case SubmitList():
                prepared = self.prepare(request)
                assert isinstance(prepared, SubmitList)
                wanted = prepared.orders
                timeout = self._time_left(wanted.list_id, wanted.deadline_ns)
                legs = await call(self.router, prepared, timeout=timeout, answer=list)
                return OrdersReply(id=request.id, orders=legs)
            case Replace():
                prepared = self.prepare(request)
                assert isinstance(prepared, Replace)
                change = prepared.change
                timeout = self._time_left(change.client_order_id, change.deadline_ns)
                order = await call(self.router, prepared, timeout=timeout, answer=Order)
                return OrderReply(id=request.id, order=order)
            case Cancel(id=request_id):
                order = await call(
                    self.router, request, timeout=self.submit_timeout_s, answer=Order
                )
                return OrderReply(id=request_id, order=order)
            case GetOrder(id=request_id, order_id=order_id):
                return OrderReply(id=request_id, order=await self._find(order_id))
            case ListOrders(id=request_id, broker=broker):
                if broker is not None:
                    self._broker(broker)
                store = await self.journal.get()
                orders = await store.list_orders(
                    open_only=request.open_only, broker=broker, limit=request.limit
                )
                return OrdersReply(id=request_id, orders=orders)
            case GetPositions(id=request_id, broker=broker):
                if broker is not None:
                    self._broker(broker)
                rows: list[Position] = await call(
                    self.positions, request, timeout=10.0, answer=list
                )
                return PositionsReply(id=request_id, positions=rows)
            case GetAccount(id=request_id, broker=broker):
                return AccountsReply(id=request_id, accounts=await self._accounts(broker))
            case GetHealth(id=request_id):
                return HealthReply(id=request_id, health=self.health())
            case SetKillSwitch() | SetTradingState():
                if isinstance(request, SetTradingState) and request.broker is not None:
                    self._broker(request.broker)
                return await call(self.risk, request, timeout=60.0, answer=OkReply)
            case ClosePosition() | Flatten():
                orders = await close_positions(
                    request,
                    brokers=self.brokers,
                    risk=self.risk,
                    client_order_id=self.new_client_order_id(),
                    timeout=self.submit_timeout_s,
                )
                return OrdersReply(id=request.id, orders=orders)
            case GetReport(id=request_id, query=query):
                store = await self.journal.get()
                inputs = await store.cost_inputs(query)
                # Reads the journal and is CPU-bound over a big one: off the trio thread.
                report = await trio.to_thread.run_sync(build_report, inputs, query)
                return ReportReply(id=request_id, report=report)
            case Ping(id=request_id):
                return OkReply(id=request_id, detail="pong")
            case Subscribe():
                raise Internal("subscriptions are served by the IPC server")
        raise Internal(f"unhandled request {type(request).__name__}")

    async def _accounts(self, broker: str | None) -> list[Account]:
        """One broker's account, or every broker's that answers."""
        names = [broker] if broker else sorted(self.brokers)
        accounts = []
        for name in names:
            try:
                accounts.append(
                    await call(self._broker(name), QueryAccount(), timeout=10.0, answer=Account)
                )
            except (UltError, CallTimeout) as exc:
                if broker:
                    raise
                if not isinstance(exc, UltError):
                    exc = BrokerUnavailable(f"broker {name} did not answer", broker=name)
        return accounts

    def _broker(self, name: str) -> Mailbox[BrokerCommand]:
        return self.brokers[known_broker(name, self.brokers)]

    async def _find(self, order_id: str) -> Order:
        return await find_order(await self.journal.get(), order_id)

    def prepare(self, request: Request) -> Request:
        """``request`` as the service will handle it: a submit gets its client order id."""
        if isinstance(request, Submit):
            if request.order.client_order_id is not None:
                return request
            order = msgspec.structs.replace(
                request.order, client_order_id=self.new_client_order_id()
            )
            return msgspec.structs.replace(request, order=order)
        if isinstance(request, SubmitList):
            orders = with_leg_ids(request.orders, self.new_client_order_id)
            return msgspec.structs.replace(request, orders=orders)
        if isinstance(request, Replace) and request.change.client_order_id is None:
            change = msgspec.structs.replace(
                request.change, client_order_id=self.new_client_order_id()
            )
            return msgspec.structs.replace(request, change=change)
        return request

    def _time_left(self, coid: str | None, deadline_ns: int | None) -> float:
        """How long to wait for the broker: the client's deadline, else the default."""
        if deadline_ns is None:
            return self.submit_timeout_s
        left_ns = deadline_ns - self.now_ns()
        if left_ns <= 0:
            # Read too late (a stopped or overloaded service): the client has given up.
            raise Timeout(
                f"order {coid}: its deadline passed {-left_ns / 1e6:.0f} ms before the"
                " service read it; it was not sent to any broker"
            )
        return left_ns / 1e9

    async def _submit(self, request: Submit) -> Reply:
        order_req = request.order
        coid = order_req.client_order_id
        if coid is None:  # not prepared yet (the dispatcher prepares what it decodes)
            prepared = self.prepare(request)
            assert isinstance(prepared, Submit)
            request = prepared
            order_req = request.order
            coid = order_req.client_order_id
        timeout = self._time_left(coid, order_req.deadline_ns)
        if not request.wait:
            order = await call(self.router, request, timeout=timeout, answer=Order)
            return OrderReply(id=request.id, order=order)
        # Subscribe before submitting so the terminal update cannot slip past.
        updates = self.bus.subscribe(
            lambda e: isinstance(e, OrderUpdate) and e.order.client_order_id == coid,
            capacity=256,
            kinds=(OrderUpdate,),
        )
        try:
            order = await call(self.router, request, timeout=timeout, answer=Order)
            while order.status not in TERMINAL_STATUSES:
                try:
                    event = await updates.receive()
                except trio.EndOfChannel:
                    store = await self.journal.get()
                    order = await store.get(order.client_order_id) or order
                    break
                assert isinstance(event, OrderUpdate)
                order = event.order
            return OrderReply(id=request.id, order=order)
        finally:
            updates.close()
