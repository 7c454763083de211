"""IB's own Python client (``ibapi``, from PyPI) trades with the TWS simulator.

Proof that the simulator is TWS enough for a standard client: the official
client handshakes (it offers v100..157), gets its accounts and order id, and
places, lists, cancels and reads back orders, executions, positions and the
account. Skipped when ``ibapi`` is not installed (it is in the ``test`` extra).
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from tests.sim.ib.official import Recorder, against_the_simulator, fx, ibapi_client, order, stock


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
