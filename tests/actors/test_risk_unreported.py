"""An order that never reached its broker stops counting against risk limits."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.actors.harness import NOW_NS, paper_service, req, update
from ult_actors.actors.risk import RiskLimits, RiskState, apply_event, check_order
from ult_actors.errors import RiskRejected
from ult_actors.messages import OrderReply, SetTradingState, Submit


def test_an_order_its_broker_never_reported_frees_its_slot_after_its_deadline() -> None:
    limits, state = RiskLimits(max_open_orders=1), RiskState()
    lost = req()
    state.set_open(lost)
    state.unconfirmed[lost.client_order_id] = 40.0  # type: ignore[index]
    state.forget_unreported(now=39.0)
    with pytest.raises(RiskRejected) as held:  # still held before the give-up time
        check_order(state, limits, req(), 39.0)
    assert held.value.limit == "max_open_orders"
    state.forget_unreported(now=41.0)
    check_order(state, limits, req(), 41.0)  # the slot is free again
    assert state.open_orders == {} and state.open_qty == {}


def test_a_reported_order_keeps_its_slot_past_the_deadline() -> None:
    limits, state = RiskLimits(max_open_orders=1), RiskState()
    resting = req()
    coid = resting.client_order_id
    assert coid is not None
    state.set_open(resting)
    state.unconfirmed[coid] = 40.0
    apply_event(state, update(coid, "accepted"), NOW_NS)
    state.forget_unreported(now=1000.0)
    assert coid in state.open_orders
    with pytest.raises(RiskRejected) as held:  # a resting order keeps counting
        check_order(state, limits, req(), 1000.0)
    assert held.value.limit == "max_open_orders"


async def test_after_a_restart_reducing_allows_closing_a_position_held_before_it(
    tmp_path: Path,
) -> None:
    async with paper_service(tmp_path) as (svc, _):
        await svc.gateway.handle(Submit(id=1, order=req(qty=10, broker=None)))
    # A new service on the same state: risk has seen no fills, only the broker's report.
    async with paper_service(tmp_path) as (svc, _):
        with trio.fail_after(10):
            while "paper" not in svc.risk_state.seeded:
                await trio.sleep(0.01)
        await svc.gateway.handle(SetTradingState(id=2, state="reducing", broker="paper"))
        closing = await svc.gateway.handle(
            Submit(id=3, order=req(side="sell", qty=10, broker=None))
        )
        assert isinstance(closing, OrderReply) and closing.order.status == "filled"
        with pytest.raises(RiskRejected) as refused:  # and nothing more than that
            await svc.gateway.handle(Submit(id=4, order=req(side="sell", qty=1, broker=None)))
        assert refused.value.limit == "trading_state"
