"""Risk and positions fold order events as they are published, and still crash alone.

Folding in the publisher's step (the broker actor's) saves each a wake-up per
order; a bug in a fold must still crash that actor, not the broker that
published, and its supervisor restarts it.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.actors.harness import paper_service, submit
from ult_actors.actors import risk as risk_module
from ult_actors.messages import Event, Order, OrderUpdate
from ult_actors.runtime import ActorContext, EventBus


def _broker_restarts(svc: Any) -> int:
    brokers = svc.root.child("brokers").spec.supervisor
    return int(brokers.child("broker.paper").health.restarts)


async def _restarted(svc: Any, child: str) -> None:
    with trio.fail_after(10):
        while svc.root.child(child).health.restarts < 1:
            await trio.sleep(0.01)


def test_a_new_risk_incarnation_folds_what_is_published_before_its_tasks_run() -> None:
    # A restarted risk: a fill published right after it subscribed, before its reader's
    # first step, is in its books already (an order checked then must see it).
    bus: EventBus[Event] = EventBus()
    state = risk_module.RiskState()
    deps = risk_module.RiskDeps(
        limits=risk_module.RiskLimits(), brokers={}, bus=bus, state=state, now_ns=lambda: 5
    )
    ctx: ActorContext[Any] = ActorContext(
        "risk", None, incarnation=1, on_started=lambda: None, on_failed=lambda _: None
    )
    risk_module._Risk(deps, ctx)
    filled = Order(
        id="o1", client_order_id="c1", broker="paper", symbol="AAPL", side="buy",
        qty=Decimal(2), type="market", time_in_force="day", status="filled",
        filled_qty=Decimal(2), avg_fill_price=Decimal(10), updated_at=6,
    )
    bus.publish(OrderUpdate(order=filled))
    assert state.books[("paper", "AAPL")].qty == 2


async def test_fills_reach_risk_and_the_book_as_they_are_published(tmp_path: Path) -> None:
    async with paper_service(tmp_path) as (svc, _made):
        order = await submit(svc, qty=3)
        assert order.status == "filled"
        # Nothing else has run since the broker answered: both folded it in its step.
        assert svc.risk_state.books[("paper", "AAPL")].qty == 3
        assert svc.book.holdings[("paper", "AAPL")].qty == 3


async def test_a_bug_in_risk_s_fold_crashes_risk_not_the_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = risk_module.apply_event
    bugs = 0

    def buggy_once(*args: Any) -> None:
        nonlocal bugs
        if bugs < 2:  # inline, then in risk's own step
            bugs += 1
            raise ZeroDivisionError("a bug")
        real(*args)

    async with paper_service(tmp_path) as (svc, _made):
        monkeypatch.setattr(svc.risk_deps, "fold", buggy_once)
        assert (await submit(svc, qty=1)).status == "filled"  # the publisher went on
        await _restarted(svc, "risk")
        assert _broker_restarts(svc) == 0
        assert (await submit(svc, qty=2)).status == "filled"
        assert svc.risk_state.books[("paper", "AAPL")].qty >= 2  # risk folds again
