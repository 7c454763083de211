"""IB's own Python client (``ibapi``, from PyPI) trades with the TWS simulator.

Proof that the simulator is TWS enough for a standard client: the official
client handshakes (it offers v100..157), gets its accounts and order id, and
places, lists, cancels and reads back orders, executions, positions and the
account. Skipped when ``ibapi`` is not installed (it is in the ``test`` extra).
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

    # The callbacks we check, each just recorded.
    def nextValidId(self, orderId: int) -> None:
        self._record("nextValidId", orderId)

    def managedAccounts(self, accountsList: str) -> None:
        self._record("managedAccounts", accountsList)

    def error(self, reqId: int, errorCode: int, errorString: str, *rest: Any) -> None:
        self._record("error", reqId, errorCode, errorString)

    def orderStatus(self, orderId: int, status: str, filled: Any, *rest: Any) -> None:
        self._record("orderStatus", orderId, status, filled)

    def openOrder(self, orderId: int, contract: Any, order: Any, orderState: Any) -> None:
        self._record("openOrder", orderId, contract.symbol, order.orderRef, orderState.status)

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
    client_id: int, session: Session
) -> dict[str, list[tuple[Any, ...]]]:
    """``session`` run by the official client against a simulator without market ticks."""
    sim = TwsSimulator(tick_interval_s=None)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve)
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


def order(action: str, qty: int, order_type: str, ref: str, limit: float | None = None) -> Any:
    o = Order()
    o.action, o.totalQuantity, o.orderType, o.orderRef = action, qty, order_type, ref
    if limit is not None:
        o.lmtPrice = limit
    return o


def trade_like_a_standard_client(app: Recorder) -> None:
    (first_id,) = app.wait_for("nextValidId")
    assert app.wait_for("managedAccounts") == ("DU1234567",)
    assert app.serverVersion() == 157  # the highest this client offers

    app.placeOrder(first_id, stock("AAPL"), order("BUY", 10, "MKT", "std-mkt"))
    app.wait_for("orderStatus", lambda a: a[0] == first_id and a[1] == "Filled")
    app.wait_for("execDetails", lambda a: a[1] == first_id and a[3] == "std-mkt")
    app.wait_for("commissionReport")

    resting = first_id + 1
    app.placeOrder(resting, stock("AAPL"), order("BUY", 5, "LMT", "std-lmt", limit=1.0))
    app.wait_for("orderStatus", lambda a: a[0] == resting and a[1] == "Submitted")
    app.reqOpenOrders()
    app.wait_for("openOrderEnd")
    assert ("openOrder", resting, "AAPL", "std-lmt", "Submitted") in [
        ("openOrder", *a) for a in app.calls["openOrder"]
    ]
    app.cancelOrder(resting)
    app.wait_for("orderStatus", lambda a: a[0] == resting and a[1] == "Cancelled")

    app.reqCompletedOrders(False)
    app.wait_for("completedOrdersEnd")
    app.reqExecutions(7, ibapi_client.ExecutionFilter())
    app.wait_for("execDetailsEnd", lambda a: a[0] == 7)
    app.reqPositions()
    app.wait_for("positionEnd")
    app.reqAccountSummary(8, "All", "NetLiquidation,BuyingPower,TotalCashValue")
    app.wait_for("accountSummaryEnd", lambda a: a[0] == 8)
    app.reqCurrentTime()
    app.wait_for("currentTime")


async def test_ibs_official_client_connects_trades_and_reads_back() -> None:
    calls = await against_the_simulator(9, trade_like_a_standard_client)
    notices = {code for _, code, _ in calls["error"] if code >= 2100}
    assert notices == {2104, 2106, 2158}
    assert ("std-mkt", "Filled") in calls["completedOrder"]
    assert ("std-lmt", "Cancelled") in calls["completedOrder"]
    assert [a[3] for a in calls["execDetails"] if a[0] == 7] == ["std-mkt"]
    assert ("DU1234567", "AAPL", Decimal(10)) in [
        (a, s, Decimal(str(q))) for a, s, q in calls["position"]
    ]
    assert {tag for _, tag, _ in calls["accountSummary"]} == {
        "NetLiquidation",
        "BuyingPower",
        "TotalCashValue",
    }


def look_up_quote_and_trade_fx(app: Recorder) -> None:
    (first_id,) = app.wait_for("nextValidId")
    app.reqContractDetails(21, stock("AAPL"))
    app.wait_for("contractDetailsEnd", lambda a: a[0] == 21)
    app.reqContractDetails(22, fx("EUR.USD"))
    app.wait_for("contractDetailsEnd", lambda a: a[0] == 22)
    app.reqContractDetails(23, fx("EUR.XYZ"))
    app.wait_for("error", lambda a: a[0] == 23)

    app.reqMktData(31, stock("AAPL"), "", True, False, [])
    app.wait_for("tickSnapshotEnd", lambda a: a[0] == 31)
    app.reqMktData(32, fx("EUR.USD"), "", True, False, [])
    app.wait_for("tickSnapshotEnd", lambda a: a[0] == 32)

    app.placeOrder(first_id, fx("EUR.USD"), order("BUY", 20000, "MKT", "fx-mkt"))
    app.wait_for("orderStatus", lambda a: a[0] == first_id and a[1] == "Filled")
    app.wait_for("commissionReport")
    app.placeOrder(first_id + 1, stock("MSFT"), order("BUY", 300, "MKT", "stk-mkt"))
    app.wait_for("orderStatus", lambda a: a[0] == first_id + 1 and a[1] == "Filled")
    app.wait_for("commissionReport", lambda a: a[0] != 2.0)
    app.reqPositions()
    app.wait_for("positionEnd")


async def test_contract_details_snapshots_commissions_and_fx_for_the_official_client() -> None:
    calls = await against_the_simulator(11, look_up_quote_and_trade_fx)
    details = {req: (contract, tick) for req, contract, tick in calls["contractDetails"]}
    (symbol, sec_type, exchange, currency, local, con_id), tick = details[21]
    assert (symbol, sec_type, exchange, currency, local, tick) == (
        "AAPL", "STK", "SMART", "USD", "AAPL", 0.01
    )  # fmt: skip
    assert con_id > 0
    (symbol, sec_type, exchange, currency, local, _), tick = details[22]
    assert (symbol, sec_type, exchange, currency, local) == (
        "EUR", "CASH", "IDEALPRO", "USD", "EUR.USD"
    )  # fmt: skip
    assert tick == 0.00005
    assert 23 not in details
    assert (23, 200) in [(req, code) for req, code, _ in calls["error"]]

    quotes: dict[int, dict[int, float]] = defaultdict(dict)
    for req, tick_type, price in calls["tickPrice"]:
        quotes[req][tick_type] = price
    assert set(quotes[31]) == {1, 2, 4}  # bid, ask, last
    assert quotes[31][1] < quotes[31][4] < quotes[31][2]
    assert set(quotes[32]) == {1, 2}  # IDEALPRO: no last
    assert 1.08 < quotes[32][1] < quotes[32][2] < 1.09
    assert {(req, t) for req, t, size in calls["tickSize"] if size > 0} >= {(31, 0), (31, 3)}

    commissions = sorted(c for (c,) in calls["commissionReport"])
    # IB fixed: FX 0.2 bp of value, at least $2; stocks $0.005 a share, at least $1.
    assert commissions == [1.5, 2.0]
    held = {(s, Decimal(str(q))) for _, s, q in calls["position"]}
    assert {("EUR", Decimal(20000)), ("MSFT", Decimal(300))} <= held
