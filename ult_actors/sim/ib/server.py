"""The TWS simulator's socket side: handshake, one session per API client, fault switches.

``TwsSimulator.serve`` listens on 127.0.0.1 (port 0 picks a free one and
``task_status.started`` reports it). Any TWS API client that speaks the
fields-only protocol (server versions 157 to 178) can connect, trade and
read back its orders, executions, positions and account, as with TWS, and
look up contracts and quote snapshots (``market.py``) for US stocks and the
major FX pairs (``CASH`` on ``IDEALPRO``; ``instruments.py``), with IB's
fixed-rate commissions in every commission report.

Fault switches, callable from tests or from another process through the
admin port (``admin.py``): drop every connection (or the sender of the next
order, before answering it), announce connectivity lost (1100; new orders
are then held as open PendingSubmit orders) and restored (1101/1102), reject
the next orders with 201, hold back order acknowledgements, slow every
reply, pretend a client id is already in use (326), stop answering (the
sockets stay open, nothing is sent), and drop executions (fills are not
pushed, ``reqExecutions`` still lists them).

As TWS does, a client sending more than ``max_messages_per_s`` messages in a
second gets error 100 and its socket closed (``pacing.py``), and
subscriptions stay alive (``subscriptions.py``): positions and account
updates are pushed as fills change them. ``reqExecutions`` honours the
filter's time (``yyyymmdd-hh:mm:ss`` UTC, or ``yyyymmdd hh:mm:ss`` with an
optional ``UTC``), so a client back from a gap asks only for what it missed.
"""

from __future__ import annotations

import enum
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import structlog
import trio

from ult_actors.brokers.ib import wire
from ult_actors.brokers.ib.fields import FieldError
from ult_actors.brokers.ib.protocol import (
    API_PREFIX,
    MAX_SERVER_VERSION,
    MIN_SERVER_VERSION,
    ConnectionClosed,
    FrameStream,
    ProtocolError,
    choose_version,
    encode_fields,
    parse_version_range,
)
from ult_actors.sim.ib.codec import encode_message, read_request
from ult_actors.sim.ib.exchange import Outgoing, SimExchange
from ult_actors.sim.ib.market import answer_market_request, read_market_request
from ult_actors.sim.ib.pacing import DEFAULT_LIMIT, OVER_LIMIT_CODE, MessageRate
from ult_actors.sim.ib.subscriptions import (
    Subscriptions,
    account_download,
    filled_symbols,
    pushes,
)

#: Farm notices TWS sends to every new API connection.
FARM_NOTICES = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefil"),
)
LOST_TEXT = "Connectivity between IB and Trader Workstation has been lost."
RESTORED_KEPT = (
    "Connectivity between IB and Trader Workstation has been restored - data maintained."
)
RESTORED_LOST = "Connectivity between IB and Trader Workstation has been restored - data lost."


class _Refusal(enum.Enum):
    OVER_RATE = "over the message rate"


_OVER_RATE = _Refusal.OVER_RATE
#: What the reader hands on: a message's fields, the refusal, or why the socket ended.
_Arrival = list[str] | _Refusal | ConnectionClosed | ProtocolError


@dataclass
class Faults:
    """What the simulator currently does wrong on purpose."""

    #: Reject this many next orders with error 201.
    reject_next: int = 0
    reject_text: str = "Order rejected - reason:Simulated rejection"
    #: Seconds before an order is accepted (and acknowledged).
    ack_delay_s: float = 0.0
    #: While set, orders (and modifications) wait for this event before TWS reads them.
    ack_gate: trio.Event | None = None
    #: Seconds before any other request is answered.
    reply_delay_s: float = 0.0
    #: Client ids answered with 326 as if another application held them.
    client_ids_in_use: set[int] = field(default_factory=set)
    #: Answer nextValidId with this instead of the truth: a TWS whose answer
    #: predates orders it has yet to read from a client's dropped socket.
    stale_next_valid_id: int | None = None
    #: Drop the sender's socket right after reading this many next orders,
    #: before answering them; each order is still placed (or held) as usual.
    drop_on_order: int = 0
    #: TWS stopped answering: sockets stay open, requests are read and acted on,
    #: nothing at all is sent (no answers, no fills, no greeting).
    silent: bool = False
    #: Fills are not pushed (execDetails and its commission report); the order
    #: status still is, and ``reqExecutions`` lists them.
    drop_executions: bool = False
    #: Keep commission reports off live connections: a client hears one only with the
    #: executions it asks for (as when TWS lost IB right after an execution).
    withhold_commission_reports: bool = False


