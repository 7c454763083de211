"""One actor per broker connection: its connection failing is the actor crashing.

Each incarnation builds a fresh connector, connects, starts the order-update
stream, and serves its mailbox. The supervisor's restart *is* the
reconnection; commands sent meanwhile wait in the mailbox.

Exactly-once submission: an order is journaled (durably) before it leaves,
the one durable write on its path; the broker's answer and the stream's
reports are journaled in the background (``record_soon``), so the reply does
not wait for them;
a submit that is redelivered after a crash, or retried after a transient
error, first looks the order up by client order id, so a retry never makes a
second order, and at most one submit of a client order id runs at a time.
Refused credentials are fatal: the actor reports ``failed`` and answers every
command with ``auth_failed`` instead of restart-looping.

Reconciliation (``ult_actors.actors.reconcile``): each incarnation, once
connected and before it reads its mailbox, settles every journaled order of
its broker that is not final; while running it looks up orders stuck in
flight and sweeps the broker's open orders for ones the journal lacks.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal, cast

import msgspec
import structlog
import trio

from ult_actors.actors.closeout import CloseOutSide, close_out
from ult_actors.actors.commands import (
    BrokerCommand,
    CancelAll,
    CancelOrder,
    CloseOut,
    PlaceList,
    PlaceOrder,
    QueryAccount,
    QueryOpenOrders,
    QueryOrder,
    QueryPositions,
    ReplaceOrder,
)
from ult_actors.actors.journal import JournalSlot
from ult_actors.actors.order_lists import ListSide, is_native, place_list, react, resume
from ult_actors.actors.reconcile import (
    ReconcilePolicy,
    ReconcileSummary,
    never_arrived,
    reconcile_on_start,
    reconcile_stuck,
)
from ult_actors.actors.replacing import ReplaceSide, replace_order
from ult_actors.brokers.base import (
    AnswersAtOnce,
    AnswersInProcess,
    AnswersWithNews,
    Connector,
    SupportsLegLookup,
    SupportsRequestBudget,
    SupportsResync,
    SupportsStreamState,
    SupportsValidatedOrders,
    conforms,
)
from ult_actors.brokers.budget import RateBudget, RequestClass, charged_as
from ult_actors.cluster.fencing import LeaseExpired, check_fence
from ult_actors.errors import (
    AuthFailed,
    BrokerUnavailable,
    ConfigError,
    DuplicateOrder,
    InsufficientFunds,
    Internal,
    InvalidOrder,
    NotFound,
    RateLimited,
    RiskRejected,
    Timeout,
    UltError,
)
from ult_actors.journal.store import OrderStore
from ult_actors.messages import (
    OPEN_STATUSES,
    TERMINAL_STATUSES,
    AccountReset,
    ArrivalSource,
    ConnectionState,
    Event,
    Leg,
    Order,
    OrderListRequest,
    OrderRequest,
    OrderUpdate,
)
from ult_actors.order_state import (
    IllegalTransition,
    already_final,
    apply_update,
    is_local_verdict,
    order_from_request,
    refused,
    request_of,
)
from ult_actors.recent import Recent
from ult_actors.report.arrival import ArrivalPrices, venue_fetch, venue_quotes
from ult_actors.runtime import ActorContext, Envelope, EventBus, Mailbox
from ult_actors.runtime.direct import StepEntry
from ult_actors.runtime.jitter import Jitter
from ult_actors.runtime.pubsub import AfterReply


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of transient submit failures (``ORDER_RETRY_*``)."""

    enabled: bool = True
    max_retries: int = 3
    delay_s: float = 0.2
    max_delay_s: float = 5.0

    def delay(self, attempt: int, rng: Jitter, retry_after: float | None) -> float:
        """Full-jitter exponential delay before retry ``attempt`` (1-based)."""
        bound = min(self.max_delay_s, self.delay_s * 2 ** (attempt - 1))
        delay = rng.uniform(0.0, bound)
        return max(delay, retry_after or 0.0)


@dataclass
class BrokerActorDeps:
    """What a broker actor is built from (one per configured connection)."""

    name: str
    make_connector: Callable[[], Connector]
    journal: JournalSlot
    bus: EventBus[Event]
    retry: RetryPolicy
    #: The retry delays' jitter (``service`` gives each connection a ``SeededJitter``).
    rng: Jitter
    now_ns: Callable[[], int] = time.time_ns
    #: Submits handled at once (1: each in turn, inline in the mailbox loop).
    concurrency: int = 16
    reconcile: ReconcilePolicy = field(default_factory=ReconcilePolicy)
    #: Told (broker, how many) when the journal had no order of this broker at start while
    #: the broker held some (a deleted or new journal): they were adopted.
    on_adopted_unjournaled: Callable[[str, int], None] = lambda _broker, _count: None
    #: Told (broker, how many) whenever the number of open emulated list legs changes.
    on_emulated_legs: Callable[[str, int], None] = lambda _broker, _count: None
    #: New orders and replaces while the connection is not ``ready``: ``hold`` them
    #: (up to their deadline) or ``refuse`` them at once with ``broker_unavailable``.
    on_unavailable: Literal["hold", "refuse"] = "hold"
    #: The account's request budget, shared by every incarnation; ``None``: unlimited.
    budget: RateBudget | None = None
    #: Told (broker, state, connector, why) whenever the connection's state changes (health).
    on_connection_state: Callable[[str, ConnectionState, Connector, str], None] = (
        lambda _broker, _state, _connector, _why: None
    )


def broker_actor(deps: BrokerActorDeps) -> Callable[[ActorContext[BrokerCommand]], Any]:
    """The actor body for one broker connection."""

    async def start(ctx: ActorContext[BrokerCommand]) -> None:
        await _BrokerIncarnation(deps, ctx).run()

    return start


