"""Risk's check runs in the router's step when that is the same as a hop through risk.

The gate (``RiskGate``) saves a new order the trip through risk's mailbox
while a risk incarnation serves and nothing waits there; otherwise the order
queues behind what does. A bug in the check still crashes risk, not the
router, and risk's supervisor restarts it.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.actors.harness import paper_service, refused, req, submit
from ult_actors.actors import risk as risk_module
from ult_actors.actors.commands import SeedPositions
from ult_actors.actors.risk import RiskGate
from ult_actors.errors import Internal, RiskRejected
from ult_actors.messages import OrderRequest, SetTradingState
from ult_actors.runtime import Mailbox


async def test_orders_are_checked_without_a_trip_through_risk_s_mailbox(tmp_path: Path) -> None:
    async with paper_service(tmp_path, max_order_qty=Decimal(5)) as (svc, _made):
        await trio.testing.wait_all_tasks_blocked()  # risk has read what start-up sent it
        handled = svc.mailboxes.risk.handled
        assert (await submit(svc, qty=5)).status == "filled"
        assert (await refused(svc, qty=6)).limit == "max_order_qty"  # still risk's limits
        assert svc.mailboxes.risk.handled == handled  # neither went through its mailbox
        await svc.gateway.handle(SetTradingState(id=1, state="halted"))
        assert (await refused(svc, qty=1)).limit == "trading_state"


async def test_an_order_goes_through_risk_s_mailbox_behind_what_waits_there() -> None:
    mailbox: Mailbox[Any] = Mailbox()
    gate = RiskGate(mailbox)
    seen: list[str] = []
    request = req(qty=1)
    assert not gate.admit(request, 1.0)  # no incarnation serves: through the mailbox
    gate.open(lambda r, _deadline, _now: seen.append(r.symbol))
    mailbox.send_nowait(SeedPositions(broker="paper", positions=[]))
    assert not gate.admit(request, 1.0)  # something waits: the order queues behind it
    assert seen == []
    mailbox.receive_nowait()
    assert gate.admit(request, 1.0)
    assert seen == ["AAPL"]
    gate.close()
    assert not gate.admit(request, 1.0)


async def test_a_bug_in_the_check_crashes_risk_which_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = risk_module.check_order

    def buggy_for_two(state: Any, limits: Any, request: OrderRequest, *rest: Any) -> None:
        # The bug hits one order (qty 2) wherever it is checked: in the router's step
        # through the gate, then in risk's own, or only there while the gate is shut
        # (risk's incarnation not serving yet, or news waiting in its mailbox).
        if request.qty == 2:
            raise ZeroDivisionError("a bug")
        real(state, limits, request, *rest)

    async with paper_service(tmp_path, max_order_qty=Decimal(5)) as (svc, _made):
        monkeypatch.setattr(svc.risk_deps, "check", buggy_for_two)
        with pytest.raises(Internal) as info:
            await submit(svc, qty=2)
        assert "crashed actor risk (ZeroDivisionError)" in info.value.message
        with trio.fail_after(10):
            while svc.root.child("risk").health.restarts < 1:
                await trio.sleep(0.01)
        assert svc.root.child("router").health.restarts == 0
        assert (await submit(svc, qty=1)).status == "filled"  # risk is back, and passes it
        assert svc.root.child("risk").health.restarts == 1
        assert (await refused(svc, qty=6)).limit == "max_order_qty"  # and refuses as before


@pytest.mark.parametrize("limits", [{}, {"max_position_per_symbol": Decimal(10)}])
async def test_the_gate_counts_a_new_order_open_as_risk_s_own_check_and_count_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limits: dict[str, Any]
) -> None:
    # The gate's admit reads an order's fields once for the check and its count, and sums
    # its side's open quantity once (with a position limit, the check worked it out);
    # a replaced check takes the plain way: ``check_order``, then ``set_open``.
    seen: list[tuple[dict[Any, Decimal], dict[str, tuple[Any, Decimal]], list[str]]] = []
    real = risk_module.check_order

    def replaced(state: Any, limits: Any, request: OrderRequest, *rest: Any) -> None:
        real(state, limits, request, *rest)

    for plain in (False, True):
        async with paper_service(tmp_path / str(plain), **limits) as (svc, _made):
            await trio.testing.wait_all_tasks_blocked()
            if plain:
                monkeypatch.setattr(svc.risk_deps, "check", replaced)
            state = svc.risk_deps.state
            refusals: list[str] = []
            for qty in (3, 4, 4, 3, 1):  # resting buys: none fills at 50
                try:
                    await submit(svc, qty=qty, limit_price=50)
                except RiskRejected as exc:
                    refusals.append(f"{exc.limit}: {exc}")
            await submit(svc, qty=2, side="sell", limit_price=200)
            by_coid = {coid: (o.key, o.qty) for coid, o in state.open_orders.items()}
            seen.append((dict(state.open_qty), by_coid, refusals))
            # One order open on its side: its own quantity object, which its drop finds.
            sells = [o for o in state.open_orders.values() if o.key[2] == "sell"]
            assert len(sells) == 1 and state.open_qty[sells[0].key] is sells[0].qty
    gate, plain_way = seen
    assert gate[0] == plain_way[0]
    assert [v for _, v in sorted(gate[1].items())] == [v for _, v in sorted(plain_way[1].items())]
    assert gate[2] == plain_way[2]
    if limits:
        assert gate[0][("paper", "AAPL", "buy")] == 10  # 3 + 4 + 3; 4 and 1 refused
        assert len(gate[2]) == 2 and "max_position_per_symbol" in gate[2][0]
    else:
        assert gate[0][("paper", "AAPL", "buy")] == 15 and gate[2] == []
