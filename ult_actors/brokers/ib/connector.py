"""The IB connector: one TWS API socket, spoken natively on trio.

Life of a connection: ``connect`` opens the socket, does the handshake,
reads the managed accounts and the next valid order id, and takes stock of
open orders and today's executions. ``stream_updates`` then owns the socket's
read side: every message goes through ``_on_message``, which updates the
orders we track, completes pending requests and yields order updates for
the sink. Requests (open orders, positions, account...) send a message and
wait for the reader to collect the answer; before ``stream_updates`` runs
they read the socket themselves.

Connectivity: TWS error 1100 means TWS lost IB while our socket stays up;
submits and cancels are refused with ``BrokerUnavailable`` until 1101/1102,
after which open orders (and executions, and completed orders for what
disappeared) are resynchronised. A closed socket ends ``stream_updates`` with
``BrokerUnavailable``: the broker actor crashes and its supervisor reconnects.
Error 326 (client id in use) is a ``ConfigError``: another program holds the
id, and retrying would only loop.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec
import structlog
import trio

from ult_actors.brokers.base import UpdateSink
from ult_actors.brokers.ib import errors as ib_errors
from ult_actors.brokers.ib import wire
from ult_actors.brokers.ib.decode import decode_message
from ult_actors.brokers.ib.encode import encode_request
from ult_actors.brokers.ib.fields import FieldError
from ult_actors.brokers.ib.mapping import same_request, to_ib
from ult_actors.brokers.ib.order_ids import OrderIdSequence
from ult_actors.brokers.ib.orders import OrderTracker, TrackedOrder
from ult_actors.brokers.ib.pacing import MessagePacer
from ult_actors.brokers.ib.protocol import (
    API_PREFIX,
    MAX_SERVER_VERSION,
    MIN_SERVER_VERSION,
    ConnectionClosed,
    FrameStream,
    ProtocolError,
    encode_fields,
    encode_raw,
    version_range_text,
)
from ult_actors.brokers.ib.settings import LIVE_PORTS, IbSettings
from ult_actors.errors import (
    BrokerUnavailable,
    ConfigError,
    DuplicateOrder,
    InvalidOrder,
    NotFound,
    UltError,
)
from ult_actors.messages import (
    OPEN_STATUSES,
    TERMINAL_STATUSES,
    Account,
    Order,
    OrderRequest,
    OrderUpdate,
    Position,
)
from ult_actors.order_state import already_final, order_from_request

_SUMMARY_TAGS = "TotalCashValue,BuyingPower,NetLiquidation"


@dataclass
class _Collector:
    """Messages answering one request, gathered by the reader."""

    items: list[Any] = field(default_factory=list)
    done: bool = False
    error: UltError | None = None


class IbConnector:
    """A TWS / IB Gateway API connection; see the module docstring."""

    def __init__(
        self,
        name: str,
        settings: IbSettings,
        *,
        now_ns: Callable[[], int] = time.time_ns,
        order_ids: OrderIdSequence | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self._now_ns = now_ns
        self._log: Any = structlog.get_logger().bind(
            broker=name, ib=f"{settings.host}:{settings.port}"
        )
        self._stream: FrameStream | None = None
        self.server_version = 0
        self.account_id = ""
        self._accounts: list[str] | None = None
        #: Shared by every incarnation of this connection (see ``order_ids``).
        self._order_ids = order_ids if order_ids is not None else OrderIdSequence()
        #: TWS sent nextValidId on the current socket (the handshake waits for it).
        self._told_next_id = False
        self._req_ids = itertools.count(1)
        self._pacer = MessagePacer(settings.max_messages_per_second)
        self._book = OrderTracker(name, settings.client_id, now_ns, log=self._log)
        #: False between 1100 and 1101/1102.
        self.available = True
        #: Resyncs after 1101/1102 so far; ``resynced`` is set when the next one ends.
        self.resyncs = 0
        self.resynced = trio.Event()
        self._fatal: Exception | None = None
        self._collectors: dict[Hashable, _Collector] = {}
        self._request_locks: dict[str, trio.Lock] = {}
        self._changed = trio.Event()
        self._read_lock = trio.Lock()
        self._streaming = False
        self._sink: UpdateSink | None = None
        self._resync_send, self._resync_receive = trio.open_memory_channel[str](1)
        self._closed = False
        #: Why the current socket is known dead (read side closed, or disconnect):
        #: every wait for an answer on it fails at once instead of timing out.
        self._dead: BrokerUnavailable | None = None

    # -- connection ------------------------------------------------------------

    async def connect(self) -> None:
        """Handshake, start the API, learn accounts and ids, take stock of orders."""
        s = self.settings
        if s.port in LIVE_PORTS and not s.live_trading_confirmed:
            raise ConfigError(
                f"broker {self.name}: port {s.port} is IB's live-trading port; set"
                f" live_trading_confirmed = true in [brokers.{self.name}] to trade real money"
            )
        attempt = 0
        while True:
            try:
                await self._open()
                break
            except _ClientIdInUse:
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
        # Today's executions are history: remember them, do not re-announce them as fills.
        await self._sync(emit_fills=False)
        self._book.emit_fills = True
        self._log.info(
            "ib connected",
            server_version=self.server_version,
            account=self.account_id,
            client_id=s.client_id,
            next_order_id=self._order_ids.next_id,
        )

    async def _open(self) -> None:
        s = self.settings
        self._closed = False
        self._dead = None
        self._fatal = None
        self._accounts = None
        self._told_next_id = False
        try:
            with trio.fail_after(s.connect_timeout_s):
                raw = await trio.open_tcp_stream(s.host, s.port)
        except (OSError, trio.TooSlowError) as exc:
            raise BrokerUnavailable(
                f"cannot reach TWS / IB Gateway at {s.host}:{s.port}: {exc or 'timed out'}",
                broker=self.name,
            ) from None
        self._stream = stream = FrameStream(raw)
        try:
            with trio.fail_after(s.connect_timeout_s):
                await stream.send_frames(
                    [
                        API_PREFIX
                        + encode_raw(version_range_text(MIN_SERVER_VERSION, MAX_SERVER_VERSION))
                    ]
                )
                while len(fields := await stream.receive_fields()) != 2:
                    pass  # nothing else may precede the version answer
                self.server_version = int(fields[0])
                if not MIN_SERVER_VERSION <= self.server_version <= MAX_SERVER_VERSION:
                    raise ConfigError(
                        f"broker {self.name}: TWS at {s.host}:{s.port} speaks API version"
                        f" {self.server_version}; this connector supports"
                        f" {MIN_SERVER_VERSION}..{MAX_SERVER_VERSION} (upgrade TWS / IB Gateway)"
                    )
                await self._send(wire.StartApi(client_id=s.client_id))
                await self._read_until(lambda: self._accounts is not None and self._told_next_id)
        except trio.TooSlowError:
            raise BrokerUnavailable(
                f"TWS at {s.host}:{s.port} did not complete the API handshake in"
                f" {s.connect_timeout_s}s (is the API enabled in its settings?)",
                broker=self.name,
            ) from None
        except (ValueError, ProtocolError) as exc:
            raise BrokerUnavailable(f"TWS handshake failed: {exc}", broker=self.name) from None
        self.account_id = self._choose_account(self._accounts or [])

    def _choose_account(self, accounts: list[str]) -> str:
        wanted = self.settings.account
        if wanted:
            if wanted not in accounts:
                raise ConfigError(
                    f"broker {self.name}: account {wanted} is not managed by this TWS login"
                    f" (managed: {', '.join(accounts) or 'none'}); check IB_ACCOUNT"
                )
            return wanted
        if len(accounts) != 1:
            raise ConfigError(
                f"broker {self.name}: the TWS login manages {len(accounts)} accounts"
                f" ({', '.join(accounts)}); set IB_ACCOUNT to the one to trade"
            )
        return accounts[0]

    async def disconnect(self) -> None:
        """Close the socket; safe to call twice or after a failed connect."""
        self._closed = True
        self._fail_waiters(BrokerUnavailable(f"broker {self.name} disconnected", broker=self.name))
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()

    # -- sending and reading ----------------------------------------------------

    async def _send(self, request: wire.Request) -> None:
        stream = self._stream
        if stream is None or (self._closed and not isinstance(request, wire.StartApi)):
            raise BrokerUnavailable(f"broker {self.name} is not connected", broker=self.name)
        frame = encode_fields(encode_request(request, self.server_version))
        await self._pacer.wait()
        try:
            await stream.send_frames([frame])
        except ConnectionClosed as exc:
            raise BrokerUnavailable(f"connection to TWS lost: {exc}", broker=self.name) from None

    async def _receive(self) -> wire.Incoming | None:
        stream = self._stream
        if stream is None:
            raise BrokerUnavailable(f"broker {self.name} is not connected", broker=self.name)
        try:
            fields = await stream.receive_fields()
        except (ConnectionClosed, ProtocolError) as exc:
            raise BrokerUnavailable(
                f"connection to TWS at {self.settings.host}:{self.settings.port} closed: {exc}",
                broker=self.name,
            ) from None
        try:
            return decode_message(fields, self.server_version)
        except FieldError as exc:
            # One unreadable message must not take the connection down.
            self._log.error("unreadable TWS message skipped", msg_id=fields[0], error=str(exc))
            return None

    async def _read_until(self, done: Callable[[], bool]) -> None:
        """Read and handle messages ourselves until ``done()`` (only while not streaming)."""
        async with self._read_lock:
            while not done():
                try:
                    msg = await self._receive()
                except BrokerUnavailable as exc:
                    # Others may be parked waiting for this reader: the socket is dead
                    # for them too, now rather than at their timeouts.
                    self._fail_waiters(exc)
                    raise
                if msg is not None:
                    self._on_message(msg)  # no sink yet: nothing to deliver
                if self._fatal is not None:
                    raise self._fatal

    async def stream_updates(
        self,
        sink: UpdateSink,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Own the socket's read side, delivering order updates until it closes."""
        if self._stream is None:
            raise BrokerUnavailable(f"broker {self.name} is not connected", broker=self.name)
        lost: BrokerUnavailable | None = None
        async with self._read_lock:
            self._sink = sink
            self._streaming = True
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._resync_worker)
                    task_status.started()
                    try:
                        while True:
                            msg = await self._receive()
                            if msg is None:
                                continue
                            for update in self._on_message(msg):
                                await sink(update)
                    except BrokerUnavailable as exc:
                        # Raised after the nursery, so callers see it unwrapped; whoever
                        # waits for an answer on this socket hears of it now.
                        lost = exc
                        self._fail_waiters(exc)
                        nursery.cancel_scope.cancel()
            finally:
                self._streaming = False
                self._sink = None
        if lost is not None:
            self._fail_waiters(lost)
            raise lost

    def _fail_waiters(self, error: BrokerUnavailable) -> None:
        """The socket is gone: every pending answer (request, ack, cancel) fails now."""
        if self._dead is None:
            self._dead = error
        for collector in self._collectors.values():
            if not collector.done:
                collector.error = error
                collector.done = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait(self, done: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Until ``done()``: by the reader if streaming, else by reading ourselves."""
        try:
            with trio.fail_after(timeout_s):
                while not done():
                    if self._dead is not None:
                        # No answer can come on a dead socket: say so now, not at the timeout.
                        raise self._dead
                    if self._streaming or self._read_lock.locked():
                        await self._changed.wait()
                    else:
                        await self._read_until(done)
        except trio.TooSlowError:
            raise BrokerUnavailable(
                f"TWS did not answer {what} within {timeout_s}s", broker=self.name
            ) from None

    async def _collect(self, kind: str, key: Hashable, request: wire.Request) -> list[Any]:
        """Send a request and gather the answer until its end marker."""
        lock = self._request_locks.setdefault(kind, trio.Lock())
        async with lock:
            collector = self._collectors[key] = _Collector()
            try:
                await self._send(request)
                await self._wait(lambda: collector.done, self.settings.request_timeout_s, kind)
            finally:
                self._collectors.pop(key, None)
            if collector.error is not None:
                raise collector.error
            return collector.items

    # -- handling messages ------------------------------------------------------

    def _on_message(self, msg: wire.Incoming) -> list[OrderUpdate]:
        """Apply one server message; returns the order updates it causes."""
        updates: list[OrderUpdate] = []
        if isinstance(msg, wire.OrderStatus):
            self._saw_order_id(msg.client_id, msg.order_id)
            updates = self._book.on_order_status(msg)
        elif isinstance(msg, wire.OpenOrder):
            self._saw_order_id(msg.order.client_id, msg.order_id)
            self._add_to("open_orders", msg)
            updates = self._book.on_open_order(msg)
        elif isinstance(msg, wire.ExecDetails):
            self._saw_order_id(msg.client_id, msg.order_id)
            if msg.req_id != -1:
                self._add_to(("executions", msg.req_id), msg)
            updates = self._book.on_execution(msg)
        elif isinstance(msg, wire.ErrorMessage):
            updates = self._on_error(msg)
        elif isinstance(msg, wire.NextValidId):
            self._order_ids.offer(msg.order_id)
            self._told_next_id = True
        elif isinstance(msg, wire.ManagedAccounts):
            self._accounts = msg.accounts
        elif isinstance(msg, wire.OpenOrderEnd):
            self._end("open_orders")
        elif isinstance(msg, wire.CompletedOrder):
            self._add_to("completed", msg)
        elif isinstance(msg, wire.CompletedOrdersEnd):
            self._end("completed")
        elif isinstance(msg, wire.ExecDetailsEnd):
            self._end(("executions", msg.req_id))
        elif isinstance(msg, wire.PositionData):
            self._add_to("positions", msg)
        elif isinstance(msg, wire.PositionEnd):
            self._end("positions")
        elif isinstance(msg, wire.AccountSummary):
            self._add_to(("summary", msg.req_id), msg)
        elif isinstance(msg, wire.AccountSummaryEnd):
            self._end(("summary", msg.req_id))
        elif isinstance(msg, wire.CurrentTime):
            self._add_to("time", msg)
            self._end("time")
        self._notify()
        return updates

    def _saw_order_id(self, client_id: int, order_id: int) -> None:
        # TWS: new ids must exceed every id seen for this client, whoever placed it.
        if client_id == self.settings.client_id and order_id > 0:
            self._order_ids.advance_past(order_id)

    def _add_to(self, key: Hashable, msg: Any) -> None:
        collector = self._collectors.get(key)
        if collector is not None and not collector.done:
            collector.items.append(msg)

    def _end(self, key: Hashable) -> None:
        collector = self._collectors.get(key)
        if collector is not None:
            collector.done = True

    def _on_error(self, msg: wire.ErrorMessage) -> list[OrderUpdate]:
        code = msg.code
        if ib_errors.is_notice(code):
            self._log.info("tws notice", code=code, text=msg.message)
            return []
        if code == ib_errors.CONNECTIVITY_LOST:
            self.available = False
            self._log.warning(
                "tws lost connectivity to IB; orders refused until restored", code=code
            )
            return []
        if code in (ib_errors.RESTORED_DATA_LOST, ib_errors.RESTORED_DATA_KEPT):
            self.available = True
            self._log.warning("tws connectivity to IB restored; resynchronising", code=code)
            with contextlib.suppress(trio.WouldBlock):  # one queued resync is enough
                self._resync_send.send_nowait("restored")
            return []
        if code == ib_errors.CLIENT_ID_IN_USE:
            self._fatal = _ClientIdInUse(msg.message)
            self._log.error(
                "tws refused the client id", code=code, client_id=self.settings.client_id
            )
            return []
        tracked = self._book.orders.get(msg.req_id)
        if tracked is not None:
            return self._book.on_order_error(tracked, msg)
        for key, collector in self._collectors.items():
            if isinstance(key, tuple) and key[1] == msg.req_id and not collector.done:
                collector.error = BrokerUnavailable(
                    f"TWS error {code}: {msg.message}", broker=self.name
                )
                collector.done = True
                return []
        self._log.warning("tws error", code=code, req_id=msg.req_id, text=msg.message)
        return []

    # -- resynchronisation -------------------------------------------------------

    async def _resync_worker(self) -> None:
        async for reason in self._resync_receive:
            try:
                await self._sync(emit_fills=True)
            except BrokerUnavailable as exc:
                self._log.warning("resync after reconnect failed", reason=reason, error=str(exc))
            else:
                self._log.info("resynchronised open orders", reason=reason)
            finally:
                self.resyncs += 1
                done, self.resynced = self.resynced, trio.Event()
                done.set()

    async def _sync(self, *, emit_fills: bool) -> None:
        """Bring tracked orders up to date: open orders, executions, then the vanished."""
        orders = self._book.orders
        was_open = {k for k, t in orders.items() if t.order.status in OPEN_STATUSES}
        answer = await self._collect("open_orders", "open_orders", wire.ReqOpenOrders())
        still_open = {m.order_id for m in answer}
        await self._executions()
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

    async def _executions(self) -> list[wire.ExecDetails]:
        req_id = next(self._req_ids)
        request = wire.ReqExecutions(
            req_id=req_id, filter=wire.ExecutionFilter(client_id=self.settings.client_id)
        )
        return await self._collect("executions", ("executions", req_id), request)

    async def _completed(self) -> dict[int | str, wire.CompletedOrder]:
        answer = await self._collect(
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
        await self._collect("open_orders", "open_orders", wire.ReqOpenOrders())
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

    def _require_trading(self) -> None:
        if self._stream is None or self._closed:
            raise BrokerUnavailable(f"broker {self.name} is not connected", broker=self.name)
        if not self.available:
            raise BrokerUnavailable(
                f"broker {self.name}: TWS has lost its connection to IB (1100); retry when restored",
                broker=self.name,
            )

    async def submit(self, request: OrderRequest) -> Order:
        coid = request.client_order_id
        if not coid:
            raise InvalidOrder("client_order_id is required", field="client_order_id")
        known = self._book.by_client_id(coid)
        if known is not None:
            existing = known.order
            if same_request(existing, request):
                return existing
            raise DuplicateOrder(
                f"client order id {coid} is already used by order {existing.id}", broker=self.name
            )
        self._require_trading()
        contract, ib_order = to_ib(request, self.settings, self.account_id)
        order_id = self._order_ids.take(self._book.orders)
        now = self._now_ns()
        order = msgspec.structs.replace(
            order_from_request(
                request,
                broker=self.name,
                order_id=str(order_id),
                status="pending_new",
                now_ns=now,
                outcome="unknown",
            ),
            # The terms as IB gets them: symbol normalised, prices only where the type uses one.
            symbol=contract.symbol,
            limit_price=ib_order.lmt_price,
            stop_price=ib_order.aux_price,
        )
        tracked = self._book.add(order_id, order)
        await self._send(wire.PlaceOrder(order_id=order_id, contract=contract, order=ib_order))
        self._log.info("order sent", client_order_id=coid, order_id=order_id)
        try:
            await self._wait(lambda: tracked.acked, self.settings.ack_timeout_s, f"order {coid}")
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(
                f"TWS did not acknowledge order {coid} ({exc.message});"
                " its outcome is unknown until it is looked up by client order id",
                broker=self.name,
            ) from None
        if tracked.error is not None:
            if tracked.order_id not in self._book.orders:  # never placed (duplicate id)
                await self._send(wire.ReqIds())
            raise tracked.error
        return tracked.order

    async def cancel(self, order_id: str) -> Order:
        tracked = await self._tracked_by_id(order_id)
        if tracked.order.status in TERMINAL_STATUSES:
            raise already_final(tracked.order)
        self._require_trading()
        tracked.cancel_error = None
        await self._send(wire.CancelOrder(order_id=tracked.order_id))
        await self._wait(
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
        found = await self._find(lambda t: t.order.client_order_id == client_order_id)
        if found is None:
            raise NotFound(f"no IB order with client order id {client_order_id}", broker=self.name)
        return found

    async def open_orders(self) -> list[Order]:
        answer = await self._collect("open_orders", "open_orders", wire.ReqOpenOrders())
        out: list[Order] = []
        for msg in answer:
            tracked = self._book.orders.get(msg.order_id)
            if tracked is not None and tracked.order.status in OPEN_STATUSES:
                out.append(tracked.order)
        return out

    async def positions(self) -> list[Position]:
        answer = await self._collect("positions", "positions", wire.ReqPositions())
        await self._send(wire.CancelPositions())  # one snapshot, not a subscription
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

    async def account(self) -> Account:
        req_id = next(self._req_ids)
        request = wire.ReqAccountSummary(req_id=req_id, group="All", tags=_SUMMARY_TAGS)
        try:
            answer = await self._collect("summary", ("summary", req_id), request)
        finally:
            if self._stream is not None and not self._closed:
                await self._send(wire.CancelAccountSummary(req_id=req_id))
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


class _ClientIdInUse(Exception):
    """TWS answered START_API with error 326."""