class _BrokerIncarnation:
    def __init__(self, deps: BrokerActorDeps, ctx: ActorContext[BrokerCommand]) -> None:
        self.deps = deps
        self.ctx = ctx
        self.name = deps.name
        #: Client order ids with a submit (or replace) running now, each with the event set
        #: when it is over, made only once a second one waits for it (rare; see ``_one_at_a_time``).
        self.submitting: dict[str, trio.Event | None] = {}
        self.log: Any = structlog.get_logger().bind(actor=ctx.name, broker=deps.name)
        self.connector = deps.make_connector()
        connector = self.connector
        # ``conforms``, not ``isinstance``: each protocol's check walks its members (~60 ms
        # of 1,000 connections' start); one answer per connector class (``brokers.base``).
        if deps.budget is not None and conforms(connector, SupportsRequestBudget):
            # its own extra requests count too
            cast(SupportsRequestBudget, connector).use_budget(deps.budget)
        #: Tells a venue that checks orders itself which ones the router validated already.
        self._mark_validated = (
            cast(SupportsValidatedOrders, connector).mark_validated
            if conforms(connector, SupportsValidatedOrders)
            else None
        )
        #: Latest known state of this broker's orders seen by this incarnation.
        self.orders: Recent[str, Order] = Recent(
            _MAX_TRACKED,
            # Only final orders are forgotten (the journal keeps them), oldest first, and
            # then down to half, so trimming (a scan of the orders) is rare.
            evictable=lambda order: order.status in TERMINAL_STATUSES,
            trim_to=_MAX_TRACKED // 2,
        )
        #: Executions already on the bus (an ordered set, bounded), so each is published once.
        self.fills_published: Recent[str, None] = Recent(_MAX_TRACKED)
        #: Stamps new orders with the price to hand (what their slippage is measured by).
        self.arrivals = ArrivalPrices(
            venue_quotes(self.connector), venue_fetch(self.connector), clock=trio.current_time
        )
        #: Tasks serving the orders lane (and orders' own tasks running a step here,
        #: ``steps``), and how many of them wait for an order now.
        self.order_workers = 0
        self.idle_workers = 0
        #: How the order workers and the steps run a new order: with no request budget
        #: nothing reads a command's class, so without ``_dispatch``'s frame.
        self._dispatch_order = self._dispatch_charged if deps.budget is None else self._dispatch
        self._in_process = (
            conforms(connector, AnswersInProcess)
            and cast(AnswersInProcess, connector).answers_in_process
        )
        #: Such a venue, answering by a plain call in steps begun plainly (``_begin_step``):
        #: not with a budget (a fence offers no plain answer: ``FencedConnector``).
        self._at_once = (
            cast(AnswersAtOnce, connector)
            if conforms(connector, AnswersAtOnce)
            and cast(AnswersAtOnce, connector).answers_now
            and deps.budget is None
            else None
        )
        #: A new order's step run by the order's own task (the gateway's), for a venue
        #: that answers in process: it saves this incarnation a worker's wake-up.
        self.steps = StepEntry(
            ctx,
            self._dispatch_order,
            admit=self._step_admitted,
            enter=self._step_entered,
            leave=self._step_left,
            begin=self._begin_step if self._at_once is not None else None,
        )
        #: A venue that hands back an order's news of its submit call with the answer.
        self._with_news = (
            cast(AnswersWithNews, connector) if conforms(connector, AnswersWithNews) else None
        )
        #: Whose reply a plain step's events may wait for (``_begin_step``).
        self.after_reply = AfterReply.of_this_run()
        #: A plain step runs whose asker writes its reply next: its events wait for it.
        self._events_after_reply = False
        #: The order a plain step journaled and sent whose record awaits its answer: the
        #: first merge of it gives that (``record_answer``), or else the step's end.
        self._unanswered: str | None = None
        #: Cancels and queries handled at once.
        self.commands = trio.CapacityLimiter(_COMMANDS_AT_ONCE)
        #: Emulated order lists change one at a time (a release or a peer cancel each).
        self.list_lock = trio.Lock()
        #: Open legs of emulated lists (the service holds their contingency), for health.
        self.emulated_open: set[str] = set()
        #: Set once what the stream missed is applied: the gate for new orders opens.
        #: A stream lost later (``degraded``) puts a fresh, unset one in its place.
        self.ready = trio.Event()
        #: Whether ``ready`` is set, as a plain field: every new order's ``_step_admitted``
        #: reads it, and ``Event.is_set`` is interpreted Python (a call from compiled code,
        #: ~750 instructions). Set and cleared with ``ready`` (``_open_gate``, ``_close_gate``).
        self._gate_open = False
        self.state: ConnectionState = "connecting"
        #: Why the connector's own update stream is down now (``None``: it is up).
        self.stream_down: str | None = None
        if conforms(connector, SupportsStreamState):
            cast(SupportsStreamState, connector).watch_stream(self._on_stream_state)

    async def run(self) -> None:
        try:
            self._set_state("connecting")
            try:
                await self.connector.connect()
            except (AuthFailed, ConfigError) as exc:
                await self._serve_failed(exc)
                return
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                await nursery.start(self.connector.stream_updates, self._on_update)
                self.log.info("broker connected", incarnation=self.ctx.incarnation)
                self._set_state("resyncing")
                # New orders are read now, to be held or refused at the gate (``_gate``)
                # until the books are in step; cancels and queries are served at once.
                self._add_order_worker()
                nursery.start_soon(self._serve, (CANCEL_LANE, QUERY_LANE), self._handle_command)
                await self._resync()
                store = await self.deps.journal.get()
                # Before any new order: settle what the journal does not know the end of.
                summary = await reconcile_on_start(
                    self, store, self.deps.reconcile, now_ns=self.deps.now_ns
                )
                self._log_summary("reconciled on start", summary, always=True)
                await self._announce_account_reset()
                nursery.start_soon(self._resume_lists)
                if summary.adopted and summary.journal_empty:
                    self.deps.on_adopted_unjournaled(self.name, len(summary.adopted))
                nursery.start_soon(self._reconcile_forever)
                if self._in_process:
                    nursery.start_soon(self.steps.guard)
                if self.stream_down is None:
                    self._set_state("ready")
                    self._open_gate()
                else:  # lost again meanwhile: the gate opens once it is back in step
                    self._set_state("degraded", self.stream_down)
                self.ctx.started()
        finally:
            with trio.CancelScope(shield=True):
                await self.steps.wait_left()  # cancelled by now: in flight, redelivered
            self._set_state("connecting")  # until the next incarnation is in step
            with trio.move_on_after(2) as scope:
                scope.shield = True
                await self.connector.disconnect()

    def _set_state(self, state: ConnectionState, why: str = "") -> None:
        self.state = state
        self.log.info("broker connection state", state=state, why=why or None)
        self.deps.on_connection_state(self.name, state, self.connector, why)

    def _on_stream_state(self, why: str | None) -> None:
        """The connector's own stream was lost (``why``) or is back in step (``None``).

        Lost while ``ready``: ``degraded``, and new orders wait at the gate (the
        venue may be filling orders nobody hears of); back, after the connector
        delivered what the stream missed: ``ready`` again.
        """
        self.stream_down = why
        if why is not None and self.state == "ready":
            self._close_gate()
            self._set_state("degraded", why)
        elif why is None and self.state == "degraded":
            self._set_state("ready")
            self._open_gate()

    def _open_gate(self) -> None:
        """Let new orders through: ``ready`` set (waking those held at the gate)."""
        self._gate_open = True
        self.ready.set()

    def _close_gate(self) -> None:
        """Hold new orders at the gate again: a fresh, unset ``ready`` in its place."""
        self._gate_open = False
        self.ready = trio.Event()

    async def _resync(self) -> None:
        """Apply what the stream missed while this connection was away, once each, in order.

        Each update goes through ``_track`` like a streamed one (journal, risk,
        positions, subscribers), which applies an execution once by its id. A
        connector without ``resync`` (every shipped one) catches up inside its
        own stream before it reports started; ``reconcile_on_start`` settles the rest.
        """
        if not conforms(self.connector, SupportsResync):
            return
        missed = await cast(SupportsResync, self.connector).resync()
        for update in missed:
            await self._track(update.order, fill=update)
        if missed:
            self.log.warning("resynced updates the stream missed", count=len(missed))

    async def _gate(self, deadline_ns: int | None) -> None:
        """Let a new order or replace through only once the connection is ``ready``.

        ``hold``: wait, up to the client's deadline (then ``Timeout``, never sent
        late); ``refuse``: ``BrokerUnavailable`` at once, nothing sent or journaled.
        """
        if self.ready.is_set():
            return
        if self.deps.on_unavailable == "refuse":
            raise BrokerUnavailable(
                f"broker {self.name} is {self.state} and not in step yet; order not sent"
                " (on_unavailable = refuse): send it again shortly",
                broker=self.name,
            )
        if deadline_ns is None:
            await self.ready.wait()
            return
        left_s = (deadline_ns - self.deps.now_ns()) / 1e9
        with trio.move_on_after(max(0.0, left_s)):
            await self.ready.wait()
            return
        raise Timeout(
            f"broker {self.name} was still {self.state} at the order's deadline; not sent",
            broker=self.name,
        )

    async def _spend(self, kind: RequestClass, deadline_ns: int | None = None) -> None:
        """A command's token of the account's request budget (``RateLimited`` if not in time).

        Called inside ``charged_as``: the command's first request uses it.
        """
        budget = self.deps.budget
        if budget is None:
            return
        within = None if deadline_ns is None else (deadline_ns - self.deps.now_ns()) / 1e9
        await budget.prepay(kind, within_s=within)

    async def _announce_account_reset(self) -> None:
        """If the connector found the account's history restarted, publish its positions.

        Only a connector that can tell has ``account_reset`` (OANDA: transaction
        ids went back); done before the mailbox is served, so no order of ours
        fills between this report and the books taking it.
        """
        reason: str | None = getattr(self.connector, "account_reset", None)
        if not reason:
            return
        positions = await self.connector.positions()
        self.log.warning("account history restarted; books reset to the broker's positions",
                         reason=reason, positions=len(positions))  # fmt: skip
        self.deps.bus.publish(
            AccountReset(broker=self.name, positions=positions, reason=reason, ts=self.deps.now_ns())
        )

    async def _serve_failed(self, exc: Exception) -> None:
        """Fatal configuration: stay up answering with the error; no restart loop."""
        error = exc if isinstance(exc, UltError) else AuthFailed(str(exc), broker=self.deps.name)
        self.log.error("broker connection refused; not retrying", error=str(exc))
        self.ctx.mark_failed(exc)
        mailbox = self.ctx.mailbox
        while True:
            env = await mailbox.receive()
            self.ctx.fail(env, error)

    # -- updates ------------------------------------------------------------

    async def _on_update(self, update: OrderUpdate) -> None:
        await self._track(update.order, fill=update)

    async def _track(
        self, order: Order, *, fill: OrderUpdate | None = None, sent: Order | None = None
    ) -> Order:
        """Merge a broker report into our view; journal and publish if it changed.

        ``sent``: the journal's record of the order as this task sent it, when the
        report is its submit's answer (what the journal would be asked for).
        """
        coid = order.client_order_id
        store = self.deps.journal.now or await self.deps.journal.get()
        current = self.orders.get(coid) or sent
        if current is None:
            stored = await store.get(coid)
            current = self.orders.get(coid) or stored  # re-read: we may have yielded
        if current is None and coid not in self.submitting and order.id:
            twin = await self._leg_by_venue_id(order.id) or await self._unnamed_leg(order.id)
            if twin is not None:
                # A leg the venue reports under an id of its own (Alpaca's exits): ours.
                coid, current = twin.client_order_id, self.orders.get(twin.client_order_id) or twin
                order = msgspec.structs.replace(order, client_order_id=coid, leg=twin.leg)
            else:  # re-read: another report of it may have been merged while we looked
                current = self.orders.get(coid)
        if current is None and coid not in self.submitting:
            order = self._adopted(order)
        return self._merge(store, coid, current, order, fill)

    def _track_now(
        self, store: OrderStore, order: Order, sent: Order, fill: OrderUpdate | None = None
    ) -> Order:
        """``_track`` of a report of an order this task sent (``sent``): nothing to wait for."""
        coid = order.client_order_id
        return self._merge(store, coid, self.orders.get(coid) or sent, order, fill)

    def _merge(
        self,
        store: OrderStore,
        coid: str,
        current: Order | None,
        order: Order,
        fill: OrderUpdate | None,
    ) -> Order:
        """The rest of ``_track``, once ``current`` (our latest state of ``coid``) is known."""
        try:
            merged = apply_update(current, order)
        except IllegalTransition as exc:
            self.log.error("illegal order transition ignored", client_order_id=coid, error=str(exc))
            return current or order
        merged = self.arrivals.restamp(merged)  # a quote asked beside the send may have come
        execution = fill.fill if fill is not None else None
        if execution is not None and not self.fills_published.add(execution.fill_id):
            execution = None  # published already
        if execution is not None:
            store.record_fill(execution)  # with its fees, for cost reports
            self.arrivals.saw(execution)
        if merged is current:
            if execution is not None and merged is not None:
                # The state came first (in the submit reply); the execution still
                # belongs on the fills stream, once.
                self._publish(
                    OrderUpdate(
                        order=merged, fill=execution, ts=self.deps.now_ns(), fill_only=True
                    )
                )
            return merged
        # Updated before any await, so concurrent reports of one order merge in turn.
        self.orders.put(coid, merged)
        if coid == self._unanswered:
            # Its record's answer: the journal writes the two as one (``_begin_step``).
            self._unanswered = None
            store.record_answer(merged)
        else:
            # Not waited for: the order already left, and restart reconciliation asks the
            # broker about any order whose news a crash kept from the disk.
            store.record_soon(merged)
        # By position (``order_state`` checks the fields' order): no keywords matched.
        self._publish(_ORDER_UPDATE(merged, execution, self.deps.now_ns()))
        if merged.leg is not None and merged.leg.emulated:
            self._count_emulated(merged)
            self.nursery.start_soon(self._react, merged)
        return merged

    def _publish(self, event: OrderUpdate) -> None:
        """Publish an order's update; from a plain step whose asker writes its reply
        next, once that reply is written (risk's and positions' folds, the
        subscribers' queues: the client reads its reply meanwhile)."""
        if self._events_after_reply:
            self.after_reply.publish(self.deps.bus, event)
        else:
            self.deps.bus.publish(event)

    def _adopted(self, order: Order) -> Order:
        """An order this service never sent (no journal record, no submit running): adopt it.

        Our own orders are journaled before they leave, so a report of one the
        journal lacks is someone else's (or from a journal that lost its tail).
        """
        self.log.warning(
            "adopting an order found at the broker that the journal lacks",
            client_order_id=order.client_order_id,
            order_id=order.id,
            symbol=order.symbol,
            side=order.side,
            qty=str(order.qty),
            status=order.status,
        )
        return msgspec.structs.replace(order, origin="adopted")

    # -- reconciliation (the BrokerSide protocol) -----------------------------

    async def lookup(self, client_order_id: str) -> Order | None:
        """The broker's view of one order, ``None`` if it never arrived."""
        return await self._lookup(client_order_id)

    async def lookup_by_id(self, order_id: str) -> Order | None:
        """The broker's view of one order by its broker order id, ``None`` if unknown."""
        try:
            return await self.connector.get_order(order_id)
        except NotFound:
            return None

    async def open_orders(self) -> list[Order]:
        """The broker's open orders (a background query: it yields to orders)."""
        with charged_as("query"):
            await self._spend("query")
            return await self.connector.open_orders()

    async def settle(self, order: Order) -> Order:
        """Merge a broker report (or our final verdict) into the journal.

        A replacement the broker has ends the order it replaced (``replaced``),
        however its answer was lost, and whatever was concluded of the old order
        meanwhile (a change the venue held and applied late).
        """
        settled = await self._track(msgspec.structs.replace(order, outcome="definitive"))
        if settled.replaces and settled.id and settled.status != "rejected":
            old = await self._known(settled.replaces)
            if old is not None and not old.id:
                # Its own answer never reached the journal (news a kill -9 lost): the
                # venue's record of it first, so it does not end with its outcome unknown.
                old = await self._venue_record(old)
            if old is not None and old.status in OPEN_STATUSES:
                await self._track(
                    msgspec.structs.replace(
                        old,
                        status="replaced",
                        replaced_by=settled.client_order_id,
                        updated_at=self.deps.now_ns(),
                    )
                )
        return settled

    async def _venue_record(self, known: Order) -> Order:
        """``known`` merged with the venue's record of it, if the venue can say."""
        try:
            found = await self._lookup(known.client_order_id)
        except UltError:
            return known  # cannot ask now: what we know
        if found is None:
            return known
        return await self._track(msgspec.structs.replace(found, outcome="definitive"))

    async def resubmit(self, order: Order) -> Order:
        """Send a journaled order again, same client order id, through the normal path.

        Not one whose own submit crashed this actor: its client was answered with the
        crash, and sending it again would crash the actor again. It is settled as never
        sent (reconciliation found it missing at the broker) and refused.
        """
        coid = order.client_order_id
        if order.leg is not None and not order.leg.emulated:
            # A leg of a venue's own list exists only with its list: sent alone it would be
            # an order nothing cancels with its peer. Not found, it is settled, never resent
            # (one the venue holds under a name of its own is adopted by the sweep).
            reason = f"a leg of list {order.leg.list_id} not found at {self.name}"
            await self.settle(never_arrived(order, reason, self.deps.now_ns()))
            raise InvalidOrder(f"order {coid}: {reason}; not sent alone", broker=self.name)
        if order.replaces:
            # A replacement is a change of a working order, never a new one: not sent anew.
            reason = f"the replace of order {order.replaces} never reached {self.name}"
            await self.settle(never_arrived(order, reason, self.deps.now_ns()))
            raise InvalidOrder(f"replacement {coid}: {reason}", broker=self.name)
        if any(
            isinstance(m, PlaceOrder) and m.request.client_order_id == coid
            for m in self.ctx.mailbox.poison
        ):
            reason = f"its submit crashed actor {self.ctx.name}; not sent again"
            await self.settle(never_arrived(order, reason, self.deps.now_ns()))
            raise Internal(f"order {coid}: {reason}", broker=self.name)
        return await self._place(request_of(order))

    def in_flight(self, client_order_id: str) -> bool:
        return client_order_id in self.submitting

    def _log_summary(self, what: str, summary: ReconcileSummary, *, always: bool = False) -> None:
        if summary.unresolved or summary.conflicts or summary.lost:
            self.log.error(what, **summary.fields())
        elif summary.adopted:
            self.log.warning(what, **summary.fields())
        elif always or summary.checked:
            self.log.info(what, **summary.fields())

    async def _reconcile_forever(self) -> None:
        """Look up orders stuck in flight; sweep open orders now and then."""
        policy = self.deps.reconcile
        rounds = 0
        while True:
            await trio.sleep(policy.interval_s)
            rounds += 1
            store = await self.deps.journal.get()
            try:
                summary = await reconcile_stuck(
                    self,
                    store,
                    policy,
                    now_ns=self.deps.now_ns,
                    sweep=rounds % max(1, policy.sweep_every) == 0,
                )
            except UltError as exc:
                # Cannot ask now: unknown orders stay visible as unknown; try next round.
                self.log.warning("reconciliation pass failed", error=str(exc))
                continue
            self._log_summary("reconciled stuck orders", summary)
            if self.emulated_open:
                await self._sweep_lists()

    async def _sweep_lists(self) -> None:
        """Apply the list rules again to the open emulated legs: a reaction refused by the
        venue (a peer's cancel that met a 503) is tried again, not dropped."""
        try:
            await self._resume_lists()
        except UltError as exc:
            self.log.warning("emulated lists sweep failed", error=str(exc))

    # -- commands -----------------------------------------------------------

    async def _serve(
        self,
        lanes: tuple[int, ...],
        handle: Callable[[Envelope[BrokerCommand]], Awaitable[None]],
    ) -> None:
        """Hand every message of ``lanes`` to ``handle``, forever."""
        mailbox = self.ctx.mailbox
        while True:
            await handle(await mailbox.receive(lanes))

    def _add_order_worker(self) -> None:
        self.order_workers += 1
        self.nursery.start_soon(self._serve_orders)

    async def _serve_orders(self) -> None:
        """One of up to ``concurrency`` tasks that read the orders lane, each placing one
        order at a time.

        Each handles the order it takes itself (no task spawned per order, no
        dispatcher in between: a lone order wakes one task here), and the pool
        grows only when an order is taken with no other worker waiting, so an
        idle connection keeps one or two and a busy one reaches ``concurrency``.
        Orders beyond that wait in the mailbox, where a cancel-all refuses them.
        """
        mailbox = self.ctx.mailbox
        while True:
            self.idle_workers += 1
            try:
                env = await mailbox.receive((ORDER_LANE,))
            finally:
                self.idle_workers -= 1
            if not self.idle_workers and self.order_workers < self.deps.concurrency:
                self._add_order_worker()  # the next order need not wait for this one
            with self.ctx.handling(env):
                await self._dispatch_order(env)

    def _step_admitted(self, msg: BrokerCommand) -> bool:
        """Whether an order's own task may run its step now: a new order, the gate open,
        a worker idle (it would take it at once) and a worker slot free."""
        return (
            isinstance(msg, _PLACE_ORDER)
            and self._gate_open  # ``ready.is_set()`` without its call
            and self.idle_workers > 0
            and self.order_workers < self.deps.concurrency
        )

    def _step_entered(self) -> None:
        self.order_workers += 1

    def _step_left(self) -> None:
        self.order_workers -= 1

    async def _handle_command(self, env: Envelope[BrokerCommand]) -> None:
        if isinstance(env.msg, ReplaceOrder) and not self.ready.is_set():
            # Held at the gate without a command slot: held replaces never keep a cancel waiting.
            self.nursery.start_soon(self._gate_then_dispatch, env)
            return
        # Each in its own task (a few at once): a slow query does not hold up a cancel.
        await _acquire(self.commands, env)
        self.nursery.start_soon(self._dispatch_released, env, self.commands)

    async def _gate_then_dispatch(self, env: Envelope[BrokerCommand]) -> None:
        assert isinstance(env.msg, ReplaceOrder)
        try:
            await self._gate(env.msg.terms.deadline_ns)
        except UltError as exc:
            exc.broker = exc.broker or self.name
            self.ctx.fail(env, exc)
            return
        await _acquire(self.commands, env)
        await self._dispatch_released(env, self.commands)

    async def _dispatch_released(
        self, env: Envelope[BrokerCommand], limiter: trio.CapacityLimiter
    ) -> None:
        try:
            with self.ctx.handling(env):  # a crash here is this request's, not its neighbours'
                await self._dispatch(env)
        finally:
            limiter.release_on_behalf_of(env)

    async def _dispatch(self, env: Envelope[BrokerCommand]) -> None:
        if self.deps.budget is None:  # nothing reads the class then
            await self._dispatch_charged(env)
            return
        # Every request the command makes is charged at its class (``RateBudget.charge``).
        with charged_as(_request_class(env.msg)):
            await self._dispatch_charged(env)

    async def _dispatch_charged(self, env: Envelope[BrokerCommand]) -> None:
        msg = env.msg
        result: object
        try:
            match msg:
                case PlaceOrder(request=request):
                    if not self.ready.is_set():  # the gate's own test, without its call
                        await self._gate(request.deadline_ns)
                    if self.deps.budget is not None:
                        await self._spend("order", request.deadline_ns)
                    result = await self._place(request, validated=True)  # by the router
                case ReplaceOrder():
                    await self._gate(msg.terms.deadline_ns)
                    await self._spend("replace", msg.terms.deadline_ns)
                    result = await self._replace(msg)
                case PlaceList(request=order_list):
                    await self._gate(None)
                    await self._spend("order")
                    legs = await self._place_list(order_list)
                    for leg in legs:
                        if leg.leg is not None and leg.leg.emulated:
                            self._count_emulated(leg)
                    result = legs
                case CloseOut():
                    side = CloseOutSide(self.connector, self._cancel, self._track, self._place)
                    result = await close_out(side, msg)
                case CancelOrder(order_id=order_id):
                    await self._spend("cancel")
                    result = await self._cancel(order_id)
                case CancelAll(reason=reason):
                    result = await self._cancel_all(reason)
                case QueryOrder() | QueryOpenOrders() | QueryPositions() | QueryAccount():
                    await self._spend("query")
                    result = await self._query(msg)
                case _:
                    raise Internal(f"broker actor got an unknown command {type(msg).__name__}")
        except UltError as exc:
            self._failed(env, exc)
        else:
            self.ctx.reply(env, result)

    def _failed(self, env: Envelope[BrokerCommand], exc: UltError) -> None:
        """Answer ``env`` with ``exc``, naming this broker."""
        if exc.broker is None:
            exc.broker = self.deps.name
        if isinstance(exc, RateLimited) and exc.retry_after and self.deps.budget is not None:
            # The venue throttled us anyway: the whole account backs off, not one request.
            self.deps.budget.pause(exc.retry_after)
        self.ctx.fail(env, exc)

    async def _query(self, msg: BrokerCommand) -> object:
        match msg:
            case QueryOrder(order_id=order_id):
                return await self._find(order_id)
            case QueryOpenOrders():
                return await self.connector.open_orders()
            case QueryPositions():
                return await self.connector.positions()
            case _:
                return await self.connector.account()

    async def _place(
        self, request: OrderRequest, leg: Leg | None = None, *, validated: bool = False
    ) -> Order:
        """Journal ``request`` and send it; ``validated``: the router's ``validate_order``
        passed it (a venue that checks orders itself need not again)."""
        coid = request.client_order_id
        assert coid is not None
        # One submit per client order id at a time: a second waits, then finds the first.
        if coid in self.submitting:
            await self._one_at_a_time(coid)
        else:  # none running (every new order): counted without ``_one_at_a_time``'s frame
            self.submitting[coid] = None
        try:
            placed = await self._place_once(request, coid, leg, validated)
            store = self.deps.journal.now or await self.deps.journal.get()
            await store.durable(coid)  # no ack before its fsync
            return placed
        finally:
            self._over(coid)

    async def _place_list(self, request: OrderListRequest) -> list[Order]:
        """Place an order list. Every leg of a venue's own list counts as being submitted
        until the list's answer is merged: reconciliation must not rule a leg never
        arrived while the list may still land, and a list asked again waits for this."""
        if not is_native(self.connector, request.contingency):
            # Each leg that goes out goes through ``_place``, which marks it then.
            return await place_list(await self._list_side(), request)
        marked: list[str] = []
        try:
            for leg in request.legs:
                assert leg.client_order_id is not None, "the gateway assigns client order ids"
                await self._one_at_a_time(leg.client_order_id)
                marked.append(leg.client_order_id)
            return await place_list(await self._list_side(), request)
        finally:
            for coid in marked:
                self._over(coid)

    async def _one_at_a_time(self, coid: str) -> None:
        """Wait until no submit or replace of ``coid`` runs, then count one running."""
        while coid in self.submitting:
            over = self.submitting[coid]
            if over is None:
                over = self.submitting[coid] = trio.Event()
            await over.wait()
        self.submitting[coid] = None

    def _over(self, coid: str) -> None:
        """The submit or replace of ``coid`` is over: wake any waiting for it."""
        # Read, then deleted: compiled, ``pop`` is a method call by name (~300 instructions).
        submitting = self.submitting
        over = submitting[coid]
        del submitting[coid]
        if over is not None:
            over.set()

    async def _place_once(
        self, request: OrderRequest, coid: str, leg: Leg | None, validated: bool
    ) -> Order:
        store = self.deps.journal.now or await self.deps.journal.get()
        known = await store.get(coid)
        held = known if known is not None and known.status == "held" else None
        if held is not None:
            known = None  # a leg the service held until now: released, it goes out as new
        if known is not None:
            # It may already be at the broker: find out before sending again.
            found = await self._lookup_patiently(known.client_order_id)
            if found is None and known.status == "pending_new":
                # Sent moments ago (then a crash or a second submit): it may still land.
                wait_s = self._grace_left(known)
                if wait_s > 0:
                    await trio.sleep(wait_s)
                    found = await self._lookup_patiently(known.client_order_id)
            if found is not None:
                return await self._track(found)
            if known.status != "pending_new":
                # Settled already (e.g. rejected as never arrived): never send it again.
                return known
            known = await self._stamp_resend(known)
            if known.status != "pending_new":
                return known  # the broker reported it meanwhile
        if known is None:
            now = self.deps.now_ns()
            arrival = self.arrivals.arrival(request.symbol)
            known = _pending(request, self.deps.name, now, arrival)
            if leg is not None or held is not None:
                known = msgspec.structs.replace(known, leg=leg or (held and held.leg))
            # On disk before it leaves; with ``full`` its fsync may end after (``_place``).
            await store.record(known, event="submit", fsync_by_ack=True)
            self._quote_beside(known)
        return await self._send(request, coid, known, validated)

    def _quote_beside(self, order: Order) -> None:
        """Ask the venue for a new order's quote beside its send, if it wants one."""
        if self.arrivals.wants_quote(order):
            self.nursery.start_soon(self._fetch_arrival, order)

    async def _send(
        self,
        request: OrderRequest,
        coid: str,
        known: Order,
        validated: bool,
        failed: UltError | None = None,
        sent_at: float = 0.0,
    ) -> Order:
        """Send ``known`` (journaled) until the venue answers or refuses it; track the answer.

        ``failed``: a first send made already (``_begin_step``'s, at ``sent_at``) failed so.
        """
        attempt = 0
        while True:
            if failed is None:
                late = self._too_late(request)
                if late is not None:
                    # The client stopped waiting: sending now would place an order it was
                    # told has an unknown outcome. Settle what an earlier attempt did instead.
                    return await self._give_up(known, late)
                sent_at = trio.current_time()
                try:
                    if validated and self._mark_validated is not None:
                        self._mark_validated(request)
                    if self._with_news is not None:
                        order, news = await self._with_news.submit_answer(request)
                    else:
                        order, news = await self.connector.submit(request), ()
                except UltError as exc:
                    failed = exc
                else:
                    store = self.deps.journal.now
                    if store is None:
                        return await self._take_answer(order, news, known)
                    return self._answered(store, order, news, known)
            last, failed = failed, None
            if isinstance(last, LeaseExpired):
                raise last  # not sent, never to be from here: the new active reconciles it
            if isinstance(last, DuplicateOrder):
                found = await self._lookup(coid)
                if found is None:
                    raise last
                return await self._track(found)
            if isinstance(last, _REFUSALS):
                # A definitive refusal: the order is final, the caller gets the error.
                await self._track(refused(known, last, self.deps.now_ns()))
                raise last
            # Anything else (lost, unreadable or unexpected answer, throttled) leaves
            # the outcome unknown: find out before sending again or giving an answer.
            policy = self.deps.retry
            # Never send again before knowing whether that attempt landed; a failed
            # lookup is one more failed attempt.
            while True:
                attempt += 1
                if not policy.enabled or attempt > policy.max_retries:
                    return await self._give_up(known, last)
                delay = policy.delay(attempt, self.deps.rng, last.retry_after)
                grace = self.deps.reconcile.settle_grace_s
                if trio.current_time() - sent_at >= grace:
                    # A send that hung this long may be a timeout with the request
                    # still being processed: give it the grace before asking.
                    delay = max(delay, grace)
                self.log.warning(
                    "submit failed; retrying",
                    client_order_id=coid,
                    error=last.code,
                    attempt=attempt,
                    delay_s=round(delay, 3),
                )
                await trio.sleep(delay)
                try:
                    found = await self._lookup(coid)
                except UltError as lookup_failed:
                    last = lookup_failed
                    continue
                break
            if found is not None:
                return await self._track(found)
            stamped = await self._stamp_resend(known)
            if stamped.status != "pending_new":
                return stamped  # the broker reported it meanwhile
            known = stamped

    async def _take_answer(
        self, order: Order, news: tuple[OrderUpdate, ...], sent: Order
    ) -> Order:
        """``_answered`` once the journal is open again (the news go to the stream, which
        delivers them, if the step is cancelled meanwhile)."""
        try:
            store = await self.deps.journal.get()
        except BaseException:
            self._redeliver(news)
            raise
        return self._answered(store, order, news, sent)

    def _redeliver(self, news: tuple[OrderUpdate, ...]) -> None:
        """Put ``news`` of a submit's answer on the update stream: they were not tracked."""
        if news:
            assert self._with_news is not None
            self._with_news.redeliver(news)

    def _answered(
        self, store: OrderStore, order: Order, news: tuple[OrderUpdate, ...], sent: Order
    ) -> Order:
        """Track a submit's answer ``order`` (with its ``news``, ``AnswersWithNews``) to the
        send of ``sent``, the journal's record of it (nothing to wait for)."""
        if news:
            return self._track_answer(store, order, news, sent)
        return self._track_now(store, _definitive(order), sent)

    def _track_answer(
        self, store: OrderStore, order: Order, news: tuple[OrderUpdate, ...], sent: Order
    ) -> Order:
        """Track a submit's answer with the venue's news of the call (``AnswersWithNews``).

        An order filled within the call is one update: its state with its fill (one
        journal record, one publish, one fold in risk and positions), not the answer
        and then the fill from the stream. Should the news not all get in (a fault
        tracking one, or the journal not open: ``_take_answer``), the stream delivers
        them: each applies once.
        """
        answer = _definitive(order)
        last = news[-1]
        try:
            if len(news) > 1:  # (one piece of news, the usual case: no slice to build)
                for update in news[:-1]:
                    self._track_now(store, update.order, sent, update)
            if last.order is order or last.order == order:
                return self._track_now(store, answer, sent, last)
            self._track_now(store, last.order, sent, last)  # the answer is later
            return self._track_now(store, answer, sent)
        except BaseException:
            self._redeliver(news)
            raise

    # -- a new order's step begun by a plain call ------------------------------

    def _begin_step(self, env: Envelope[BrokerCommand]) -> Awaitable[None] | None:
        """A new order's step (``StepEntry``'s ``begin``) as far as nothing in it waits:
        ``None`` once answered, else the rest, to await in the step's scope.

        Begun plainly when the journal surely has no record of the order and appends
        one at once (``records_now``): journaled, sent (``answer_now``) and tracked as
        ``_dispatch_charged`` does, without a wait. Otherwise the whole step is the
        rest; a record or a send that has to wait after all leaves its rest to
        ``_place_rest``.
        """
        msg = env.msg
        store = self.deps.journal.now
        if not isinstance(msg, _PLACE_ORDER) or store is None or not store.records_now(True):
            return self._dispatch_order(env)
        request = msg.request
        coid = request.client_order_id
        assert coid is not None
        if coid in self.submitting or not store.lacks(coid) or self._too_late(request) is not None:
            return self._dispatch_order(env)
        at_once = self._at_once
        assert at_once is not None  # only then is a step begun here
        self.submitting[coid] = None
        placed: Order | None = None
        rest: Awaitable[Order] | None = None
        acks_wait = False
        try:
            arrival = self.arrivals.arrival(request.symbol)
            known = _pending(request, self.name, self.deps.now_ns(), arrival)
            # On disk before it leaves; its answer, known before anything else runs, is
            # what the file gets of it (``record_answer``): one row, not two.
            # With ``full`` its fdatasync runs meanwhile: the ack waits for it (``durable``).
            written = store.record_now(
                known, event="submit", fsync_by_ack=True, answer_follows=True
            )
            if written is not None:  # its append failed here: the journal's writer retries it
                rest = self._send_written(written, request, coid, known)
            else:
                acks_wait = store.acks_wait()
                self._unanswered = coid
                try:
                    self._quote_beside(known)
                    try:
                        order, news = at_once.answer_now(request, validated=True)  # by the router
                    except UltError as exc:
                        # A plain call, over at once: it failed when it was sent (the clock
                        # is read only then, as nothing else needs it).
                        rest = self._send(request, coid, known, True, exc, trio.current_time())
                    else:
                        # No wait from here to the reply: its events may wait for its write.
                        # (One for its fsync: they go out meanwhile, as the step's would.)
                        self._events_after_reply = not acks_wait and self.after_reply.holds()
                        try:
                            placed = self._answered(store, order, news, known)
                        finally:
                            self._events_after_reply = False
                finally:
                    self._answer_if_unanswered(store, known)
        except BaseException as exc:
            self._over(coid)
            if not isinstance(exc, UltError):
                raise
            self._failed(env, exc)
            return None
        if rest is None and acks_wait:
            # Its fdatasync may end while the loop has nothing else to do: acked right here.
            try:
                acks_wait = not store.durable_now(coid)
            except UltError as exc:
                self._over(coid)
                self._failed(env, exc)
                return None
        if rest is not None or acks_wait:
            return self._place_rest(env, coid, rest, placed)
        self._over(coid)
        self.ctx.reply(env, placed)
        return None

    def _answer_if_unanswered(self, store: OrderStore, sent: Order) -> None:
        """A plain step's end: if no merge answered its record (``_unanswered``), the record
        as it was made (``sent``) is its answer."""
        # A method of its own: read after ``_begin_step`` set it to a ``str``, mypyc would
        # take the attribute for one there (narrowed) and fail on the ``None`` a merge left.
        if self._unanswered is not None:
            self._unanswered = None
            store.record_answer(sent)

    async def _send_written(
        self, written: Awaitable[None], request: OrderRequest, coid: str, known: Order
    ) -> Order:
        """``_begin_step``'s order once the journal's writer has its record (``written``)."""
        await written
        self._quote_beside(known)
        return await self._send(request, coid, known, True)

    async def _place_rest(
        self,
        env: Envelope[BrokerCommand],
        coid: str,
        rest: Awaitable[Order] | None,
        placed: Order | None = None,
    ) -> None:
        """The rest of a step ``_begin_step`` began (``rest``; None: placed already, its
        record's fdatasync still running with ``full``), ended as ``_place`` and
        ``_dispatch_charged`` end a new order's: the ack once the record is durable."""
        try:
            try:
                if rest is not None:
                    placed = await rest
                await (await self.deps.journal.get()).durable(coid)
            finally:
                self._over(coid)
        except UltError as exc:
            self._failed(env, exc)
        else:
            self.ctx.reply(env, placed)

    async def _fetch_arrival(self, order: Order) -> None:
        """Ask the venue for ``order``'s quote, beside its send; its record takes it."""
        try:
            await self.arrivals.fetch(order)
        except UltError as exc:
            self.log.info(
                "no venue quote for an arrival price", symbol=order.symbol, error=exc.code
            )
            return
        store = await self.deps.journal.get()
        # No await from here: a newer state of the order must not be overwritten.
        current = self.orders.get(order.client_order_id)
        if current is None:
            return  # not tracked yet: its first tracked state takes the quote (``_track``)
        stamped = self.arrivals.restamp(current)
        if stamped is not current:
            self.orders.put(order.client_order_id, stamped)
            store.record_soon(stamped, event="arrival")

    async def _replace_side(self) -> ReplaceSide:
        return ReplaceSide(
            name=self.name,
            connector=self.connector,
            store=await self.deps.journal.get(),
            known=self._known,
            track=self._track,
            lookup=self._lookup_patiently,
            now_ns=self.deps.now_ns,
            settle_grace_s=self.deps.reconcile.settle_grace_s,
        )

    async def _list_side(self) -> ListSide:
        side = await self._replace_side()
        fields = {f.name: getattr(side, f.name) for f in dataclasses.fields(side)}
        return ListSide(
            **fields,
            place=self._place,
            cancel=self._cancel,
            replace=self._replace,
            lock=self.list_lock,
        )

    async def _resume_lists(self) -> None:
        """After a start: act on what happened to emulated lists while we were away."""
        store = await self.deps.journal.get()
        open_orders = await store.non_terminal(self.name)
        for order in open_orders:
            if order.leg is not None and order.leg.emulated:
                self._count_emulated(order)
        # A peer's cancel is as urgent as a client's: charged as one.
        with charged_as("cancel"):
            async with self.list_lock:
                await resume(await self._list_side(), open_orders)

    def _count_emulated(self, order: Order) -> None:
        before = len(self.emulated_open)
        if order.status in TERMINAL_STATUSES:
            self.emulated_open.discard(order.client_order_id)
        else:
            self.emulated_open.add(order.client_order_id)
        if len(self.emulated_open) != before:
            self.deps.on_emulated_legs(self.name, len(self.emulated_open))

    async def _react(self, order: Order) -> None:
        """An emulated list's leg changed: act on it, one list change at a time."""
        # A failure here crashes the actor like any other: its restart resumes the lists.
        with charged_as("cancel"):  # a peer's cancel is as urgent as a client's
            async with self.list_lock:
                await react(await self._list_side(), order)

    async def _replace(self, msg: ReplaceOrder) -> Order:
        coid = msg.change.client_order_id
        assert coid is not None
        # One replace per replacement id at a time, as for submits: a second finds the first.
        await self._one_at_a_time(coid)
        try:
            late = self._too_late(msg.terms)
            if late is not None and await (await self.deps.journal.get()).get(coid) is None:
                raise late
            # Refused before its intent is journaled: nothing of it was or will be sent here.
            check_fence(self.connector, f"replace of {msg.order.client_order_id}")
            side = await self._replace_side()
            return await replace_order(side, msg)
        finally:
            self._over(coid)

    def _too_late(self, request: OrderRequest) -> Timeout | None:
        """The refusal for an order whose client's deadline (``deadline_ns``) has passed."""
        if request.deadline_ns is None:
            return None
        late_ms = (self.deps.now_ns() - request.deadline_ns) / 1e6
        if late_ms < 0:
            return None
        return Timeout(
            f"order {request.client_order_id}: its client's deadline passed {late_ms:.0f} ms"
            f" ago; not sending it to broker {self.deps.name}",
            broker=self.deps.name,
        )

    def _grace_left(self, known: Order) -> float:
        """Seconds until the last send of ``known`` is ``settle_grace_s`` old."""
        since_s = (self.deps.now_ns() - known.updated_at) / 1e9
        return max(0.0, self.deps.reconcile.settle_grace_s - since_s)

    async def _stamp_resend(self, known: Order) -> Order:
        """Journal that ``known`` is sent again (its time is the last send's), unless the
        broker reported it meanwhile, in which case that report is returned."""
        coid = known.client_order_id
        store = await self.deps.journal.get()
        current = self.orders.get(coid) or await store.get(coid)
        if current is not None and current.status != "pending_new":
            return current
        stamped = msgspec.structs.replace(known, updated_at=self.deps.now_ns())
        await store.record(stamped, event="resend")
        return stamped

    async def _give_up(self, known: Order, exc: UltError) -> Order:
        """Out of retries. Settle what we can: found, never arrived, or unknown."""
        coid = known.client_order_id
        try:
            found = await self._lookup(coid)
            if found is None and not isinstance(exc, RateLimited):
                # The last attempt may still be on its way to the broker: ask again later.
                await trio.sleep(self.deps.reconcile.settle_grace_s)
                found = await self._lookup(coid)
        except UltError:
            # Cannot even ask: the outcome stays unknown until reconciliation.
            await self._track(msgspec.structs.replace(known, outcome="unknown"))
            raise BrokerUnavailable(
                f"broker {self.deps.name} unavailable; order {coid} outcome unknown,"
                f" it will be reconciled when the broker answers (check: ult order {coid})",
                broker=self.deps.name,
            ) from exc
        if found is not None:
            return await self._track(found)
        await self._track(refused(known, exc, self.deps.now_ns()))
        raise exc

    async def _lookup_patiently(self, coid: str) -> Order | None:
        """Look up with the submit retry policy; still failing: the outcome is unknown."""
        policy = self.deps.retry
        attempt = 0
        while True:
            try:
                return await self._lookup(coid)
            except (BrokerUnavailable, RateLimited) as exc:
                attempt += 1
                if not policy.enabled or attempt > policy.max_retries:
                    raise BrokerUnavailable(
                        f"broker {self.deps.name} cannot say whether it has order {coid}"
                        f" ({exc.code}); its outcome stays unknown until reconciled"
                        f" (check: ult order {coid})",
                        broker=self.deps.name,
                    ) from exc
                await trio.sleep(policy.delay(attempt, self.deps.rng, exc.retry_after))

    async def _lookup(self, client_order_id: str) -> Order | None:
        try:
            return await self.connector.get_order_by_client_id(client_order_id)
        except NotFound:
            pass
        # A leg of a native list may be known at the venue only by its venue id (Alpaca
        # names a bracket's exits itself): ask by that id, and answer under ours. With
        # no venue id yet (the list's answer was lost), the venue finds it by its role.
        store = await self.deps.journal.get()
        known = self.orders.get(client_order_id) or await store.get(client_order_id)
        if known is None or known.leg is None or known.leg.emulated:
            return None
        try:
            if known.id:
                found = await self.connector.get_order(known.id)
            elif isinstance(self.connector, SupportsLegLookup):
                found = await self.connector.find_leg(known)
            else:
                return None
        except NotFound:
            return None
        return msgspec.structs.replace(found, client_order_id=client_order_id, leg=known.leg)

    async def _leg_by_venue_id(self, order_id: str) -> Order | None:
        """The one journaled leg of a native list with this venue order id, if any."""
        store = await self.deps.journal.get()
        mine = [
            o
            for o in await store.find_by_order_id(order_id)
            if o.broker == self.name and o.leg is not None and not o.leg.emulated
        ]
        return mine[0] if len(mine) == 1 else None

    async def _unnamed_leg(self, order_id: str) -> Order | None:
        """The journaled native leg the venue knows as ``order_id`` though no answer named it.

        A list whose answer was lost leaves legs with no venue id until
        reconciliation finds them; a report of one may come first (after a
        restart, on the live stream). Rare: looked for only before adopting.
        """
        if not isinstance(self.connector, SupportsLegLookup):
            return None
        store = await self.deps.journal.get()
        for record in await store.non_terminal(self.name):
            if record.id or record.leg is None or record.leg.emulated:
                continue
            try:
                found = await self.connector.find_leg(record)
            except NotFound:
                continue
            if found.id == order_id:
                return record
        return None

    async def _find(self, order_id: str) -> Order:
        try:
            return await self.connector.get_order(order_id)
        except NotFound:
            return await self.connector.get_order_by_client_id(order_id)

    async def _cancel(self, order_id: str) -> Order:
        """Cancel by broker or client order id; ``AlreadyFinal`` (naming the state) if final.

        The state we know is asked first; then the broker's own "too late"
        (each connector raises ``AlreadyFinal``), or an answer showing the order
        ended otherwise meanwhile (filled while we asked), says the same.
        """
        known = await self._known(order_id)
        if known is not None and known.status in TERMINAL_STATUSES and not is_local_verdict(known):
            raise already_final(known)
        if known is not None and known.status == "held" and known.leg and known.leg.emulated:
            # Held here, never sent: canceled here.
            return await self._track(
                msgspec.structs.replace(
                    known, status="canceled", outcome="definitive", updated_at=self.deps.now_ns()
                )
            )
        try:
            order = await self.connector.cancel(order_id)
        except NotFound:
            try:
                by_client = await self.connector.get_order_by_client_id(order_id)
            except NotFound:
                # Name what was asked for: ``order_id`` may be either kind of id.
                raise NotFound(
                    f"{self.name} has no order {order_id!r} (neither by order id nor by"
                    " client order id)",
                    broker=self.name,
                ) from None
            order = await self.connector.cancel(by_client.id)
        tracked = await self._track(order)
        if tracked.status in TERMINAL_STATUSES and tracked.status != "canceled":
            raise already_final(tracked)
        return tracked

    async def _known(self, order_id: str) -> Order | None:
        """Our latest state of this broker's order named by client or broker order id."""
        store = await self.deps.journal.get()
        known = self.orders.get(order_id) or await store.get(order_id)
        if known is None:
            mine = [o for o in await store.find_by_order_id(order_id) if o.broker == self.name]
            known = mine[0] if len(mine) == 1 else None
        if known is None or known.broker != self.name:
            return None
        return self.orders.get(known.client_order_id) or known

    async def _refuse_queued_orders(self, reason: str) -> None:
        """Refuse every new order still queued: none of them has left."""
        queued: list[Envelope[BrokerCommand]] = []
        while True:
            try:
                queued.append(self.ctx.mailbox.receive_nowait((ORDER_LANE,)))
            except trio.WouldBlock:
                break
        # All at once, so their journal writes share group commits.
        async with trio.open_nursery() as nursery:
            for env in queued:
                nursery.start_soon(self._refuse_unsent, env, reason)
        if queued:
            self.log.warning("refused queued orders", reason=reason, count=len(queued))

    async def _refuse_unsent(self, env: Envelope[BrokerCommand], reason: str) -> None:
        """Answer a new order that never left with a refusal; journal and publish it."""
        if isinstance(env.msg, PlaceList):
            self.ctx.fail(
                env,
                RiskRejected(
                    f"trading halted ({reason}) before order list {env.msg.request.list_id}"
                    " was sent; none of it was placed",
                    limit="trading_state",
                    broker=self.name,
                ),
            )
            return
        assert isinstance(env.msg, PlaceOrder)
        request = env.msg.request
        coid = request.client_order_id
        assert coid is not None
        error = RiskRejected(
            f"trading halted ({reason}) before order {coid} was sent; it was not placed",
            limit="trading_state",
            broker=self.name,
        )
        with self.ctx.handling(env):
            store = await self.deps.journal.get()
            if await store.get(coid) is None:  # a resend of a known order keeps its record
                never_sent = msgspec.structs.replace(
                    _pending(request, self.name, self.deps.now_ns()),
                    status="rejected",
                    reject_reason=f"{error.code}: {error.message}",
                    outcome="definitive",
                )
                await self._track(never_sent)
        self.ctx.fail(env, error)

    async def _cancel_all(self, reason: str) -> int:
        # Fenced: every cancel would be refused, so neither read the open orders nor start.
        check_fence(self.connector, "cancel of all open orders")
        # It jumped the queue: orders queued before it must not leave after it.
        await self._refuse_queued_orders(reason)
        canceled = 0
        for order in await self.connector.open_orders():
            try:
                await self._cancel(order.id)
                canceled += 1
            except UltError as exc:
                self.log.warning(
                    "cancel failed", client_order_id=order.client_order_id, error=str(exc)
                )
        self.log.warning("canceled all open orders", reason=reason, count=canceled)
        return canceled


