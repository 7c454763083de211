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
from ult_actors.brokers.ib.mapping import order_from_ib, same_request, status_from_ib, to_ib
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
    Fill,
    Order,
    OrderRequest,
    OrderUpdate,
    Position,
)

_SUMMARY_TAGS = "TotalCashValue,BuyingPower,NetLiquidation"


@dataclass
class _Tracked:
    """One of our orders as this connection knows it."""

    order_id: int
    order: Order
    perm_id: int = 0
    #: TWS answered the placement (status, open order or error).
    acked: bool = False
    error: UltError | None = None
    cancel_error: UltError | None = None


@dataclass
class _Collector:
    """Messages answering one request, gathered by the reader."""

    items: list[Any] = field(default_factory=list)
    done: bool = False
    error: UltError | None = None


class IbConnector:
    """A TWS / IB Gateway API connection; see the module docstring."""

    def __init__(
        self, name: str, settings: IbSettings, *, now_ns: Callable[[], int] = time.time_ns
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
        self._next_order_id = 0
        self._req_ids = itertools.count(1)
        self._orders: dict[int, _Tracked] = {}
        self._by_ref: dict[str, int] = {}
        self._by_perm: dict[int, int] = {}
        self._seen_execs: set[str] = set()
        self._untracked_execs: dict[int, wire.ExecDetails] = {}
        self._emit_fills = False
        #: False between 1100 and 1101/1102.
        self.available = True
        self._fatal: Exception | None = None
        self._collectors: dict[Hashable, _Collector] = {}
        self._request_locks: dict[str, trio.Lock] = {}
        self._changed = trio.Event()
        self._read_lock = trio.Lock()
        self._streaming = False
        self._sink: UpdateSink | None = None
        self._resync_send, self._resync_receive = trio.open_memory_channel[str](1)
        self._closed = False

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
        self._emit_fills = True
        self._log.info(
            "ib connected",
            server_version=self.server_version,
            account=self.account_id,
            client_id=s.client_id,
            next_order_id=self._next_order_id,
        )

    async def _open(self) -> None:
        s = self.settings
        self._closed = False
        self._fatal = None
        self._accounts = None
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
                await self._read_until(
                    lambda: self._accounts is not None and self._next_order_id > 0
                )
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
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()
        self._fail_waiters(BrokerUnavailable(f"broker {self.name} disconnected", broker=self.name))

    # -- sending and reading ----------------------------------------------------

    async def _send(self, request: wire.Request) -> None:
        stream = self._stream
        if stream is None or (self._closed and not isinstance(request, wire.StartApi)):
            raise BrokerUnavailable(f"broker {self.name} is not connected", broker=self.name)
        try:
            await stream.send_frames([encode_fields(encode_request(request, self.server_version))])
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
                msg = await self._receive()
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
                        # Raised after the nursery, so callers see it unwrapped.
                        lost = exc
                        nursery.cancel_scope.cancel()
            finally:
                self._streaming = False
                self._sink = None
        if lost is not None:
            self._fail_waiters(lost)
            raise lost

    def _fail_waiters(self, error: UltError) -> None:
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
            updates = self._on_order_status(msg)
        elif isinstance(msg, wire.OpenOrder):
            self._add_to("open_orders", msg)
            updates = self._on_open_order(msg)
        elif isinstance(msg, wire.ExecDetails):
            if msg.req_id != -1:
                self._add_to(("executions", msg.req_id), msg)
            updates = self._on_execution(msg)
        elif isinstance(msg, wire.ErrorMessage):
            updates = self._on_error(msg)
        elif isinstance(msg, wire.NextValidId):
            self._next_order_id = max(self._next_order_id, msg.order_id)
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
        tracked = self._orders.get(msg.req_id)
        if tracked is not None:
            return self._on_order_error(tracked, msg)
        for key, collector in self._collectors.items():
            if isinstance(key, tuple) and key[1] == msg.req_id and not collector.done:
                collector.error = BrokerUnavailable(
                    f"TWS error {code}: {msg.message}", broker=self.name
                )
                collector.done = True
                return []
        self._log.warning("tws error", code=code, req_id=msg.req_id, text=msg.message)
        return []

    def _on_order_error(self, tracked: _Tracked, msg: wire.ErrorMessage) -> list[OrderUpdate]:
        code = msg.code
        log = self._log.bind(
            client_order_id=tracked.order.client_order_id, code=code, text=msg.message
        )
        if code in ib_errors.ORDER_WARNINGS or code == ib_errors.ORDER_CANCELED:
            log.info("tws order notice")
            return []
        if code in (ib_errors.CANCEL_NOT_FOUND, ib_errors.CANCEL_NOT_ALLOWED):
            tracked.cancel_error = ib_errors.order_rejection(code, msg.message, self.name)
            log.warning("tws refused a cancel")
            return []
        error = ib_errors.order_rejection(code, msg.message, self.name)
        if tracked.acked and tracked.order.status not in ("pending_new",):
            log.warning("tws error on a live order")  # e.g. a refused modification
            return []
        log.warning("tws rejected an order")
        tracked.error = error
        tracked.acked = True
        if code == ib_errors.DUPLICATE_ORDER_ID:
            # Never placed: forget it so a retry under the same client id goes out anew.
            self._forget(tracked)
            return []
        return self._set(tracked, status="rejected", reject_reason=error.message)

    def _forget(self, tracked: _Tracked) -> None:
        self._orders.pop(tracked.order_id, None)
        if self._by_ref.get(tracked.order.client_order_id) == tracked.order_id:
            del self._by_ref[tracked.order.client_order_id]

    def _set(
        self, tracked: _Tracked, *, fill: Fill | None = None, **changes: Any
    ) -> list[OrderUpdate]:
        """Change a tracked order; an update when something a client sees changed."""
        current = tracked.order
        if (
            current.status in TERMINAL_STATUSES
            and changes.get("status", current.status) != current.status
        ):
            changes.pop("status")  # final states stay final
        new = msgspec.structs.replace(current, **changes)
        if new == current and fill is None:
            return []
        now = self._now_ns()
        tracked.order = new = msgspec.structs.replace(new, updated_at=now, outcome="definitive")
        return [OrderUpdate(order=new, fill=fill, ts=now)]

    def _track_from_ib(
        self, order_id: int, contract: wire.Contract, order: wire.IbOrder, ib_status: str
    ) -> _Tracked | None:
        status = status_from_ib(ib_status, Decimal(0)) or "accepted"
        filled = order.total_quantity if status == "filled" else Decimal(0)
        ours = order_from_ib(
            broker=self.name,
            order_id=order_id or None,
            contract=contract,
            order=order,
            status=status,
            now=self._now_ns(),
            filled=filled,
        )
        if ours is None:
            return None
        key = order_id or -order.perm_id
        tracked = _Tracked(order_id=key, order=ours, perm_id=order.perm_id, acked=True)
        self._orders[key] = tracked
        self._by_ref.setdefault(ours.client_order_id, key)
        if order.perm_id:
            self._by_perm[order.perm_id] = key
        return tracked

    def _on_open_order(self, msg: wire.OpenOrder) -> list[OrderUpdate]:
        tracked = self._orders.get(msg.order_id)
        if tracked is None:
            if (
                msg.order.client_id not in (0, self.settings.client_id)
                and self.settings.client_id != 0
            ):
                return []
            if self._track_from_ib(msg.order_id, msg.contract, msg.order, msg.status) is None:
                self._log.debug("open order of a kind we do not model", order_id=msg.order_id)
            return []
        tracked.acked = True
        if msg.order.perm_id:
            tracked.perm_id = msg.order.perm_id
            self._by_perm[msg.order.perm_id] = tracked.order_id
        status = status_from_ib(msg.status, tracked.order.filled_qty)
        if status is None or status == "filled":
            return []  # fills are counted from executions and order status, which carry quantities
        return self._set(tracked, status=status)

    def _on_order_status(self, msg: wire.OrderStatus) -> list[OrderUpdate]:
        tracked = self._orders.get(msg.order_id)
        if tracked is None:
            return []  # the open order (which says what it is) comes first
        tracked.acked = True
        if msg.perm_id:
            tracked.perm_id = msg.perm_id
            self._by_perm[msg.perm_id] = tracked.order_id
        status = status_from_ib(msg.status, msg.filled)
        if status is None:
            return []
        filled = max(tracked.order.filled_qty, msg.filled)
        changes: dict[str, Any] = {"status": status, "filled_qty": filled}
        if msg.filled > 0 and msg.avg_fill_price:
            changes["avg_fill_price"] = msg.avg_fill_price
        return self._set(tracked, **changes)

    def _on_execution(self, msg: wire.ExecDetails) -> list[OrderUpdate]:
        if msg.exec_id in self._seen_execs:
            return []
        key = self._by_perm.get(msg.perm_id, msg.order_id)
        tracked = self._orders.get(key)
        if tracked is None and msg.order_ref:
            tracked = self._orders.get(self._by_ref.get(msg.order_ref, 0))
        if tracked is None:
            # Not tracked (yet): remember which order it was, for completed orders
            # (which carry no order id) found later by perm id.
            if msg.client_id == self.settings.client_id:
                self._untracked_execs[msg.perm_id] = msg
            return []
        self._seen_execs.add(msg.exec_id)
        fill = None
        if self._emit_fills:
            fill = Fill(
                fill_id=msg.exec_id,
                order_id=tracked.order.id,
                client_order_id=tracked.order.client_order_id,
                broker=self.name,
                symbol=tracked.order.symbol,
                side="buy" if msg.side == "BOT" else "sell",
                qty=msg.shares,
                price=msg.price,
                ts=self._now_ns(),
            )
        filled = max(tracked.order.filled_qty, msg.cum_qty)
        status = "filled" if filled >= tracked.order.qty else "partially_filled"
        if tracked.order.status in TERMINAL_STATUSES and tracked.order.status != "filled":
            status = tracked.order.status  # e.g. canceled after a partial fill
        return self._set(
            tracked,
            fill=fill,
            status=status,
            filled_qty=filled,
            avg_fill_price=msg.avg_price or msg.price,
        )

    # -- resynchronisation -------------------------------------------------------

    async def _resync_worker(self) -> None:
        async for reason in self._resync_receive:
            try:
                await self._sync(emit_fills=True)
            except BrokerUnavailable as exc:
                self._log.warning("resync after reconnect failed", reason=reason, error=str(exc))
            else:
                self._log.info("resynchronised open orders", reason=reason)

    async def _sync(self, *, emit_fills: bool) -> None:
        """Bring tracked orders up to date: open orders, executions, then the vanished."""
        was_open = {k for k, t in self._orders.items() if t.order.status in OPEN_STATUSES}
        answer = await self._collect("open_orders", "open_orders", wire.ReqOpenOrders())
        still_open = {m.order_id for m in answer}
        await self._executions()
        vanished = [
            self._orders[k]
            for k in was_open - still_open
            if k in self._orders and self._orders[k].order.status in OPEN_STATUSES
        ]
        if vanished:
            updates: list[OrderUpdate] = []
            completed = await self._completed()
            for tracked in vanished:
                done = completed.get(tracked.perm_id) or completed.get(
                    tracked.order.client_order_id
                )
                if done is not None:
                    updates += self._apply_completed(tracked, done)
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

    def _apply_completed(self, tracked: _Tracked, msg: wire.CompletedOrder) -> list[OrderUpdate]:
        filled = msg.filled_quantity or Decimal(0)
        status = status_from_ib(msg.status, filled) or "canceled"
        return self._set(tracked, status=status, filled_qty=max(filled, tracked.order.filled_qty))

    async def _find(self, match: Callable[[_Tracked], bool]) -> Order | None:
        """Search tracked orders, then ask TWS (open, executed, completed) and search again."""
        for tracked in list(self._orders.values()):
            if match(tracked):
                return tracked.order
        await self._collect("open_orders", "open_orders", wire.ReqOpenOrders())
        await self._executions()
        for tracked in list(self._orders.values()):
            if match(tracked):
                return tracked.order
        completed = {id(m): m for m in (await self._completed()).values()}
        for msg in completed.values():
            perm_key = self._by_perm.get(msg.order.perm_id)
            if perm_key is not None and perm_key in self._orders:
                continue
            execution = self._untracked_execs.get(msg.order.perm_id)
            order_id = execution.order_id if execution is not None else 0
            added = self._track_from_ib(order_id, msg.contract, msg.order, msg.status)
            if added is not None:
                self._apply_completed(added, msg)
                if execution is not None:
                    self._set(added, avg_fill_price=execution.avg_price or execution.price)
                if match(added):
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
        known = self._by_ref.get(coid)
        if known is not None and known in self._orders:
            existing = self._orders[known].order
            if same_request(existing, request):
                return existing
            raise DuplicateOrder(
                f"client order id {coid} is already used by order {existing.id}", broker=self.name
            )
        self._require_trading()
        contract, ib_order = to_ib(request, self.settings, self.account_id)
        order_id = self._next_order_id
        self._next_order_id += 1
        now = self._now_ns()
        order = Order(
            id=str(order_id),
            client_order_id=coid,
            broker=self.name,
            symbol=contract.symbol,
            side=request.side,
            qty=request.qty,
            type=request.type,
            time_in_force=request.time_in_force,
            status="pending_new",
            limit_price=ib_order.lmt_price,
            stop_price=ib_order.aux_price,
            extended_hours=request.extended_hours,
            created_at=now,
            updated_at=now,
            outcome="unknown",
        )
        tracked = _Tracked(order_id=order_id, order=order)
        self._orders[order_id] = tracked
        self._by_ref[coid] = order_id
        await self._send(wire.PlaceOrder(order_id=order_id, contract=contract, order=ib_order))
        self._log.info("order sent", client_order_id=coid, order_id=order_id)
        try:
            await self._wait(lambda: tracked.acked, self.settings.ack_timeout_s, f"order {coid}")
        except BrokerUnavailable:
            raise BrokerUnavailable(
                f"TWS did not acknowledge order {coid} within {self.settings.ack_timeout_s}s;"
                " its outcome is unknown until it is looked up by client order id",
                broker=self.name,
            ) from None
        if tracked.error is not None:
            if tracked.order_id not in self._orders:  # never placed (duplicate id)
                await self._send(wire.ReqIds())
            raise tracked.error
        return tracked.order

    async def cancel(self, order_id: str) -> Order:
        tracked = await self._tracked_by_id(order_id)
        if tracked.order.status in TERMINAL_STATUSES:
            return tracked.order
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

    async def _tracked_by_id(self, order_id: str) -> _Tracked:
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
                f"no IB order {order_id} for client id {self.settings.client_id}", broker=self.name
            )
        return self._orders[key]

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
            tracked = self._orders.get(msg.order_id)
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
