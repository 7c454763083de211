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
from ult_actors.errors import Internal
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