async def _acquire(limiter: trio.CapacityLimiter, env: Envelope[BrokerCommand]) -> None:
    """A slot of ``limiter`` for ``env``; a free one without a scheduler round, so a
    burst of orders is handed out in one wake-up of the task serving the lane."""
    try:
        limiter.acquire_on_behalf_of_nowait(env)
    except trio.WouldBlock:
        await limiter.acquire_on_behalf_of(env)
    else:
        await trio.lowlevel.checkpoint_if_cancelled()


_MAX_TRACKED = 20_000
_COMMANDS_AT_ONCE = 8
# Per order: ``Final``s, C statics once compiled, where a name imported from a module that
# is not compiled is looked up in this module's dict at each use.
_PLACE_ORDER: Final = PlaceOrder
_ORDER_UPDATE: Final = OrderUpdate

#: The broker actor's mailbox lanes, read in this order: cancels (and the kill
#: switch's cancel-all), then queries (orders, positions, account), then new orders.
CANCEL_LANE, QUERY_LANE, ORDER_LANE = 0, 1, 2


def broker_lane(msg: BrokerCommand) -> int:
    """The mailbox lane of a broker command."""
    match msg:
        case PlaceOrder() | PlaceList():
            return ORDER_LANE
        case CancelOrder() | CancelAll() | ReplaceOrder():
            # A replace is as urgent as a cancel (a chased price, a stop moved): it
            # does not wait behind new orders.
            return CANCEL_LANE
        case _:
            return QUERY_LANE


