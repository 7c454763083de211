"""The IB connector: order semantics over one TWS API socket, spoken natively on trio.

The socket itself (handshake, paced sending, reading, requests answered by
lists) is ``session.IbSession``; this module is what the messages mean.
Life of a connection: ``connect`` opens the session (handshake, managed
accounts, next valid order id) and takes stock of open orders and executions:
today's at the first connect; on a reconnect, those the earlier incarnations
heard (kept in the shared ``ExecutionLedger``) plus, from TWS, only those
since the gap (``reqExecutions`` filtered from the last message heard while
in step, less ``_FILTER_MARGIN_NS``), or the day's again when an open
order's status shows more filled than every execution known (one older than
the filter never reached us). ``stream_updates`` then owns the socket's read
side: every message goes through ``_on_message``, which updates the orders we track,
completes pending requests and yields order updates for the sink. Requests
(open orders, positions, account...) send a message and wait for the reader
to collect the answer; before ``stream_updates`` runs they read the socket
themselves.

Connectivity (issue 18): TWS error 1100 means TWS lost IB while our socket
stays up; new orders are refused with ``BrokerUnavailable`` until 1101/1102
(``degraded``; cancels still go: TWS keeps them for the restore), after which
open orders, executions since the loss (``reqExecutions`` with a time filter)
and completed orders for what disappeared are resynchronised, each fill once.
A closed socket ends ``stream_updates`` with ``BrokerUnavailable``, and so
does a silent one: after ``stale_after_s`` without a message the connector
probes with ``reqCurrentTime``, and no answer within ``probe_timeout_s`` is a
dropped stream. The broker actor then crashes and its supervisor reconnects
(with backoff); the next incarnation's ``stream_updates`` first delivers every
execution that no incarnation delivered (the shared ``ExecutionLedger``), in
order, with the orders as they now stand, and only then reports the stream
started (the broker actor opens its gate after that). An execution counts as
delivered only once the sink has returned for it (the broker actor has handed
it to the journal, risk and positions): one whose delivery crashed is
delivered again by the next incarnation, never lost. An order status whose
filled quantity runs ahead of the executions heard (an execution TWS never pushed)
asks for the executions at once. Every message sent is paced under TWS's 50
a second and, given the account's ``RateBudget``, counted against it.
Error 326 (client id in use) is a ``ConfigError``: another program holds the
id, and retrying would only loop.

Replace is TWS's modify (PLACE_ORDER again under the order id, the new client
order id as its orderRef); order lists are TWS's own (``lists.py``): brackets
and OTOs by parent id and transmit, OCOs by OCA group.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import structlog
import trio

from ult_actors.brokers.base import UpdateSink
from ult_actors.brokers.budget import RateBudget
from ult_actors.brokers.ib import errors as ib_errors
from ult_actors.brokers.ib import wire
from ult_actors.brokers.ib.ledger import ExecutionLedger
from ult_actors.brokers.ib.lists import list_legs, list_orders
from ult_actors.brokers.ib.mapping import same_request, to_ib
from ult_actors.brokers.ib.order_ids import OrderIdSequence
from ult_actors.brokers.ib.orders import OrderTracker, TrackedOrder
from ult_actors.brokers.ib.session import ClientIdInUse, IbSession
from ult_actors.brokers.ib.settings import LIVE_PORTS, IbSettings
from ult_actors.errors import (
    BrokerUnavailable,
    ConfigError,
    DuplicateOrder,
    InvalidOrder,
    NotFound,
)
from ult_actors.messages import (
    OPEN_STATUSES,
    TERMINAL_STATUSES,
    Account,
    Contingency,
    Leg,
    Order,
    OrderListRequest,
    OrderRequest,
    OrderUpdate,
    Position,
    ReplaceRequest,
)
from ult_actors.order_state import already_final, not_replaceable, order_from_request
from ult_actors.validation import replaced_terms

_SUMMARY_TAGS = "TotalCashValue,BuyingPower,NetLiquidation"
#: Executions are asked for from this long before a gap began (TWS's filter reads
#: whole seconds of TWS's clock, which may differ from ours by some seconds): an
#: execution just before the last message heard is asked for again, and dropped by
#: its id; one that is older and was never heard shows as an order status ahead of
#: its executions, and the day's are asked for.
_FILTER_MARGIN_NS = 60 * 10**9
#: TWS may send an order's status before its execution: how long the execution
#: has to follow before it counts as never pushed (and is asked for).
_EXECUTION_GRACE_S = 0.25
_BEHIND = "executions behind order status"


class IbConnector:
    """A TWS / IB Gateway API connection; see the module docstring."""

    #: TWS carries every order list itself.
    native_contingencies: frozenset[Contingency] = frozenset({"bracket", "oco", "oto"})
    #: TWS keeps a modify it cannot pass on (it has lost IB) unanswered and applies it
    #: on the restore: an unanswered modify not found yet is not refused.
    holds_changes = True

    def __init__(
        self,
        name: str,
        settings: IbSettings,
        *,
        now_ns: Callable[[], int] = time.time_ns,
        order_ids: OrderIdSequence | None = None,
        ledger: ExecutionLedger | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self._now_ns = now_ns
        self._log: Any = structlog.get_logger().bind(
            broker=name, ib=f"{settings.host}:{settings.port}"
        )
        self._session = IbSession(name, settings, self._on_message, log=self._log)
        #: Shared by every incarnation of this connection (see ``order_ids``).
        self._order_ids = order_ids if order_ids is not None else OrderIdSequence()
        #: Held from taking new order ids to sending them: TWS refuses an id lower than
        #: one it has seen, so concurrent submits must not interleave their sends.
        self._placing = trio.Lock()
        self._req_ids = itertools.count(1)
        self._book = OrderTracker(name, settings.client_id, now_ns, log=self._log)
        #: False between 1100 and 1101/1102.
        self.available = True
        #: Resyncs after 1101/1102 so far; ``resynced`` is set when the next one ends.
        self.resyncs = 0
        self.resynced = trio.Event()
        self._sink: UpdateSink | None = None
        self._resync_send, self._resync_receive = trio.open_memory_channel[str](1)
        #: Shared by every incarnation of this connection (see ``ledger``).
        self._ledger = ledger if ledger is not None else ExecutionLedger()
        #: Fills no incarnation delivered, found at connect: ``stream_updates`` delivers them first.
        self._missed: list[OrderUpdate] = []
        #: Commission reports heard while taking stock at connect, by exec id.
        self._reports: dict[str, wire.CommissionReport] | None = None
        #: When TWS said it lost IB (wall clock, ns), until restored.
        self._lost_at_ns: int | None = None
        #: trio time of the last message TWS sent (health shows its age).
        self.last_message_at: float | None = None
        self._stream_hook: Callable[[str | None], None] = lambda _why: None

    def use_budget(self, budget: RateBudget) -> None:
        """Count every message this connection sends against the account's ``budget``."""
        self._session.budget = budget

    def watch_stream(self, hook: Callable[[str | None], None]) -> None:
        """Call ``hook(why)`` when TWS loses IB (1100), ``hook(None)`` once back in step.

        Between the two the connection is ``degraded``: the socket is up, IB is
        not, and the broker actor holds (or refuses) new orders; cancels go.
        """
        self._stream_hook = hook

    @property
    def server_version(self) -> int:
        """The API version agreed with TWS at the handshake (0 before)."""
        return self._session.server_version

    @property
    def account_id(self) -> str:
        """The account this connection trades (chosen at the handshake)."""
        return self._session.account_id

    # -- connection ------------------------------------------------------------

    async def connect(self) -> None:
        """Handshake, start the API, learn accounts and ids, take stock of orders."""
        s = self.settings
        if s.port in LIVE_PORTS and not s.live_trading_confirmed:
            raise ConfigError(
                f"broker {self.name}: port {s.port} is IB's live-trading port; set"
                f" live_trading_confirmed = true in [brokers.{self.name}] to trade real money"
            )
        # Before this connection hears anything (its own messages move the mark).
        gap_began_ns = self._ledger.gap_began_ns()
        attempt = 0
        while True:
            try:
                await self._session.open()
                break
            except ClientIdInUse:
                await self.disconnect()
                attempt += 1
                if attempt > s.client_id_in_use_retries:
                    raise ConfigError(
                        f"broker {self.name}: TWS at {s.host}:{s.port} refused client id"
                        f" {s.client_id}: it is already in use by another API connection"
                        " (TWS error 326); set IB_CLIENT_ID (or client_id) to a free id"
                    ) from None
                self._log.warning(
                    "client id in use; retrying once the old socket is gone", client_id=s.client_id
                )
                await trio.sleep(s.client_id_in_use_delay_s)
        # Executions rebuild the book; they are history, not fills to announce, except
        # those no earlier incarnation delivered (``stream_updates`` delivers them first).
        self._reports = {}
        try:
            if self._ledger.connected_before:
                self._missed = await self._undelivered(await self._catch_up(gap_began_ns))
            else:
                for execution in await self._sync(emit_fills=False):
                    # Accounted for by reconciliation at start.
                    self._ledger.delivered.add(execution.exec_id)
                self._ledger.connected_before = True
        finally:
            self._reports = None
        self._book.emit_fills = True
        self._log.info(
            "ib connected",
            server_version=self.server_version,
            account=self.account_id,
            client_id=s.client_id,
            next_order_id=self._order_ids.next_id,
        )

    async def disconnect(self) -> None:
        """Close the socket; safe to call twice or after a failed connect."""
        await self._session.close()

    async def _catch_up(self, gap_began_ns: int | None) -> list[wire.ExecDetails]:
        """A reconnect's stock-taking: open orders, then the executions known and since the gap.

        The book is rebuilt from the executions earlier incarnations heard, so
        TWS is asked only for those since ``gap_began_ns`` (less the filter's
        margin); for the day's when that is unknown, or when an open order's
        status still shows more filled than every execution known. Returns
        every execution known now, those heard before first, each once.
        """
        known = list(self._ledger.heard.values())
        await self._session.collect("open_orders", "open_orders", wire.ReqOpenOrders())
        for execution in known:
            self._book.on_execution(execution)
        fresh = [] if gap_began_ns is None else await self._executions(gap_began_ns)
        if gap_began_ns is None or self._book.still_behind():
            fresh = await self._executions()
        heard = {e.exec_id for e in known}
        return known + [e for e in fresh if e.exec_id not in heard]

    async def _undelivered(self, executions: list[wire.ExecDetails]) -> list[OrderUpdate]:
        """The fills of ``executions`` no incarnation delivered, in order, orders adopted."""
        missed = [
            e
            for e in executions
            if e.exec_id not in self._ledger and e.client_id == self.settings.client_id
        ]
        if any(self._book.owner_of(e) is None for e in missed):
            # Finished while we were away: known only as a completed order.
            for done in (await self._completed()).values():
                self._book.adopt_completed(done)
        reports = self._reports or {}
        found = [self._book.missed_fill(e, reports.get(e.exec_id)) for e in missed]
        return [u for u in found if u is not None]

    # -- reading updates ----------------------------------------------------------

    async def stream_updates(
        self,
        sink: UpdateSink,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Own the socket's read side, delivering order updates until it closes."""
        session = self._session
        if not session.has_stream:
            raise BrokerUnavailable(f"broker {self.name} is not connected", broker=self.name)
        lost: list[BrokerUnavailable] = []

        def drop(exc: BrokerUnavailable, scope: trio.CancelScope) -> None:
            # Raised after the nursery, so callers see it unwrapped; whoever
            # waits for an answer on this socket hears of it now.
            lost.append(exc)
            session.fail_waiters(exc)
            scope.cancel()

        async with session.reading():
            self._sink = sink
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._resync_worker)
                    nursery.start_soon(self._watch_liveness, drop, nursery.cancel_scope)
                    await self._deliver_missed(sink)
                    task_status.started()
                    try:
                        while True:
                            for update in await session.read_one():
                                await self._deliver(sink, update)
                    except BrokerUnavailable as exc:
                        drop(exc, nursery.cancel_scope)
            finally:
                self._sink = None
        if lost:
            session.fail_waiters(lost[0])
            raise lost[0]

    async def _deliver_missed(self, sink: UpdateSink) -> None:
        """The fills found at connect that no incarnation delivered, in order, before any other."""
        if self._missed:
            self._log.warning("fills the stream missed", count=len(self._missed))
        while self._missed:
            await self._deliver(sink, self._missed[0])
            del self._missed[0]

    async def _deliver(self, sink: UpdateSink, update: OrderUpdate) -> None:
        """Hand one update to ``sink``; its fill counts as delivered once the sink has it.

        Not before: a broker actor that crashes while applying it leaves it
        undelivered, and the next incarnation delivers it again.
        """
        await sink(update)
        if update.fill is not None:
            self._ledger.delivered.add(update.fill.fill_id)

    async def _watch_liveness(
        self,
        drop: Callable[[BrokerUnavailable, trio.CancelScope], None],
        scope: trio.CancelScope,
    ) -> None:
        """A silent socket is a dropped one: probe after ``stale_after_s``, then give up.

        TWS sends nothing while nothing happens, so silence alone proves nothing:
        ``reqCurrentTime`` is the cheapest question it always answers.
        """
        s = self.settings
        probe_wait = min(s.probe_timeout_s, s.stale_after_s)
        if self.last_message_at is None:
            self.last_message_at = trio.current_time()
        while True:
            quiet_until = self.last_message_at + s.stale_after_s
            if trio.current_time() < quiet_until:
                await trio.sleep_until(quiet_until)
                continue
            try:
                await self._session.send(wire.ReqCurrentTime())
            except BrokerUnavailable as exc:
                drop(exc, scope)
                return
            asked = trio.current_time()  # (after any wait for the budget)
            await trio.sleep_until(asked + probe_wait)
            if self.last_message_at < asked:
                silent_s = round(trio.current_time() - self.last_message_at, 3)
                self._log.warning("tws silent; dropping the connection", silent_s=silent_s)
                drop(
                    BrokerUnavailable(
                        f"TWS at {s.host}:{s.port} sent nothing for {silent_s:g} s and did"
                        f" not answer a probe in {probe_wait:g} s",
                        broker=self.name,
                    ),
                    scope,
                )
                return

    # -- handling messages ------------------------------------------------------

    def _on_message(self, msg: wire.Incoming) -> list[OrderUpdate]:
        """Apply one server message; returns the order updates it causes.

        The session has noted what it needs (accounts, a refused client id)
        and wakes whoever waits once this returns.
        """
        self.last_message_at = trio.current_time()
        if self._book.emit_fills and self._lost_at_ns is None:
            # In step up to now, so a later gap begins here. Not while taking stock at
            # connect, nor while TWS has lost IB: a gap then still begins where it did.
            self._ledger.last_heard_ns = self._now_ns()
        updates: list[OrderUpdate] = []
        if isinstance(msg, wire.OrderStatus):
            self._saw_order_id(msg.client_id, msg.order_id)
            updates = self._book.on_order_status(msg)
            if self._book.executions_behind(msg):
                # Filled beyond the executions heard: one was never pushed; ask now.
                self._queue_resync(_BEHIND)
        elif isinstance(msg, wire.OpenOrder):
            self._saw_order_id(msg.order.client_id, msg.order_id)
            self._session.add_to("open_orders", msg)
            updates = self._book.on_open_order(msg)
        elif isinstance(msg, wire.ExecDetails):
            self._saw_order_id(msg.client_id, msg.order_id)
            if msg.req_id != -1:
                self._session.add_to(("executions", msg.req_id), msg)
            self._ledger.hear(msg)
            updates = self._book.on_execution(msg)
        elif isinstance(msg, wire.CommissionReport):
            if self._reports is not None:
                self._reports[msg.exec_id] = msg
            updates = self._book.on_commission_report(msg)
        elif isinstance(msg, wire.TickPrice):
            self._session.add_to(("quote", msg.req_id), msg)
        elif isinstance(msg, wire.TickSnapshotEnd):
            self._session.end(("quote", msg.req_id))
        elif isinstance(msg, wire.ErrorMessage):
            updates = self._on_error(msg)
        elif isinstance(msg, wire.NextValidId):
            self._order_ids.offer(msg.order_id)
        elif isinstance(msg, wire.OpenOrderEnd):
            self._session.end("open_orders")
        elif isinstance(msg, wire.CompletedOrder):
            self._session.add_to("completed", msg)
        elif isinstance(msg, wire.CompletedOrdersEnd):
            self._session.end("completed")
        elif isinstance(msg, wire.ExecDetailsEnd):
            self._session.end(("executions", msg.req_id))
        elif isinstance(msg, wire.PositionData):
            self._session.add_to("positions", msg)
        elif isinstance(msg, wire.PositionEnd):
            self._session.end("positions")
        elif isinstance(msg, wire.AccountSummary):
            self._session.add_to(("summary", msg.req_id), msg)
        elif isinstance(msg, wire.AccountSummaryEnd):
            self._session.end(("summary", msg.req_id))
        elif isinstance(msg, wire.CurrentTime):
            self._session.add_to("time", msg)
            self._session.end("time")
        return updates

    def _saw_order_id(self, client_id: int, order_id: int) -> None:
        # TWS: new ids must exceed every id seen for this client, whoever placed it.
        if client_id == self.settings.client_id and order_id > 0:
            self._order_ids.advance_past(order_id)

    def _on_error(self, msg: wire.ErrorMessage) -> list[OrderUpdate]:
        code = msg.code
        if ib_errors.is_notice(code):
            self._log.info("tws notice", code=code, text=msg.message)
            return []
        if code == ib_errors.CONNECTIVITY_LOST:
            self.available = False
            if self._lost_at_ns is None:
                self._lost_at_ns = self._now_ns()
            self._stream_hook(f"TWS lost its connection to IB ({code})")
            self._log.warning(
                "tws lost connectivity to IB; orders refused until restored", code=code
            )
            return []
        if code in (ib_errors.RESTORED_DATA_LOST, ib_errors.RESTORED_DATA_KEPT):
            self.available = True
            self._log.warning("tws connectivity to IB restored; resynchronising", code=code)
            self._queue_resync("restored")
            return []
        tracked = self._book.orders.get(msg.req_id)
        if tracked is not None:
            return self._book.on_order_error(tracked, msg)
        error = BrokerUnavailable(f"TWS error {code}: {msg.message}", broker=self.name)
        if self._session.fail_request(msg.req_id, error):
            return []
        self._log.warning("tws error", code=code, req_id=msg.req_id, text=msg.message)
        return []

    # -- resynchronisation -------------------------------------------------------

    def _queue_resync(self, reason: str) -> None:
        with contextlib.suppress(trio.WouldBlock):  # one queued resync is enough
            self._resync_send.send_nowait(reason)

    async def _resync_worker(self) -> None:
        async for reason in self._resync_receive:
            if reason == _BEHIND:
                await trio.sleep(_EXECUTION_GRACE_S)
                if not self._book.still_behind():
                    continue  # it came after the status after all
            # Executions since the loss (or just now: the filter has its margin).
            since = self._lost_at_ns or self._now_ns()
            try:
                await self._sync(emit_fills=True, since_ns=since)
                self._book.executions_listed()
                if self.available and self._lost_at_ns is not None:
                    self._lost_at_ns = None
                    self._stream_hook(None)  # restored, and what it missed delivered
            except BrokerUnavailable as exc:
                self._log.warning("resync failed; trying again", reason=reason, error=str(exc))
                if self._session.is_open:  # (a dead socket ends the stream: a new one resyncs)
                    self._queue_resync(reason)  # never left degraded for one lost answer
            else:
                self._log.info("resynchronised open orders", reason=reason)
            finally:
                self.resyncs += 1
                done, self.resynced = self.resynced, trio.Event()
                done.set()

    async def _sync(
        self, *, emit_fills: bool, since_ns: int | None = None
    ) -> list[wire.ExecDetails]:
        """Bring tracked orders up to date: open orders, executions, then the vanished.

        Returns the executions TWS listed (since ``since_ns``, else the day's).
        """
        orders = self._book.orders
        was_open = {k for k, t in orders.items() if t.order.status in OPEN_STATUSES}
        answer = await self._session.collect("open_orders", "open_orders", wire.ReqOpenOrders())
        still_open = {m.order_id for m in answer}
        executions = await self._executions(since_ns)
        vanished = [
            orders[k]
            for k in was_open - still_open
            if k in orders and orders[k].order.status in OPEN_STATUSES
        ]
        if vanished:
            updates: list[OrderUpdate] = []
            completed = await self._completed()
            for tracked in vanished:
                done = completed.get(tracked.perm_id) or completed.get(
                    tracked.order.client_order_id
                )
                if done is not None:
                    updates += self._book.apply_completed(tracked, done)
            if emit_fills and self._sink is not None:
                for update in updates:
                    await self._sink(update)
        return executions

    async def _executions(self, since_ns: int | None = None) -> list[wire.ExecDetails]:
        """Our executions, the day's or (TWS's time filter) those since ``since_ns``."""
        req_id = next(self._req_ids)
        since = ""
        if since_ns is not None:
            moment = datetime.fromtimestamp((since_ns - _FILTER_MARGIN_NS) / 1e9, UTC)
            since = moment.strftime("%Y%m%d-%H:%M:%S")  # UTC, as TWS reads the dash form
        request = wire.ReqExecutions(
            req_id=req_id,
            filter=wire.ExecutionFilter(client_id=self.settings.client_id, time=since),
        )
        return await self._session.collect("executions", ("executions", req_id), request)

    async def _completed(self) -> dict[int | str, wire.CompletedOrder]:
        answer = await self._session.collect(
            "completed", "completed", wire.ReqCompletedOrders(api_only=True)
        )
        found: dict[int | str, wire.CompletedOrder] = {}
        for msg in answer:
            if msg.order.account and msg.order.account != self.account_id:
                continue
            if msg.order.perm_id:
                found[msg.order.perm_id] = msg
            if msg.order.order_ref:
                found[msg.order.order_ref] = msg
        return found

    async def _find(self, match: Callable[[TrackedOrder], bool]) -> Order | None:
        """Search tracked orders, then ask TWS (open, executed, completed) and search again."""
        found = self._book.find(match)
        if found is not None:
            return found
        await self._session.collect("open_orders", "open_orders", wire.ReqOpenOrders())
        await self._executions()
        found = self._book.find(match)
        if found is not None:
            return found
        completed = {id(m): m for m in (await self._completed()).values()}
        for msg in completed.values():
            added = self._book.adopt_completed(msg)
            if added is not None and match(added):
                return added.order
        return None

    # -- the Connector protocol ----------------------------------------------------

    def _require_trading(self, *, cancel: bool = False) -> None:
        if not self._session.is_open:
            raise BrokerUnavailable(f"broker {self.name} is not connected", broker=self.name)
        if not self.available and not cancel:
            raise BrokerUnavailable(
                f"broker {self.name}: TWS has lost its connection to IB (1100); retry when restored",
                broker=self.name,
            )

    async def submit(self, request: OrderRequest) -> Order:
        coid = request.client_order_id
        if not coid:
            raise InvalidOrder("client_order_id is required", field="client_order_id")
        existing = self._known(coid)
        if existing is not None:
            if same_request(existing, request):
                return existing
            raise DuplicateOrder(
                f"client order id {coid} is already used by order {existing.id}", broker=self.name
            )
        self._require_trading()
        contract, ib_order = to_ib(request, self.settings, self.account_id)

        def build(ids: list[int]) -> list[tuple[wire.PlaceOrder, OrderRequest, Leg | None]]:
            placed = wire.PlaceOrder(order_id=ids[0], contract=contract, order=ib_order)
            return [(placed, request, None)]

        (tracked,) = await self._place(1, build)
        return tracked.order

    def _known(self, client_order_id: str) -> Order | None:
        """The order under a client order id this connection has seen, replaced ones too."""
        tracked = self._book.by_client_id(client_order_id)
        if tracked is not None:
            return tracked.order
        return self._book.replaced.get(client_order_id)

    async def _place(
        self,
        count: int,
        build: Callable[[list[int]], Sequence[tuple[wire.PlaceOrder, OrderRequest, Leg | None]]],
    ) -> list[TrackedOrder]:
        """Take ``count`` order ids, track and send what ``build`` makes of them, then wait
        until TWS has answered every one.

        The first order's rejection is raised; a later one's shows in its status.
        """
        async with self._placing:
            ids = [self._order_ids.take(self._book.orders) for _ in range(count)]
            tracked = await self._send_new(build(ids))
        return await self._acknowledged(tracked)

    async def _send_new(
        self, batch: Sequence[tuple[wire.PlaceOrder, OrderRequest, Leg | None]]
    ) -> list[TrackedOrder]:
        now = self._now_ns()
        tracked = []
        for placed, request, leg in batch:
            order = msgspec.structs.replace(
                order_from_request(
                    request,
                    broker=self.name,
                    order_id=str(placed.order_id),
                    status="pending_new",
                    now_ns=now,
                    outcome="unknown",
                ),
                # The terms as IB gets them: symbol normalised, prices only where the type uses one.
                symbol=placed.contract.symbol,
                limit_price=placed.order.lmt_price,
                stop_price=placed.order.aux_price,
                leg=leg,
            )
            one = self._book.add(placed.order_id, order)
            one.placed = placed
            tracked.append(one)
        for placed, _, _ in batch:
            await self._session.send(placed)
        return tracked

    async def _acknowledged(self, tracked: list[TrackedOrder]) -> list[TrackedOrder]:
        refs = [t.order.client_order_id for t in tracked]
        self._log.info(
            "orders sent", client_order_ids=refs, order_ids=[t.order_id for t in tracked]
        )
        try:
            await self._session.wait(
                lambda: all(t.acked for t in tracked),
                self.settings.ack_timeout_s,
                f"order {refs[0]}",
            )
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(
                f"TWS did not acknowledge order {refs[0]} ({exc.message});"
                " its outcome is unknown until it is looked up by client order id",
                broker=self.name,
            ) from None
        first = tracked[0]
        if first.error is not None:
            if any(t.order_id not in self._book.orders for t in tracked):  # an id refused
                await self._session.send(wire.ReqIds())
            raise first.error
        return tracked

    async def submit_list(self, request: OrderListRequest) -> list[Order]:
        """Send a bracket, OCO or OTO as TWS's own linked orders (see ``lists.py``)."""
        list_id = request.list_id or request.legs[0].client_order_id
        coids = [leg.client_order_id for leg in request.legs]
        if not list_id or not all(coids):
            raise InvalidOrder("every leg needs a client_order_id", field="legs")
        known = [self._known(c) for c in coids if c]
        if known[0] is not None:
            # Sent before (a retry after a lost reply): the legs as they stand.
            return [o for o in known if o is not None]
        self._require_trading()
        legs = list_legs(request, list_id)

        def build(ids: list[int]) -> list[tuple[wire.PlaceOrder, OrderRequest, Leg | None]]:
            placed = list_orders(request, list_id, ids, self.settings, self.account_id)
            return list(zip(placed, request.legs, legs, strict=True))

        return [t.order for t in await self._place(len(request.legs), build)]

    async def replace(self, order: Order, change: ReplaceRequest) -> Order:
        """TWS's modify: PLACE_ORDER again under the order id, with the new terms.

        The new client order id goes to TWS as the orderRef, so a replace whose
        answer was lost is found by it (open orders list the order under it).
        """
        new_coid = change.client_order_id
        if not new_coid:
            raise InvalidOrder("client_order_id is required", field="client_order_id")
        done = self._known(new_coid)
        if done is not None:
            # Applied already: the replacement (TWS keeps the id; after a reconnect the
            # link back is known only from that).
            if done.replaces == order.client_order_id or done.id == order.id:
                return msgspec.structs.replace(done, replaces=order.client_order_id)
            raise DuplicateOrder(
                f"client order id {new_coid} is already used by order {done.id}",
                broker=self.name,
            )
        tracked = await self._tracked_by_id(order.id)
        current = tracked.order
        if current.status in TERMINAL_STATUSES or current.status == "pending_cancel":
            raise not_replaceable(current)
        pending = tracked.replacing
        if pending is not None and pending.client_order_id != new_coid:
            # (The same replace again, after a timeout, is sent again: a modify to the
            # same terms and orderRef changes nothing at TWS if the first got there.)
            raise not_replaceable(msgspec.structs.replace(current, status="pending_replace"))
        terms = replaced_terms(current, change)
        self._require_trading()
        assert tracked.placed is not None, "every tracked open order was placed or listed"
        _, ib_terms = to_ib(terms, self.settings, self.account_id)
        modified = msgspec.structs.replace(
            tracked.placed.order,
            # TWS counts the quantity over the whole order id: add what earlier records filled.
            total_quantity=tracked.offset_qty + terms.qty,
            lmt_price=ib_terms.lmt_price,
            aux_price=ib_terms.aux_price,
            tif=ib_terms.tif,
            order_ref=new_coid,
        )
        placed = msgspec.structs.replace(tracked.placed, order=modified)
        tracked.replacing = msgspec.structs.replace(
            current,
            client_order_id=new_coid,
            qty=terms.qty,
            limit_price=ib_terms.lmt_price,
            stop_price=ib_terms.aux_price,
            time_in_force=terms.time_in_force,
            filled_qty=Decimal(0),
            avg_fill_price=None,
            replaces=current.client_order_id,
            replaced_by=None,
        )
        tracked.replace_error = None
        before, tracked.placed = tracked.placed, placed  # what TWS works on once it takes it
        await self._session.send(placed)
        self._log.info("modify sent", client_order_id=new_coid, order_id=tracked.order_id)
        try:
            await self._session.wait(
                lambda: tracked.replacing is None,
                self.settings.ack_timeout_s,
                f"replace {new_coid}",
            )
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(
                f"TWS did not answer the replace {new_coid} ({exc.message}); look it up by"
                " client order id before sending it again",
                broker=self.name,
            ) from None
        if tracked.replace_error is not None:
            tracked.placed = before
            raise tracked.replace_error
        return tracked.order

    async def cancel(self, order_id: str) -> Order:
        tracked = await self._tracked_by_id(order_id)
        if tracked.order.status in TERMINAL_STATUSES:
            raise already_final(tracked.order)
        # Not held back by a 1100: TWS keeps the cancel (PendingCancel) for the restore.
        self._require_trading(cancel=True)
        tracked.cancel_error = None
        await self._session.send(wire.CancelOrder(order_id=tracked.order_id))
        await self._session.wait(
            lambda: (
                tracked.cancel_error is not None
                or tracked.order.status in TERMINAL_STATUSES | {"pending_cancel"}
            ),
            self.settings.ack_timeout_s,
            f"the cancel of order {tracked.order.client_order_id}",
        )
        if tracked.cancel_error is not None and tracked.order.status not in TERMINAL_STATUSES:
            raise tracked.cancel_error
        return tracked.order

    async def _tracked_by_id(self, order_id: str) -> TrackedOrder:
        try:
            key = int(order_id)
        except ValueError:
            raise NotFound(
                f"no IB order {order_id!r} (IB order ids are numbers)", broker=self.name
            ) from None
        if key <= 0:
            raise NotFound(f"no IB order {order_id!r}", broker=self.name)
        found = await self._find(lambda t: t.order_id == key)
        if found is None:
            raise NotFound(
                f"no IB order with order id {order_id} (API client id {self.settings.client_id})",
                broker=self.name,
            )
        return self._book.orders[key]

    async def get_order(self, order_id: str) -> Order:
        return (await self._tracked_by_id(order_id)).order

    async def get_order_by_client_id(self, client_order_id: str) -> Order:
        replaced = self._book.replaced.get(client_order_id)
        if replaced is not None:
            return replaced
        found = await self._find(lambda t: t.order.client_order_id == client_order_id)
        if found is None:
            raise NotFound(f"no IB order with client order id {client_order_id}", broker=self.name)
        return found

    async def open_orders(self) -> list[Order]:
        answer = await self._session.collect("open_orders", "open_orders", wire.ReqOpenOrders())
        out: list[Order] = []
        for msg in answer:
            tracked = self._book.orders.get(msg.order_id)
            if tracked is not None and tracked.order.status in OPEN_STATUSES:
                out.append(tracked.order)
        return out

    async def positions(self) -> list[Position]:
        answer = await self._session.collect("positions", "positions", wire.ReqPositions())
        await self._session.send(wire.CancelPositions())  # one snapshot, not a subscription
        out: list[Position] = []
        for msg in answer:
            if msg.account != self.account_id or msg.position == 0:
                continue
            c = msg.contract
            multiplier = (
                Decimal(c.multiplier) if c.multiplier.replace(".", "", 1).isdigit() else Decimal(1)
            )
            out.append(
                Position(
                    broker=self.name,
                    symbol=c.symbol if c.sec_type == "STK" else c.local_symbol or c.symbol,
                    qty=msg.position,
                    avg_entry_price=msg.avg_cost / (multiplier or 1),
                )
            )
        return out

    async def close_position(self, position: Position, client_order_id: str) -> Order | None:
        """TWS has no close of its own: ``None``, so the closing order is a market order."""
        return None

    async def close_all_positions(self) -> list[Order] | None:
        """TWS has no close-all of its own: ``None`` (each position is closed in turn)."""
        return None

    async def quote(self, symbol: str) -> Decimal | None:
        """The mid of TWS's bid and ask for ``symbol`` now: a market data snapshot."""
        s = self.settings
        contract = wire.Contract(
            symbol=symbol.strip().upper(), exchange=s.exchange, currency=s.currency
        )
        req_id = next(self._req_ids)
        ticks = await self._session.collect(
            "quote", ("quote", req_id), wire.ReqMktData(req_id=req_id, contract=contract)
        )
        prices: dict[int, Decimal] = {t.field: t.price for t in ticks if t.price > 0}
        if wire.TICK_BID in prices and wire.TICK_ASK in prices:
            return (prices[wire.TICK_BID] + prices[wire.TICK_ASK]) / 2
        return None

    async def account(self) -> Account:
        req_id = next(self._req_ids)
        request = wire.ReqAccountSummary(req_id=req_id, group="All", tags=_SUMMARY_TAGS)
        try:
            answer = await self._session.collect("summary", ("summary", req_id), request)
        finally:
            if self._session.is_open:
                await self._session.send(wire.CancelAccountSummary(req_id=req_id))
        values: dict[str, tuple[str, str]] = {
            m.tag: (m.value, m.currency) for m in answer if m.account == self.account_id
        }
        try:
            cash, currency = values["TotalCashValue"]
            return Account(
                broker=self.name,
                cash=Decimal(cash),
                buying_power=Decimal(values["BuyingPower"][0]),
                equity=Decimal(values["NetLiquidation"][0]),
                currency=currency or self.settings.currency,
            )
        except (KeyError, ArithmeticError):
            raise BrokerUnavailable(
                f"TWS account summary for {self.account_id} lacks {_SUMMARY_TAGS}", broker=self.name
            ) from None
