"""An order that never reached its broker stops counting against risk limits."""

from __future__ import annotations

import pytest

from tests.actors.test_risk_limits import NOW_NS, req, update
from ult_actors.actors.risk import RiskLimits, RiskState, apply_event, check_order
from ult_actors.errors import RiskRejected


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