@dataclass(frozen=True)
class _Release:
    """A held new order's turn to go to IB (it already sits in the exchange)."""

    order_id: int


class _Session:
    """One connected API client."""

    def __init__(self, sim: TwsSimulator, stream: FrameStream, version: int, client_id: int):
        self.sim = sim
        self.stream = stream
        self.version = version
        self.client_id = client_id
        self.cancel_scope = trio.CancelScope()
        self.rate = MessageRate(sim.max_messages_per_s)
        self.subscriptions = Subscriptions()
        #: Requests read and acted on so far (tests wait on it: ``wait_handled``).
        self.handled = 0

    async def send(self, messages: Sequence[wire.Incoming]) -> None:
        if self.sim.faults.drop_executions:
            messages = _without_pushed_fills(messages)
        await self.send_fields([encode_message(m, self.version) for m in messages])

    async def send_fields(self, messages: Sequence[list[str]]) -> None:
        """Send messages already written as fields."""
        if not messages or self.sim.faults.silent:
            return
        frames = [encode_fields(fields) for fields in messages]
        try:
            await self.stream.send_frames(frames)
        except ConnectionClosed:
            self.cancel_scope.cancel()


def _without_pushed_fills(messages: Sequence[wire.Incoming]) -> list[wire.Incoming]:
    """``messages`` less the fills TWS pushed (not those answering reqExecutions)."""
    dropped = {m.exec_id for m in messages if isinstance(m, wire.ExecDetails) and m.req_id == -1}
    return [
        m
        for m in messages
        if not (isinstance(m, wire.ExecDetails | wire.CommissionReport) and m.exec_id in dropped)
    ]