def _request_class(msg: BrokerCommand) -> RequestClass:
    """The budget class of a command's requests (closing out is as urgent as a cancel)."""
    match msg:
        case PlaceOrder() | PlaceList():
            return "order"
        case ReplaceOrder():
            return "replace"
        case CancelOrder() | CancelAll() | CloseOut():
            return "cancel"
        case _:
            return "query"


def broker_mailbox(capacity: int) -> Mailbox[BrokerCommand]:
    """A broker actor's mailbox: three lanes of ``capacity`` each (see ``broker_lane``).

    A position query or a cancel is read before queued new orders, and a lane
    full of orders does not block the senders of the others (issue: a position
    report timing out behind thousands of orders put the broker in ``reducing``).
    """
    return Mailbox(capacity, lanes=3, lane_of=broker_lane)


#: Answers to a submit that say the broker refused the order: nothing was placed.
#: Every other error leaves its outcome unknown until the order is looked up.
_REFUSALS = (InvalidOrder, InsufficientFunds, AuthFailed, NotFound)


def _definitive(answer: Order) -> Order:
    """A broker's answer to a submit: its outcome is known (the venue's own object when
    it says so already, as the paper venue's do)."""
    if answer.outcome == "definitive":
        return answer
    return msgspec.structs.replace(answer, outcome="definitive")


def _pending(
    request: OrderRequest,
    broker: str,
    now: int,
    arrival: tuple[Decimal, ArrivalSource] | None = None,
) -> Order:
    """The journal's first record of an order: not sent yet, so its outcome is unknown;
    stamped with its ``arrival`` price, if one is known (``ArrivalPrices.arrival``)."""
    # Unpacked apart from the ``None`` case: compiled, unpacking the conditional's value
    # (a union) goes through the generic iterator protocol.
    price: Decimal | None = None
    source: ArrivalSource | None = None
    if arrival is not None:
        price, source = arrival
    return order_from_request(
        request,
        broker=broker,
        order_id="",
        status="pending_new",
        now_ns=now,
        outcome="unknown",
        arrival_price=price,
        arrival_source=source,
    )
