"""IB's own client (``ibapi``) keeps its position subscription as with TWS: a fill's
position arrives without asking again. Skipped when ``ibapi`` is not installed."""

from __future__ import annotations

from decimal import Decimal

from tests.sim.ib.official import Recorder, against_the_simulator, order, stock


def subscribe_then_trade(app: Recorder) -> None:
    (first_id,) = app.wait_for("nextValidId")
    app.reqPositions()
    app.wait_for("positionEnd")
    app.placeOrder(first_id, stock("MSFT"), order("BUY", 7, "MKT", "sub-buy"))
    # Pushed by the subscription: no second reqPositions.
    app.wait_for("position", lambda a: a[1] == "MSFT" and Decimal(str(a[2])) == 7)
    app.placeOrder(first_id + 1, stock("MSFT"), order("SELL", 7, "MKT", "sub-sell"))
    app.wait_for("position", lambda a: a[1] == "MSFT" and Decimal(str(a[2])) == 0)
    app.round_trip()


async def test_ibapi_sees_a_fills_position_pushed_without_asking_again() -> None:
    calls = await against_the_simulator(31, subscribe_then_trade)
    assert [(c[1], Decimal(str(c[2]))) for c in calls["position"]] == [
        ("MSFT", Decimal(7)),
        ("MSFT", Decimal(0)),
    ]
    assert len(calls["positionEnd"]) == 1  # only after the first batch
