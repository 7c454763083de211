"""IB's own Python client (``ibapi``) wired to the TWS simulator, for tests to drive.

``Recorder`` keeps every callback by name; ``against_the_simulator`` runs a
session (plain code calling ``EClient`` methods, in a thread) against a
simulator without market ticks. A session moves prices with ``set_price``,
which reaches the simulator's trio side from the client's thread. Importing
this module skips the importing tests when ``ibapi`` is not installed (it is
in the ``test`` extra).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import trio

from ult_actors.sim.ib import TwsSimulator

ibapi_client = pytest.importorskip("ibapi.client")
from ibapi.contract import Contract  # noqa: E402
from ibapi.order import Order  # noqa: E402
from ibapi.wrapper import EWrapper  # noqa: E402

WAIT_S = 10.0


class Recorder(EWrapper, ibapi_client.EClient):  # type: ignore[misc]
    """Records every callback by name and signals waiters."""

    def __init__(self) -> None:
        EWrapper.__init__(self)
        ibapi_client.EClient.__init__(self, self)
        self.calls: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        self._cond = threading.Condition()

    def _record(self, name: str, *args: Any) -> None:
        with self._cond:
            self.calls[name].append(args)
            self._cond.notify_all()

    def wait_for(self, name: str, predicate: Any = lambda args: True) -> tuple[Any, ...]:
        with self._cond:
            ok = self._cond.wait_for(
                lambda: any(predicate(a) for a in self.calls[name]), timeout=WAIT_S
            )
        assert ok, f"no {name} callback matching; got {dict(self.calls)}"
        return next(a for a in self.calls[name] if predicate(a))

    def round_trip(self) -> None:
        """Until TWS has handled everything sent so far (it answers in order)."""
        seen = len(self.calls["openOrderEnd"])
        self.reqOpenOrders()
        self.wait_for("openOrderEnd", lambda a: len(self.calls["openOrderEnd"]) > seen)

    # The callbacks we check, each just recorded.
    def nextValidId(self, orderId: int) -> None:
        self._record("nextValidId", orderId)

    def managedAccounts(self, accountsList: str) -> None:
        self._record("managedAccounts", accountsList)

    def error(self, reqId: int, errorCode: int, errorString: str, *rest: Any) -> None:
        self._record("error", reqId, errorCode, errorString)

    def orderStatus(self, orderId: int, status: str, filled: Any, *rest: Any) -> None:
        remaining, parent_id = rest[0], rest[3]
        self._record("orderStatus", orderId, status, filled, remaining, parent_id)

    def openOrder(self, orderId: int, contract: Any, order: Any, orderState: Any) -> None:
        self._record("openOrder", orderId, contract.symbol, order.orderRef, orderState.status)
        self._record("order", orderId, order, orderState.status)

    def openOrderEnd(self) -> None:
        self._record("openOrderEnd")

    def execDetails(self, reqId: int, contract: Any, execution: Any) -> None:
        self._record("execDetails", reqId, execution.orderId, execution.shares, execution.orderRef)

    def execDetailsEnd(self, reqId: int) -> None:
        self._record("execDetailsEnd", reqId)

    def commissionReport(self, commissionReport: Any) -> None:
        self._record("commissionReport", commissionReport.commission)

    def completedOrder(self, contract: Any, order: Any, orderState: Any) -> None:
        self._record("completedOrder", order.orderRef, orderState.status)

    def completedOrdersEnd(self) -> None:
        self._record("completedOrdersEnd")

    def position(self, account: str, contract: Any, position: Any, avgCost: float) -> None:
        self._record("position", account, contract.symbol, position)

    def positionEnd(self) -> None:
        self._record("positionEnd")

    def accountSummary(self, reqId: int, account: str, tag: str, value: str, currency: str) -> None:
        self._record("accountSummary", reqId, tag, value)

    def accountSummaryEnd(self, reqId: int) -> None:
        self._record("accountSummaryEnd", reqId)

    def currentTime(self, time: int) -> None:
        self._record("currentTime", time)

    def contractDetails(self, reqId: int, contractDetails: Any) -> None:
        c = contractDetails.contract
        self._record(
            "contractDetails",
            reqId,
            (c.symbol, c.secType, c.exchange, c.currency, c.localSymbol, c.conId),
            contractDetails.minTick,
        )

    def contractDetailsEnd(self, reqId: int) -> None:
        self._record("contractDetailsEnd", reqId)

    def tickPrice(self, reqId: int, tickType: int, price: float, attrib: Any) -> None:
        self._record("tickPrice", reqId, tickType, price)

    def tickSize(self, reqId: int, tickType: int, size: int) -> None:
        self._record("tickSize", reqId, tickType, size)

    def tickSnapshotEnd(self, reqId: int) -> None:
        self._record("tickSnapshotEnd", reqId)


Session = Callable[[Recorder], None]


def run_client(port: int, client_id: int, session: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Connect a ``Recorder`` as ``client_id``, run ``session`` with it; every callback seen."""
    app = Recorder()
    app.connect("127.0.0.1", port, clientId=client_id)
    reader = threading.Thread(target=app.run, daemon=True)
    reader.start()
    try:
        session(app)
        return dict(app.calls)
    finally:
        app.disconnect()
        reader.join(timeout=WAIT_S)


async def against_the_simulator(
    client_id: int, session: Session, sim: TwsSimulator | None = None
) -> dict[str, list[tuple[Any, ...]]]:
    """``session`` run by the official client against ``sim`` (already serving), or
    against a simulator of its own without market ticks."""
    if sim is not None:
        with trio.fail_after(4 * WAIT_S):
            return await trio.to_thread.run_sync(run_client, sim.port, client_id, session)
    own = TwsSimulator(tick_interval_s=None)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(own.serve)
        with trio.fail_after(4 * WAIT_S):
            calls = await trio.to_thread.run_sync(run_client, port, client_id, session)
        nursery.cancel_scope.cancel()
    return calls


def stock(symbol: str) -> Any:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "STK", "SMART", "USD"
    return c


def fx(pair: str) -> Any:
    c = Contract()
    c.symbol, c.currency = pair.split(".")
    c.secType, c.exchange = "CASH", "IDEALPRO"
    return c


def order(
    action: str, qty: int, order_type: str, ref: str, limit: float | None = None, **attrs: Any
) -> Any:
    """An ``ibapi`` order; ``attrs`` are further ``Order`` attributes by IB's names."""
    o = Order()
    o.action, o.totalQuantity, o.orderType, o.orderRef = action, qty, order_type, ref
    if limit is not None:
        o.lmtPrice = limit
    for name, value in attrs.items():
        assert hasattr(o, name), name
        setattr(o, name, value)
    return o


def set_price(sim: TwsSimulator, symbol: str, price: float) -> None:
    """Move a price at the simulator from a session's thread (and fill what it crosses)."""
    trio.from_thread.run(sim.set_price, symbol, Decimal(str(round(price, 2))))
