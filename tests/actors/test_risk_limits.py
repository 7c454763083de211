"""Every pre-trade risk limit: one test that trips it, one that it lets through what it should.

Single checks are pure-function tests of ``check_order``/``apply_event``;
what spans actors (kill switch, trading state set over the gateway, limits
fed by real fills and cancels) runs the service tree on the paper broker.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.actors.harness import (
    DAY_NS,
    NOW_NS,
    fill,
    paper_service,
    refused,
    req,
    settle,
    submit,
    update,
)
from ult_actors.actors.risk import RiskLimits, RiskState, apply_event, check_order
from ult_actors.errors import RiskRejected
from ult_actors.messages import (
    Cancel,
    OrderRequest,
    SetKillSwitch,
    SetTradingState,
)


def rejected_by(
    state: RiskState, limits: RiskLimits, request: OrderRequest, now: float = 0.0
) -> str:
    with pytest.raises(RiskRejected) as info:
        check_order(state, limits, request, now)
    assert info.value.limit is not None
    return info.value.limit


# -- single limits ---------------------------------------------------------------------


def test_max_order_qty() -> None:
    limits, state = RiskLimits(max_order_qty=Decimal(100)), RiskState()
    assert rejected_by(state, limits, req(qty=101)) == "max_order_qty"
    check_order(state, limits, req(qty=100), 0.0)


def test_max_order_notional_prices_limits_at_their_limit_and_markets_at_the_last_fill() -> None:
    limits, state = RiskLimits(max_order_notional=Decimal(1000)), RiskState()
    assert rejected_by(state, limits, req(qty=10, limit_price="100.01")) == "max_order_notional"
    check_order(state, limits, req(qty=10, limit_price=100), 0.0)
    # A market order with no price seen yet cannot be sized: refused, naming the limit.
    assert rejected_by(state, limits, req(qty=1)) == "max_order_notional"
    fill(state, "buy", 1, "50")
    check_order(state, limits, req(qty=20), 0.0)
    assert rejected_by(state, limits, req(qty=21)) == "max_order_notional"


def test_max_position_per_symbol_counts_open_orders_on_the_same_side() -> None:
    limits, state = RiskLimits(max_position_per_symbol=Decimal(100)), RiskState()
    fill(state, "buy", 80, "10")
    check_order(state, limits, req(qty=20), 0.0)
    assert rejected_by(state, limits, req(qty=21)) == "max_position_per_symbol"
    apply_event(state, update("pending-buy", "accepted", qty=15), NOW_NS)
    assert rejected_by(state, limits, req(qty=10)) == "max_position_per_symbol"
    check_order(state, limits, req(qty=5), 0.0)
    # Selling through to a short is fine while the short stays within the limit.
    check_order(state, limits, req(side="sell", qty=180), 0.0)
    assert rejected_by(state, limits, req(side="sell", qty=181)) == "max_position_per_symbol"
    # Other symbols have their own room.
    check_order(state, limits, req(symbol="MSFT", qty=100), 0.0)


def test_max_open_orders_frees_a_slot_when_an_order_ends() -> None:
    limits, state = RiskLimits(max_open_orders=2), RiskState()
    apply_event(state, update("o-1", "accepted"), NOW_NS)
    check_order(state, limits, req(), 0.0)
    apply_event(state, update("o-2", "partially_filled", filled=4, avg="10"), NOW_NS)
    assert rejected_by(state, limits, req()) == "max_open_orders"
    apply_event(state, update("o-1", "canceled"), NOW_NS)
    check_order(state, limits, req(), 0.0)


def test_max_orders_per_second_is_a_token_bucket() -> None:
    limits, state = RiskLimits(max_orders_per_second=2), RiskState()
    t = 5_000.0
    check_order(state, limits, req(), t)
    check_order(state, limits, req(), t)
    assert rejected_by(state, limits, req(), t) == "max_orders_per_second"
    check_order(state, limits, req(), t + 0.5)  # half a second refills one token
    assert rejected_by(state, limits, req(), t + 0.5) == "max_orders_per_second"
    check_order(state, limits, req(), t + 10)
    check_order(state, limits, req(), t + 10)  # a long pause refills only up to the burst
    assert rejected_by(state, limits, req(), t + 10) == "max_orders_per_second"


def test_max_orders_per_second_starts_full_whatever_the_clock_reads() -> None:
    # trio's MockClock starts at 0: the first order must still pass.
    limits, state = RiskLimits(max_orders_per_second=5), RiskState()
    check_order(state, limits, req(), 0.0)


def test_max_orders_per_second_below_one_allows_one_order_per_interval() -> None:
    limits, state = RiskLimits(max_orders_per_second=0.5), RiskState()
    check_order(state, limits, req(), 100.0)
    assert rejected_by(state, limits, req(), 101.0) == "max_orders_per_second"
    check_order(state, limits, req(), 102.0)


def test_daily_loss_limit_counts_realized_losses_of_the_day() -> None:
    limits, state = RiskLimits(daily_loss_limit=Decimal(100)), RiskState()
    fill(state, "buy", 10, "100")
    fill(state, "sell", 10, "91")  # -90
    check_order(state, limits, req(), 0.0)
    fill(state, "buy", 10, "100")
    fill(state, "sell", 10, "99")  # -100 in all: the limit is reached
    assert rejected_by(state, limits, req()) == "daily_loss_limit"
    # Gains of the same day count against the losses.
    fill(state, "buy", 10, "100")
    fill(state, "sell", 10, "101")
    check_order(state, limits, req(), 0.0)


def test_a_fill_on_the_next_day_counts_from_a_clean_slate_and_back_again() -> None:
    # The fold alone tells the day (no order checked in between), both ways of the clock.
    state = RiskState()
    fill(state, "buy", 30, "100")
    fill(state, "sell", 10, "95")  # -50 today
    assert state.realized_today == -50
    fill(state, "sell", 10, "98", now_ns=NOW_NS + DAY_NS)  # the next day: only its -20
    assert state.realized_today == -20
    fill(state, "sell", 10, "99", now_ns=NOW_NS)  # a clock set back: that day starts over
    assert state.realized_today == -10


def test_daily_loss_limit_counts_a_short_covered_at_a_loss() -> None:
    limits, state = RiskLimits(daily_loss_limit=Decimal(50)), RiskState()
    fill(state, "sell", 10, "100")
    fill(state, "buy", 10, "105")
    assert rejected_by(state, limits, req()) == "daily_loss_limit"


def test_allowed_symbols() -> None:
    limits, state = RiskLimits(allowed_symbols=frozenset({"AAPL", "EUR_USD"})), RiskState()
    assert rejected_by(state, limits, req(symbol="MSFT")) == "allowed_symbols"
    check_order(state, limits, req(symbol="EUR_USD"), 0.0)
    # An empty list means every symbol.
    check_order(RiskState(), RiskLimits(), req(symbol="MSFT"), 0.0)


def test_trading_state_halted_refuses_every_order() -> None:
    state = RiskState(trading="halted")
    fill(state, "buy", 10, "100")
    assert rejected_by(state, RiskLimits(), req(side="sell")) == "trading_state"
    check_order(RiskState(trading="active"), RiskLimits(), req(), 0.0)


def test_trading_state_reducing_lets_through_only_orders_that_shrink_a_position() -> None:
    state, limits = RiskState(trading="reducing"), RiskLimits()
    assert rejected_by(state, limits, req()) == "trading_state"  # flat: nothing to reduce
    fill(state, "buy", 10, "100")
    assert rejected_by(state, limits, req(qty=1)) == "trading_state"  # adds
    assert rejected_by(state, limits, req(side="sell", qty=11)) == "trading_state"  # flips
    check_order(state, limits, req(side="sell", qty=10), 0.0)
    check_order(state, limits, req(side="sell", qty=4), 0.0)


def test_trading_state_reducing_counts_sells_already_open() -> None:
    state, limits = RiskState(trading="reducing"), RiskLimits()
    fill(state, "buy", 10, "100")
    apply_event(state, update("open-sell", "accepted", side="sell", qty=6), NOW_NS)
    check_order(state, limits, req(side="sell", qty=4), 0.0)
    # Together with the open sell of 6 this would turn the long into a short.
    assert rejected_by(state, limits, req(side="sell", qty=5)) == "trading_state"


def test_a_broker_trading_state_applies_to_that_broker_only_and_the_stricter_wins() -> None:
    state = RiskState(trading="reducing", broker_trading={"other": "halted"})
    fill(state, "buy", 10, "100")
    check_order(state, RiskLimits(), req(side="sell", qty=5), 0.0)
    fill_other = update("o", "filled", qty=10, filled=10, avg="1", broker="other")
    apply_event(state, fill_other, NOW_NS)
    assert rejected_by(state, RiskLimits(), req(side="sell", broker="other")) == "trading_state"


def test_the_risk_view_ignores_repeated_updates() -> None:
    state = RiskState()
    fill(state, "buy", 10, "100")
    done = update("twice", "filled", qty=5, filled=5, avg="100")
    apply_event(state, update("twice", "accepted", qty=5), NOW_NS)
    for _ in range(3):  # the same final report, again and again
        apply_event(state, done, NOW_NS)
    assert state.books[("paper", "AAPL")].qty == 15
    assert state.open_orders == {}


# -- across actors, on the paper broker ------------------------------------------------------


async def test_the_kill_switch_halts_cancels_resting_paper_orders_and_can_be_undone(
    tmp_path: Path,
) -> None:
    async with paper_service(tmp_path) as (svc, made):
        resting = [await submit(svc, limit_price=90, time_in_force="gtc") for _ in range(3)]
        reply = await svc.gateway.handle(SetKillSwitch(id=1, on=True))
        assert "3 orders canceled" in reply.detail  # type: ignore[union-attr]
        paper = made["paper"][-1]
        assert await paper.open_orders() == []
        for order in resting:
            assert (await paper.get_order(order.id)).status == "canceled"
        assert (await refused(svc)).limit == "trading_state"
        await svc.gateway.handle(SetKillSwitch(id=2, on=False))
        assert (await submit(svc)).status == "filled"


async def test_reducing_over_the_gateway_lets_a_paper_position_be_closed_but_not_grown(
    tmp_path: Path,
) -> None:
    async with paper_service(tmp_path) as (svc, _):
        await submit(svc, qty=10)
        await settle()
        await svc.gateway.handle(SetTradingState(id=1, state="reducing"))
        assert (await refused(svc, qty=1)).limit == "trading_state"
        assert (await refused(svc, side="sell", qty=11)).limit == "trading_state"
        assert (await submit(svc, side="sell", qty=6)).status == "filled"
        await settle()
        assert (await refused(svc, side="sell", qty=5)).limit == "trading_state"
        assert (await submit(svc, side="sell", qty=4)).status == "filled"


async def test_halting_one_broker_leaves_the_others_trading(tmp_path: Path) -> None:
    async with paper_service(tmp_path, "one", "two") as (svc, _):
        await svc.gateway.handle(SetTradingState(id=1, state="halted", broker="two"))
        assert (await refused(svc, broker="two")).limit == "trading_state"
        assert (await submit(svc, broker="one")).status == "filled"
        await svc.gateway.handle(SetTradingState(id=2, state="active", broker="two"))
        assert (await submit(svc, broker="two")).status == "filled"


async def test_halted_still_lets_cancels_through(tmp_path: Path) -> None:
    async with paper_service(tmp_path) as (svc, _):
        resting = await submit(svc, limit_price=90, time_in_force="gtc")
        await svc.gateway.handle(SetTradingState(id=1, state="halted"))
        reply = await svc.gateway.handle(Cancel(id=2, order_id=resting.id))
        assert reply.order.status == "canceled"  # type: ignore[union-attr]


async def test_max_open_orders_follows_resting_paper_orders_and_their_cancels(
    tmp_path: Path,
) -> None:
    async with paper_service(tmp_path, max_open_orders=2) as (svc, _):
        first = await submit(svc, limit_price=90, time_in_force="gtc")
        await submit(svc, limit_price=90, time_in_force="gtc")
        assert (await refused(svc, limit_price=90, time_in_force="gtc")).limit == "max_open_orders"
        await svc.gateway.handle(Cancel(id=1, order_id=first.id))
        await settle()
        assert (await submit(svc, limit_price=90, time_in_force="gtc")).status == "accepted"


async def test_daily_loss_limit_trips_on_real_fills_and_resets_the_next_day(
    tmp_path: Path,
) -> None:
    now = [NOW_NS]
    async with paper_service(tmp_path, now_ns=lambda: now[0], daily_loss_limit=Decimal(100)) as (
        svc,
        made,
    ):
        await submit(svc, qty=10)  # at 100
        made["paper"][-1].set_price("AAPL", Decimal(95))
        await submit(svc, side="sell", qty=10)  # -50: under the limit
        await settle()
        await submit(svc, qty=10)  # at 95
        made["paper"][-1].set_price("AAPL", Decimal(90))
        await submit(svc, side="sell", qty=10)  # -100 for the day
        await settle()
        assert (await refused(svc)).limit == "daily_loss_limit"
        now[0] += DAY_NS  # a new trading day starts with a clean slate
        assert (await submit(svc)).status == "filled"


async def test_max_order_qty_refuses_before_the_paper_broker_sees_the_order(
    tmp_path: Path,
) -> None:
    async with paper_service(tmp_path, max_order_qty=Decimal(50)) as (svc, made):
        assert (await refused(svc, qty=51)).limit == "max_order_qty"
        assert await made["paper"][-1].open_orders() == []
        assert await made["paper"][-1].positions() == []
        assert (await submit(svc, qty=50)).filled_qty == 50