class TwsSimulator:
    """A loopback stand-in for TWS / IB Gateway with one paper account."""

    def __init__(
        self,
        *,
        seed: int = 7,
        account: str = "DU1234567",
        cash: Decimal = Decimal(1_000_000),
        now_ns: Callable[[], int] = time.time_ns,
        tick_interval_s: float | None = 1.0,
        max_messages_per_s: int | None = DEFAULT_LIMIT,
    ) -> None:
        self.exchange = SimExchange(random.Random(seed), account=account, cash=cash, now_ns=now_ns)
        self.faults = Faults()
        #: Messages a client may send in any second (TWS: 50); ``None``: no limit.
        self.max_messages_per_s = max_messages_per_s
        #: Clients cut off for going over it (error 100), so far.
        self.rate_violations = 0
        self.now_ns = now_ns
        self.tick_interval_s = tick_interval_s
        self.sessions: dict[int, _Session] = {}
        #: Highest order id each client id has sent, counted when it arrives (held
        #: and delayed orders included): TWS remembers it across connections.
        self._highest_ids: dict[int, int] = {}
        self.connected_to_ib = True
        #: Bumped by every lost/restored, so a restore can tell it was overtaken.
        self._ib_epoch = 0
        #: What waits for IB, in arrival order: held new orders (already open as
        #: PendingSubmit in the exchange), then modifications and cancels.
        self._held: list[tuple[int, wire.PlaceOrder | wire.CancelOrder | _Release]] = []
        self.log = structlog.get_logger().bind(component="sim.ib")
        #: Set whenever a session starts, ends or has handled a request; tests wait on it.
        self.sessions_changed = trio.Event()
        #: Set once an order waits at ``faults.ack_gate``.
        self.at_gate = trio.Event()
        self.port = 0

    # -- serving ------------------------------------------------------------

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen until cancelled; reports the bound port through ``task_status``."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            if self.tick_interval_s:
                nursery.start_soon(self._ticker, self.tick_interval_s)
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    async def _ticker(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            if self.connected_to_ib:
                await self._route(self.exchange.tick())

    async def _handle(self, raw: trio.SocketStream) -> None:
        stream = FrameStream(raw)
        try:
            session = await self._handshake(stream)
            if session is None:
                return
            try:
                self.sessions[session.client_id] = session
                self._changed()
                with session.cancel_scope:
                    await self._greet(session)
                    await self._serve_requests(session, stream)
            finally:
                if self.sessions.get(session.client_id) is session:
                    del self.sessions[session.client_id]
                self._changed()
        except (ConnectionClosed, ProtocolError) as exc:
            self.log.debug("ib client gone", reason=str(exc))
        finally:
            await stream.aclose()

    async def _serve_requests(self, session: _Session, stream: FrameStream) -> None:
        """Act on the client's messages in order; a reader beside counts them as they come.

        TWS counts a client's messages as its socket delivers them, whatever it is
        busy with: a slow answer (``slow-ack``, ``slow-replies``) delays the answers
        after it, not the count. Counted when this loop got to them instead, the
        messages sent during a slow answer would all be stamped at its end, a burst
        the client never sent.
        """
        send, receive = trio.open_memory_channel[_Arrival](math.inf)
        ended: ConnectionClosed | ProtocolError | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_requests, session, stream, send)
            async with receive:
                async for arrival in receive:
                    if isinstance(arrival, list):
                        await self._dispatch(session, arrival)
                        session.handled += 1
                        self._changed()
                        continue
                    if arrival is _OVER_RATE:
                        await self._over_rate(session)
                    else:
                        ended = arrival
                    break
            nursery.cancel_scope.cancel()
        if ended is not None:
            raise ended

    async def _read_requests(
        self, session: _Session, stream: FrameStream, out: trio.MemorySendChannel[_Arrival]
    ) -> None:
        """Count each message as it arrives and queue it; over the rate, queue the refusal."""
        async with out:
            try:
                while True:
                    fields = await stream.receive_fields()
                    session.rate.limit = self.max_messages_per_s  # (admin may change it)
                    if not session.rate.admit(trio.current_time()):
                        out.send_nowait(_OVER_RATE)
                        return
                    out.send_nowait(fields)
            except (ConnectionClosed, ProtocolError) as exc:
                out.send_nowait(exc)

    async def _over_rate(self, session: _Session) -> None:
        """Error 100, then the socket closes, as at TWS."""
        self.rate_violations += 1
        text = session.rate.refusal_text()
        self.log.warning("ib client over the message rate", client_id=session.client_id, text=text)
        await session.send([wire.ErrorMessage(req_id=-1, code=OVER_LIMIT_CODE, message=text)])

    def _changed(self) -> None:
        self.sessions_changed.set()
        self.sessions_changed = trio.Event()

    async def _handshake(self, stream: FrameStream) -> _Session | None:
        if await stream.receive_exactly(len(API_PREFIX)) != API_PREFIX:
            raise ProtocolError("client did not start with API\\0")
        low, high, _options = parse_version_range(await stream.receive_payload())
        version = choose_version(low, high)
        if version is None:
            self.log.warning(
                "ib client version range unsupported",
                client=f"{low}..{high}",
                server=f"{MIN_SERVER_VERSION}..{MAX_SERVER_VERSION}",
            )
            return None
        await stream.send_fields([str(version), self._connection_time()])
        fields = await stream.receive_fields()
        request = read_request(fields, version)
        if not isinstance(request, wire.StartApi):
            raise ProtocolError(f"expected START_API, got message id {fields[0]}")
        client_id = request.client_id
        if client_id in self.sessions or client_id in self.faults.client_ids_in_use:
            msg = wire.ErrorMessage(
                req_id=-1,
                code=326,
                message="Unable to connect as the client id is already in use. Retry with a unique client id.",
            )
            await stream.send_fields(encode_message(msg, version))
            return None
        return _Session(self, stream, version, client_id)

    async def _greet(self, session: _Session) -> None:
        messages: list[wire.Incoming] = [
            wire.ManagedAccounts(accounts=[self.exchange.account]),
            wire.NextValidId(order_id=self._next_id(session.client_id)),
        ]
        messages += [wire.ErrorMessage(req_id=-1, code=c, message=t) for c, t in FARM_NOTICES]
        await session.send(messages)

    def _next_id(self, client_id: int) -> int:
        if self.faults.stale_next_valid_id is not None:
            return self.faults.stale_next_valid_id
        return self._highest_used(client_id) + 1

    def _highest_used(self, client_id: int) -> int:
        return max(self._highest_ids.get(client_id, 0), self.exchange.max_order_id(client_id))

    def _claim(self, client_id: int, order_id: int) -> list[Outgoing]:
        """Accept a new order id (above every id the client used) or a live order's; else 103."""
        # Held new orders sit in the exchange (PendingSubmit), so this finds them too.
        if self.exchange.knows(client_id, order_id):
            return []  # a modification; the exchange decides whether it may be one
        if order_id <= self._highest_used(client_id):
            return self.exchange.reject(client_id, order_id, 103, "Duplicate order id")
        self._highest_ids[client_id] = order_id
        return []

    def _connection_time(self) -> str:
        when = datetime.fromtimestamp(self.now_ns() / 1e9, UTC)
        return when.strftime("%Y%m%d %H:%M:%S") + " UTC"

    async def _route(self, outgoing: list[Outgoing]) -> None:
        by_client: dict[int, list[wire.Incoming]] = {}
        for client_id, msg in outgoing:
            if self.faults.withhold_commission_reports and isinstance(msg, wire.CommissionReport):
                continue
            targets = self.sessions if client_id is None else [client_id]
            for cid in targets:
                by_client.setdefault(cid, []).append(msg)
        keys = filled_symbols(outgoing)
        if keys:
            # Subscribers hear of the fills' positions and account, whoever placed them.
            now = self.now_ns()
            for cid, subscriber in self.sessions.items():
                if subscriber.subscriptions.any:
                    extra = pushes(subscriber.subscriptions, self.exchange, keys, now)
                    by_client.setdefault(cid, []).extend(extra)
        for cid, messages in by_client.items():
            session = self.sessions.get(cid)
            if session is not None:
                await session.send(messages)

    # -- requests -----------------------------------------------------------

    async def _dispatch(self, session: _Session, fields: list[str]) -> None:
        try:
            market = read_market_request(fields)
            if market is not None:
                answer = answer_market_request(market, self.exchange, session.version)
                await session.send_fields(answer)
                return
            request = read_request(fields, session.version)
        except FieldError as exc:
            await session.send(
                [wire.ErrorMessage(req_id=-1, code=320, message=f"Error reading request: {exc}")]
            )
            return
        if request is None:
            await session.send(
                [
                    wire.ErrorMessage(
                        req_id=-1,
                        code=321,
                        message=f"Error validating request: message id {fields[0]} is not supported by the simulator",
                    )
                ]
            )
            return
        if isinstance(request, wire.PlaceOrder | wire.CancelOrder):
            if isinstance(request, wire.PlaceOrder):
                # The id counts as used from the moment it arrives, as at TWS, even
                # if the order waits (delayed, held) and its client drops meanwhile.
                refused = self._claim(session.client_id, request.order_id)
                if refused:
                    self._log_placement(session.client_id, request, refused)
                    await self._route(refused)
                    return
                if self.faults.ack_delay_s:
                    await trio.sleep(self.faults.ack_delay_s)
                if self.faults.ack_gate is not None:
                    self.at_gate.set()
                    await self.faults.ack_gate.wait()
                if self.faults.drop_on_order > 0:
                    self.faults.drop_on_order -= 1
                    # Cancelled at its next await: the order is taken, its answer lost.
                    session.cancel_scope.cancel()
            if not self.connected_to_ib:
                await self._hold(session.client_id, request)
                return
            await self._route(self._order_request(session.client_id, request))
            return
        if isinstance(request, wire.ReqGlobalCancel):
            # Reaches every client's orders; each owner hears about its own.
            await self._route(self.exchange.cancel_all())
            return
        if self.faults.reply_delay_s:
            await trio.sleep(self.faults.reply_delay_s)
        await session.send(self._answer(session, request))

    async def _hold(self, client_id: int, request: wire.PlaceOrder | wire.CancelOrder) -> None:
        """Cut off from IB: keep the request for the restore.

        A new order is accepted at once as an open order in PendingSubmit, as
        TWS does, so it is listed (reqOpenOrders) and found by its order ref
        even if its client reconnects meanwhile; it is worked on the restore.
        Modifications and cancels wait in arrival order behind it.
        """
        if isinstance(request, wire.PlaceOrder) and (
            not request.order.transmit or self.exchange.completes_a_family(client_id, request)
        ):
            # Staging needs no IB; a family goes out whole on the restore, in its turn.
            if request.order.transmit:
                self._held.append((client_id, request))
            else:
                await self._route(self.exchange.place(client_id, request))
            return
        if isinstance(request, wire.PlaceOrder) and not self.exchange.knows(
            client_id, request.order_id
        ):
            out = self.exchange.hold(client_id, request)
            self._log_placement(client_id, request, out, held=True)
            if any(isinstance(m, wire.ErrorMessage) for _, m in out):
                await self._route(out)  # refused at once: nothing to hold
                return
            self._held.append((client_id, _Release(request.order_id)))
            await self._route(out)
            return
        self._held.append((client_id, request))
        if isinstance(request, wire.CancelOrder):
            held = self.exchange.find(client_id, request.order_id)
            if held is not None and held.is_open:
                # TWS takes the cancel and shows it pending until it reaches IB.
                status = self.exchange.order_status_msg(held)
                note = msgspec.structs.replace(status, status="PendingCancel")
                await self._route([(client_id, note)])

    def _order_request(
        self, client_id: int, request: wire.PlaceOrder | wire.CancelOrder | _Release
    ) -> list[Outgoing]:
        if isinstance(request, _Release):
            held = self.exchange.find(client_id, request.order_id)
            if held is None or not held.is_held:
                return []  # cancelled meanwhile (global cancel)
            out = self.exchange.release(held)
            self._log_released(client_id, held.order_id, held.order.order_ref, out)
            return out
        if isinstance(request, wire.CancelOrder):
            return self.exchange.cancel(client_id, request.order_id)
        if self.faults.reject_next > 0 and not self.exchange.knows(client_id, request.order_id):
            self.faults.reject_next -= 1
            out = self.exchange.reject(client_id, request.order_id, 201, self.faults.reject_text)
        else:
            out = self.exchange.place(client_id, request)
        self._log_placement(client_id, request, out)
        return out

    def _log_placement(
        self,
        client_id: int,
        request: wire.PlaceOrder,
        outcome: list[Outgoing],
        *,
        held: bool = False,
    ) -> None:
        # One line per order, so a chaos run's orders can be audited afterwards.
        codes = [m.code for _, m in outcome if isinstance(m, wire.ErrorMessage)]
        self.log.debug(
            "order refused" if codes else "order held" if held else "order placed",
            client_id=client_id,
            order_id=request.order_id,
            order_ref=request.order.order_ref,
            symbol=request.contract.symbol,
            action=request.order.action,
            qty=str(request.order.total_quantity),
            codes=codes,
        )

    def _log_released(
        self, client_id: int, order_id: int, order_ref: str, outcome: list[Outgoing]
    ) -> None:
        codes = [m.code for _, m in outcome if isinstance(m, wire.ErrorMessage)]
        self.log.debug(
            "held order refused" if codes else "held order released",
            client_id=client_id,
            order_id=order_id,
            order_ref=order_ref,
            codes=codes,
        )

    def _answer(self, session: _Session, request: wire.Request) -> list[wire.Incoming]:
        ex = self.exchange
        cid = session.client_id
        if isinstance(request, wire.ReqIds):
            return [wire.NextValidId(order_id=self._next_id(cid))]
        if isinstance(request, wire.ReqManagedAccts):
            return [wire.ManagedAccounts(accounts=[ex.account])]
        if isinstance(request, wire.ReqCurrentTime):
            return [wire.CurrentTime(epoch_s=self.now_ns() // 1_000_000_000)]
        if isinstance(request, wire.ReqOpenOrders | wire.ReqAllOpenOrders):
            every = isinstance(request, wire.ReqAllOpenOrders) or cid == 0
            out: list[wire.Incoming] = []
            for o in ex.orders.values():
                if o.is_open and (every or o.client_id == cid):
                    out += [ex.open_order_msg(o), ex.order_status_msg(o)]
            return [*out, wire.OpenOrderEnd()]
        if isinstance(request, wire.ReqCompletedOrders):
            done = [
                ex.completed_order_msg(o)
                for o in ex.orders.values()
                if not o.is_open and o.completed_status
            ]
            return [*done, wire.CompletedOrdersEnd()]
        if isinstance(request, wire.ReqExecutions):
            try:
                since = filter_time(request.filter.time)
            except ValueError:
                text = f"Error validating request: invalid time filter {request.filter.time!r}"
                return [wire.ErrorMessage(req_id=request.req_id, code=321, message=text)]
            found = self._executions(request, since)
            return [*found, wire.ExecDetailsEnd(req_id=request.req_id)]
        if isinstance(request, wire.ReqPositions):
            # A subscription: changes follow as they happen (positionEnd only this once).
            session.subscriptions.positions = True
            return [*ex.positions(), wire.PositionEnd()]
        if isinstance(request, wire.CancelPositions):
            session.subscriptions.positions = False
            return []
        if isinstance(request, wire.ReqAccountSummary):
            values = ex.account_values()
            tags = [t for t in request.tags.split(",") if t in values]
            summary: list[wire.Incoming] = [
                wire.AccountSummary(
                    req_id=request.req_id,
                    account=ex.account,
                    tag=t,
                    value=values[t],
                    currency="" if t == "AccountType" else "USD",
                )
                for t in tags
            ]
            return [*summary, wire.AccountSummaryEnd(req_id=request.req_id)]
        if isinstance(request, wire.ReqAccountUpdates):
            session.subscriptions.account_updates = request.subscribe
            return account_download(ex, self.now_ns()) if request.subscribe else []
        if isinstance(request, wire.ReqAccountUpdatesMulti):
            multi: list[wire.Incoming] = [
                wire.AccountUpdateMulti(
                    req_id=request.req_id,
                    account=ex.account,
                    model_code=request.model_code,
                    key=k,
                    value=v,
                    currency="USD",
                )
                for k, v in ex.account_values().items()
            ]
            return [*multi, wire.AccountUpdateMultiEnd(req_id=request.req_id)]
        # START_API again, auto-open-orders binding, cancels of subscriptions: nothing to say.
        return []

    def _executions(
        self, request: wire.ReqExecutions, since: datetime | None
    ) -> list[wire.Incoming]:
        f = request.filter
        out: list[wire.Incoming] = []
        for details, report in self.exchange.executions:
            if f.client_id and details.client_id != f.client_id:
                continue
            if since is not None and _exec_time(details.time) < since:
                continue
            if f.symbol and details.contract.symbol != f.symbol:
                continue
            if f.side and details.side != f.side:
                continue
            out += [msgspec.structs.replace(details, req_id=request.req_id), report]
        return out

    # -- fault switches -------------------------------------------------------

    async def drop_connections(self) -> int:
        """Close every client socket abruptly; returns how many were open."""
        sessions = list(self.sessions.values())
        for s in sessions:
            s.cancel_scope.cancel()
        return len(sessions)

    async def connectivity_lost(self) -> None:
        """Tell every client TWS lost IB (1100); orders are held until restored."""
        self.connected_to_ib = False
        self._ib_epoch += 1
        await self._route([(None, wire.ErrorMessage(req_id=-1, code=1100, message=LOST_TEXT))])

    async def connectivity_restored(self, *, data_lost: bool = False) -> None:
        """1101 (data lost) or 1102 (data maintained); held orders then go through."""
        # A loss announced while this restore is under way wins over it.
        self._ib_epoch += 1
        epoch = self._ib_epoch
        code, text = (1101, RESTORED_LOST) if data_lost else (1102, RESTORED_KEPT)
        if data_lost:
            # "Market and account data subscription requests must be resubmitted."
            for session in self.sessions.values():
                session.subscriptions = Subscriptions()
        await self._route([(None, wire.ErrorMessage(req_id=-1, code=code, message=text))])
        # Held orders go first, in arrival order: an order sent after the restore
        # must not overtake one that was waiting (its id is lower).
        while self._held and self._ib_epoch == epoch:
            client_id, request = self._held.pop(0)
            await self._route(self._order_request(client_id, request))
        if self._ib_epoch == epoch:
            self.connected_to_ib = True

    async def notify(self, code: int, text: str) -> None:
        """Send every client a system message (req id -1), e.g. a farm notice."""
        await self._route([(None, wire.ErrorMessage(req_id=-1, code=code, message=text))])

    async def set_price(self, symbol: str, price: Decimal) -> None:
        """Move a symbol's price and execute the orders it triggers."""
        await self._route(self.exchange.set_price(symbol, price))

    async def execute(self, client_id: int, order_id: int, qty: Decimal) -> None:
        """Fill ``qty`` of a working order now, as if a counterparty came (partial fills)."""
        await self._route(self.exchange.execute(client_id, order_id, qty))

    async def wait_handled(self, client_id: int, count: int) -> None:
        """Until the client with this id has had ``count`` requests read and acted on."""
        while (s := self.sessions.get(client_id)) is None or s.handled < count:
            await self.sessions_changed.wait()

    async def wait_for_session(self, client_id: int, *, present: bool = True) -> None:
        """Until a client with this id is connected (or, ``present=False``, gone)."""
        while (client_id in self.sessions) != present:
            await self.sessions_changed.wait()


def filter_time(text: str) -> datetime | None:
    """An execution filter's time: ``yyyymmdd-hh:mm:ss`` (UTC) or ``yyyymmdd hh:mm:ss [UTC]``.

    The simulator's clock is UTC, so a time without a zone is UTC too;
    ``None`` for an empty filter (every execution). ``ValueError`` otherwise.
    """
    text = text.strip()
    if not text:
        return None
    if text.endswith((" UTC", " GMT")):
        text = text[:-4].rstrip()
    stamp = datetime.strptime(text.replace("-", " ", 1), "%Y%m%d %H:%M:%S")
    return stamp.replace(tzinfo=UTC)


def _exec_time(text: str) -> datetime:
    """An execution's time as the simulator writes it (``yyyymmdd  hh:mm:ss``, UTC)."""
    return datetime.strptime(" ".join(text.split()), "%Y%m%d %H:%M:%S").replace(tzinfo=UTC)
