"""Paper-broker behaviour beyond the contract: matching, money, persistence, time."""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from tests.brokers.contract import UpdateLog
from ult_actors.brokers.paper.account import exposure_increase
from ult_actors.brokers.paper.connector import PaperConnector, reset_paper_state
from ult_actors.brokers.paper.feed import PriceFeed
from ult_actors.brokers.paper.settings import PaperSettings, paper_settings_from_env
from ult_actors.errors import (
    AlreadyFinal,
    BrokerUnavailable,
    ConfigError,
    DuplicateOrder,
    InsufficientFunds,
    InvalidOrder,
    NotFound,
    NotReplaceable,
)
from ult_actors.messages import Account, Order, OrderListRequest, OrderRequest, ReplaceRequest

# Exact arithmetic: no slippage, no impact, one cent a share, no clock.
EXACT: dict[str, Any] = {
    "slippage_bps": Decimal(0),
    "size_impact_bps_per_share": Decimal(0),
    "commission_per_share": Decimal("0.01"),
    "tick_interval_s": 0,
    "start_prices": {"AAPL": Decimal(100)},
}


def settings(path: Path | str, **overrides: Any) -> PaperSettings:
    return PaperSettings(**{**EXACT, "state_path": str(path), **overrides})


@asynccontextmanager
async def paper(
    path: Path | str, *, now_ns: Any = None, **overrides: Any
) -> AsyncIterator[tuple[PaperConnector, UpdateLog]]:
    kwargs = {"now_ns": now_ns} if now_ns else {}
    connector = PaperConnector("paper", settings(path, **overrides), **kwargs)
    await connector.connect()
    log = UpdateLog()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(connector.stream_updates, log.sink)
            yield connector, log
            nursery.cancel_scope.cancel()
    finally:
        await connector.disconnect()


_n = iter(range(1, 1_000_000))


def order(**fields: Any) -> OrderRequest:
    fields.setdefault("symbol", "AAPL")
    fields.setdefault("side", "buy")
    fields["qty"] = Decimal(str(fields.get("qty", 10)))
    for key in ("limit_price", "stop_price"):
        if key in fields:
            fields[key] = Decimal(str(fields[key]))
    fields.setdefault("client_order_id", f"t-{next(_n)}")
    return OrderRequest(**fields)


async def final(log: UpdateLog, placed: Order) -> Order:
    """The order once terminal, as streamed."""
    update = await log.wait_for(
        lambda u: (
            u.order.id == placed.id
            and u.order.status in ("filled", "canceled", "expired", "rejected")
        ),
        timeout=5,
    )
    return update.order


# -- the price walk --------------------------------------------------------------


def walk(seed: int, steps: int) -> list[dict[str, Decimal]]:
    feed = PriceFeed(
        random.Random(seed),
        start_prices={"AAPL": Decimal(190)},
        default_start_price=Decimal(100),
        volatility_bps=Decimal(10),
        price_decimals=4,
    )
    feed.price("AAPL")
    feed.price("EUR_USD")
    return [feed.step() for _ in range(steps)]


def test_the_price_walk_replays_under_the_same_seed_and_differs_under_another() -> None:
    first, again, other = walk(7, 50), walk(7, 50), walk(8, 50)
    assert first == again
    assert first != other
    assert abs(first[0]["AAPL"] - 190) < 5  # starts from the configured start price
    assert abs(first[0]["EUR_USD"] - 100) < 5
    assert len({p["AAPL"] for p in first}) > 40  # it does move


# -- matching ----------------------------------------------------------------------


async def test_an_order_above_the_displayed_size_fills_in_parts(tmp_path: Path) -> None:
    async with paper(tmp_path / "p.db", displayed_size=Decimal(100)) as (broker, log):
        placed = await broker.submit(order(qty=250))
        assert (placed.status, placed.filled_qty) == ("partially_filled", 100)
        broker.set_price("AAPL", Decimal(101))  # the next tick shows 100 more
        assert (await broker.get_order(placed.id)).filled_qty == 200
        broker.set_price("AAPL", Decimal(102))
        done = await final(log, placed)
        assert (done.status, done.filled_qty) == ("filled", 250)
        fills = [u.fill for u in log.for_client_id(placed.client_order_id) if u.fill]
        assert [(f.qty, f.price) for f in fills] == [(100, 100), (100, 101), (50, 102)]
        assert done.avg_fill_price == Decimal(100 * 100 + 100 * 101 + 50 * 102) / 250


async def test_ioc_fills_what_is_shown_and_cancels_the_rest(tmp_path: Path) -> None:
    async with paper(tmp_path / "p.db", displayed_size=Decimal(100)) as (broker, _):
        placed = await broker.submit(
            order(qty=250, type="limit", limit_price=101, time_in_force="ioc")
        )
        assert (placed.status, placed.filled_qty) == ("canceled", 100)
        assert await broker.open_orders() == []


async def test_the_stream_carries_every_fill_and_skips_states_an_answer_went_past(
    tmp_path: Path,
) -> None:
    async with paper(tmp_path / "p.db", displayed_size=Decimal(100)) as (broker, log):
        market = await broker.submit(order(qty=10))
        ioc = await broker.submit(
            order(qty=250, type="limit", limit_price=101, time_in_force="ioc")
        )
        resting = await broker.submit(order(type="limit", limit_price=95, time_in_force="gtc"))
        broker.set_price("AAPL", Decimal(94))
        await final(log, resting)

        def streamed(placed: Order) -> list[tuple[str, Decimal | None]]:
            updates = log.for_client_id(placed.client_order_id)
            return [(u.order.status, u.fill.qty if u.fill else None) for u in updates]

        # Filled inside submit: its fill, not the "accepted" its answer went past.
        assert streamed(market) == [("filled", 10)]
        # Each fill is reported, then where the order ended.
        assert streamed(ioc) == [("partially_filled", 100), ("canceled", None)]
        # A state the answer gave stays on the stream until a later call moves on.
        assert streamed(resting) == [("accepted", None), ("filled", 10)]


async def test_fok_fills_whole_or_not_at_all(tmp_path: Path) -> None:
    async with paper(tmp_path / "p.db", displayed_size=Decimal(100)) as (broker, _):
        too_big = await broker.submit(order(qty=250, time_in_force="fok"))
        assert (too_big.status, too_big.filled_qty) == ("canceled", 0)
        fits = await broker.submit(order(qty=100, time_in_force="fok"))
        assert (fits.status, fits.filled_qty) == ("filled", 100)
        assert {p.symbol: p.qty for p in await broker.positions()} == {"AAPL": 100}


async def test_a_resting_limit_fills_when_the_price_crosses_it(tmp_path: Path) -> None:
    async with paper(tmp_path / "p.db") as (broker, log):
        placed = await broker.submit(order(type="limit", limit_price=95, time_in_force="gtc"))
        assert placed.status == "accepted"
        broker.set_price("AAPL", Decimal("95.01"))
        assert (await broker.get_order(placed.id)).status == "accepted"
        broker.set_price("AAPL", Decimal("94.50"))
        done = await final(log, placed)
        assert done.status == "filled"
        assert done.avg_fill_price == Decimal("94.50")  # at the market, never worse than the limit


async def test_slippage_and_size_impact_never_trade_through_a_limit(tmp_path: Path) -> None:
    async with paper(
        tmp_path / "p.db", slippage_bps=Decimal(10), size_impact_bps_per_share=Decimal("0.1")
    ) as (broker, _):
        market = await broker.submit(order(qty=100))
        # 10 bps + 100 shares * 0.1 bps = 20 bps worse than 100.
        assert market.avg_fill_price == Decimal("100.2000")
        capped = await broker.submit(order(qty=100, type="limit", limit_price="100.05"))
        assert capped.avg_fill_price == Decimal("100.05")
        sold = await broker.submit(order(qty=100, side="sell"))
        assert sold.avg_fill_price == Decimal("99.8000")


async def test_a_stop_triggers_on_the_tick_the_walk_crosses_it(tmp_path: Path) -> None:
    async with paper(
        tmp_path / "p.db", seed=3, volatility_bps=Decimal(50), slippage_bps=Decimal(0)
    ) as (broker, log):
        stop = Decimal("101.5")
        placed = await broker.submit(order(type="stop", stop_price=stop, time_in_force="gtc"))
        assert placed.status == "accepted"
        for _ in range(500):
            before = (await broker.get_order(placed.id)).status
            broker.tick()
            price = broker.price("AAPL")
            if price >= stop:
                break
            assert before == (await broker.get_order(placed.id)).status == "accepted"
        else:
            pytest.fail("the seeded walk never reached the stop")
        done = await final(log, placed)
        assert done.status == "filled"
        assert done.avg_fill_price == price  # filled at the price that crossed, as a market order


async def test_a_stop_limit_triggers_but_waits_for_its_limit(tmp_path: Path) -> None:
    async with paper(tmp_path / "p.db") as (broker, log):
        placed = await broker.submit(
            order(type="stop_limit", stop_price=105, limit_price="105.50", time_in_force="gtc")
        )
        broker.set_price("AAPL", Decimal(107))  # triggered, but above the limit
        assert (await broker.get_order(placed.id)).status == "accepted"
        broker.set_price("AAPL", Decimal("105.20"))
        done = await final(log, placed)
        assert (done.status, done.avg_fill_price) == ("filled", Decimal("105.20"))


async def test_an_order_resting_as_it_arrived_is_reported_once_at_the_time_it_was_accepted(
    tmp_path: Path,
) -> None:
    clock = iter(range(1_000, 1_000_000, 7))
    async with paper(tmp_path / "p.db", now_ns=lambda: next(clock)) as (broker, log):
        resting = await broker.submit(order(type="limit", limit_price=95, time_in_force="gtc"))
        broker.set_price("AAPL", Decimal(101))  # a later call: the stream has the first one
        await log.wait_for(lambda u: u.order.id == resting.id)
        [update] = log.for_client_id(resting.client_order_id)
        assert update.order == resting and update.fill is None
        assert update.ts == resting.created_at == resting.updated_at


async def test_a_stop_limit_triggered_on_arrival_stays_triggered_in_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.db"
    async with paper(path) as (broker, _):
        # AAPL at 100: past the stop at once, above the limit, so it rests triggered.
        placed = await broker.submit(
            order(type="stop_limit", stop_price=99, limit_price="99.50", time_in_force="gtc")
        )
        assert placed.status == "accepted"
    async with paper(path) as (again, log):
        again.set_price("AAPL", Decimal(98))  # under the stop: only a triggered order fills
        done = await final(log, placed)
        assert (done.status, done.avg_fill_price) == ("filled", Decimal(98))


async def test_a_sell_stop_protects_a_long_position(tmp_path: Path) -> None:
    async with paper(tmp_path / "p.db") as (broker, log):
        await broker.submit(order(qty=10))
        stop = await broker.submit(
            order(side="sell", type="stop", stop_price=90, time_in_force="gtc")
        )
        broker.set_price("AAPL", Decimal(91))
        assert (await broker.get_order(stop.id)).status == "accepted"
        broker.set_price("AAPL", Decimal(89))
        assert (await final(log, stop)).avg_fill_price == 89
        assert await broker.positions() == []


async def test_day_orders_expire_when_the_date_changes_and_gtc_orders_stay(
    tmp_path: Path,
) -> None:
    day_ns = 86_400 * 10**9
    now = [20_000 * day_ns + 3_600 * 10**9]
    async with paper(tmp_path / "p.db", now_ns=lambda: now[0]) as (broker, log):
        day = await broker.submit(order(type="limit", limit_price=50, time_in_force="day"))
        gtc = await broker.submit(order(type="limit", limit_price=50, time_in_force="gtc"))
        broker.tick()
        assert {o.id for o in await broker.open_orders()} == {day.id, gtc.id}
        now[0] += day_ns
        broker.tick()
        assert (await final(log, day)).status == "expired"
        assert [o.id for o in await broker.open_orders()] == [gtc.id]


async def test_auction_time_in_force_is_refused_naming_the_field(tmp_path: Path) -> None:
    async with paper(tmp_path / "p.db") as (broker, _):
        with pytest.raises(InvalidOrder) as info:
            await broker.submit(order(time_in_force="opg"))
        assert info.value.field == "time_in_force"
        with pytest.raises(InvalidOrder) as info:
            await broker.submit(order(type="limit"))
        assert info.value.field == "limit_price"


async def test_latency_acknowledges_at_once_and_fills_later(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with paper(tmp_path / "p.db", latency_ms=250) as (broker, log):
        start = trio.current_time()
        placed = await broker.submit(order())
        assert placed.status == "accepted"
        assert trio.current_time() == start  # submit did not wait
        done = await final(log, placed)
        assert done.status == "filled"
        assert trio.current_time() - start == pytest.approx(0.25)
        # Canceled while travelling: it never reaches the market.
        travelling = await broker.submit(order())
        await broker.cancel(travelling.id)
        await trio.sleep(1)
        assert (await broker.get_order(travelling.id)).filled_qty == 0


# -- money ---------------------------------------------------------------------------


async def test_overdrawing_buying_power_is_insufficient_funds(tmp_path: Path) -> None:
    async with paper(tmp_path / "p.db", starting_cash=Decimal(1000)) as (broker, _):
        with pytest.raises(InsufficientFunds, match="buying power"):
            await broker.submit(order(qty=10))  # 1000 + commission
        resting = await broker.submit(
            order(qty=5, type="limit", limit_price=99, time_in_force="gtc")
        )
        # The resting order holds 5 * 99 of the buying power.
        assert (await broker.account()).buying_power == 1000 - 495
        with pytest.raises(InsufficientFunds):
            await broker.submit(order(qty=6))
        await broker.cancel(resting.id)
        bought = await broker.submit(order(qty=9))
        assert bought.status == "filled"
        # Selling what is held needs no buying power.
        assert (await broker.submit(order(qty=9, side="sell"))).status == "filled"


async def test_a_short_uses_buying_power_like_a_long(tmp_path: Path) -> None:
    async with paper(tmp_path / "p.db", starting_cash=Decimal(10_000)) as (broker, _):
        await broker.submit(order(qty=40, side="sell"))
        account = await broker.account()
        assert account.cash == Decimal(10_000) + 4000 - Decimal("0.40")
        assert account.equity == Decimal(10_000) - Decimal("0.40")
        assert account.buying_power == Decimal(6000) - Decimal("0.40")
        with pytest.raises(InsufficientFunds):
            await broker.submit(order(qty=61, side="sell"))


async def test_positions_carry_average_price_and_realized_and_unrealized_pl(
    tmp_path: Path,
) -> None:
    async with paper(tmp_path / "p.db") as (broker, _):
        await broker.submit(order(qty=10))  # 10 @ 100
        broker.set_price("AAPL", Decimal(110))
        await broker.submit(order(qty=10))  # 10 @ 110: average 105
        (pos,) = await broker.positions()
        assert (pos.qty, pos.avg_entry_price) == (20, 105)
        assert pos.unrealized_pl == (110 - 105) * 20
        assert pos.market_value == 2200
        await broker.submit(order(qty=5, side="sell"))  # realizes (110 - 105) * 5
        (pos,) = await broker.positions()
        assert (pos.qty, pos.avg_entry_price) == (15, 105)
        commissions = Decimal("0.25")  # 25 shares at one cent
        assert pos.realized_pl == 25 - commissions
        account = await broker.account()
        assert account.equity == Decimal(100_000) + pos.realized_pl + pos.unrealized_pl
        broker.set_price("AAPL", Decimal(100))
        await broker.submit(order(qty=15, side="sell"))  # closes at a loss of 5 * 15
        assert await broker.positions() == []
        assert broker.venue.realized_pl("AAPL") == 25 - 75 - Decimal("0.40")
        assert (await broker.account()).cash == Decimal(100_000) + 25 - 75 - Decimal("0.40")


def expected_buying_power(account: Account, orders: list[Order], marks: dict[str, Decimal],
                          positions: dict[str, Decimal]) -> Decimal:
    """Buying power from scratch: equity less gross exposure less what open orders hold."""
    equity = account.cash + sum((q * marks[s] for s, q in positions.items()), Decimal(0))
    gross = sum((abs(q) * marks[s] for s, q in positions.items()), Decimal(0))
    reserved = Decimal(0)
    for o in orders:
        adds = exposure_increase(positions.get(o.symbol, Decimal(0)), o.side, o.qty - o.filled_qty)
        mark = marks[o.symbol]
        if o.limit_price is not None:
            reference = o.limit_price
        elif o.stop_price is not None:
            reference = max(o.stop_price, mark) if o.side == "buy" else o.stop_price
        else:
            reference = mark  # no slippage here
        reserved += adds * reference
    return equity - gross - reserved


async def test_buying_power_follows_every_order_fill_and_price_move(tmp_path: Path) -> None:
    # The venue keeps each symbol's reserve between orders: it must never go stale.
    rng = random.Random(3)
    symbols = ("AAPL", "MSFT", "SPY")
    refusals = (InsufficientFunds, InvalidOrder, AlreadyFinal, NotReplaceable, NotFound)
    async with paper(tmp_path / "p.db", starting_cash=Decimal(40_000)) as (broker, _):
        for _ in range(300):
            resting = await broker.open_orders()
            step = rng.random()
            symbol = rng.choice(symbols)
            price = broker.price(symbol)
            side = rng.choice(("buy", "sell"))
            qty = rng.randint(1, 30)
            with contextlib.suppress(*refusals):
                if step < 0.25:
                    away = Decimal(rng.randint(1, 10)) * (-1 if side == "buy" else 1)
                    await broker.submit(order(
                        symbol=symbol, side=side, qty=qty, type="limit",
                        limit_price=price + away, time_in_force="gtc",
                    ))  # fmt: skip
                elif step < 0.35:
                    away = Decimal(rng.randint(1, 10)) * (1 if side == "buy" else -1)
                    await broker.submit(order(
                        symbol=symbol, side=side, qty=qty, type="stop",
                        stop_price=price + away, time_in_force="gtc",
                    ))  # fmt: skip
                elif step < 0.45:
                    # A held market leg reserves at the market price: it moves with it.
                    await broker.submit_list(OrderListRequest(
                        contingency="oto", list_id=f"l-{next(_n)}", legs=[
                            order(symbol=symbol, qty=qty, type="limit",
                                  limit_price=price - 20, time_in_force="gtc"),
                            order(symbol=symbol, qty=qty),
                        ],
                    ))  # fmt: skip
                elif step < 0.55:
                    await broker.submit(order(symbol=symbol, side=side, qty=qty))
                elif step < 0.7:
                    broker.set_price(symbol, price + rng.randint(-6, 6))
                elif step < 0.75:
                    broker.tick()
                elif step < 0.85 and resting:
                    await broker.cancel(rng.choice(resting).id)
                elif step < 0.95 and resting:
                    target = rng.choice(resting)
                    await broker.replace(target, ReplaceRequest(
                        order_id=target.id, qty=target.qty + rng.randint(0, 20),
                        client_order_id=f"r-{next(_n)}",
                    ))  # fmt: skip
                elif resting:
                    broker.execute(rng.choice(resting).id, Decimal(rng.randint(1, 5)))
            account = await broker.account()
            positions = {p.symbol: p.qty for p in await broker.positions()}
            marks = {s: broker.price(s) for s in symbols}
            orders = await broker.open_orders()
            assert account.buying_power == expected_buying_power(account, orders, marks, positions)


# -- identity, persistence, reset --------------------------------------------------------


async def test_a_reused_client_order_id_is_a_duplicate_even_after_it_filled(
    tmp_path: Path,
) -> None:
    async with paper(tmp_path / "p.db") as (broker, _):
        first = await broker.submit(order(client_order_id="same"))
        with pytest.raises(DuplicateOrder) as info:
            await broker.submit(order(client_order_id="same", qty=3))
        assert info.value.field == "client_order_id"
        assert (await broker.get_order_by_client_id("same")).id == first.id


async def test_the_account_survives_a_new_connector_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    async with paper(path) as (broker, _):
        bought = await broker.submit(order(qty=10, client_order_id="b-1"))
        broker.set_price("AAPL", Decimal(104))
        resting = await broker.submit(
            order(type="limit", limit_price=99, time_in_force="gtc", client_order_id="r-1")
        )
        before = (await broker.account(), await broker.positions(), await broker.open_orders())
        fills = broker.venue.fills(bought.id)
    async with paper(path) as (again, log):
        assert (await again.account(), await again.positions(), await again.open_orders()) == before
        assert again.price("AAPL") == 104  # the market picks up where it was
        assert (await again.get_order_by_client_id("b-1")).status == "filled"
        assert again.venue.fills(bought.id) == fills
        with pytest.raises(DuplicateOrder):
            await again.submit(order(client_order_id="b-1"))
        newer = await again.submit(order(qty=1))
        assert newer.id not in {bought.id, resting.id}
        again.set_price("AAPL", Decimal(98))  # the reloaded resting order still works
        assert (await final(log, resting)).status == "filled"


async def test_a_second_connection_to_an_open_account_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    async with paper(path):
        other = PaperConnector("paper", settings(path))
        with pytest.raises(BrokerUnavailable, match="in use"):
            await other.connect()
        with pytest.raises(BrokerUnavailable, match="in use"):
            reset_paper_state(str(path))


async def test_reset_starts_a_fresh_account(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    async with paper(path, starting_cash=Decimal(5000)) as (broker, _):
        await broker.submit(order(qty=10, client_order_id="x-1"))
    assert reset_paper_state(str(path)) is True
    async with paper(path, starting_cash=Decimal(5000)) as (broker, _):
        account = await broker.account()
        assert (account.cash, account.equity) == (5000, 5000)
        assert await broker.positions() == []
        assert (await broker.submit(order(client_order_id="x-1"))).status == "filled"
    assert reset_paper_state(str(tmp_path / "never" / "p.db")) is False


async def test_a_memory_account_needs_no_file(tmp_path: Path) -> None:
    async with paper(":memory:") as (broker, _):
        assert (await broker.submit(order())).status == "filled"
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240  # a test's own tmp dir


async def test_a_memory_account_keeps_every_order_and_fill_in_the_venue_with_no_thread(
    tmp_path: Path,
) -> None:
    threads = threading.active_count()
    async with paper(":memory:") as (broker, _):
        assert threading.active_count() == threads  # nothing to write, so no writer
        first = await broker.submit(order(client_order_id="m-1", qty=4))
        await broker.submit(order(client_order_id="m-2", side="sell", qty=4))
        assert (await broker.get_order(first.id)).status == "filled"
        assert (await broker.get_order_by_client_id("m-2")).filled_qty == 4
        assert [f.qty for f in broker.venue.fills(first.id)] == [4]
        with pytest.raises(DuplicateOrder):
            await broker.submit(order(client_order_id="m-1"))


# -- configuration -------------------------------------------------------------------------


def test_environment_overrides_apply_to_the_paper_settings() -> None:
    env = {
        "PAPER_STARTING_CASH": "2500.50",
        "PAPER_LATENCY_MS": "20",
        "PAPER_SLIPPAGE_BPS": "3",
        "PAPER_COMMISSION_PER_SHARE": "0",
        "PAPER_SEED": "42",
    }
    got = paper_settings_from_env(env, PaperSettings())
    assert (got.starting_cash, got.latency_ms, got.slippage_bps) == (Decimal("2500.50"), 20, 3)
    assert (got.commission_per_share, got.seed) == (0, 42)
    assert paper_settings_from_env({}, PaperSettings()) == PaperSettings()


@pytest.mark.parametrize(
    ("name", "value"),
    [("PAPER_STARTING_CASH", "lots"), ("PAPER_LATENCY_MS", "1.5"), ("PAPER_SLIPPAGE_BPS", "-1")],
)
def test_a_bad_environment_value_is_a_config_error_naming_the_variable(
    name: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=name):
        paper_settings_from_env({name: value}, PaperSettings())


async def test_a_damaged_account_file_is_a_config_error_not_a_restart_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.db"
    path.write_bytes(b"this is not a database" * 100)  # the test's own file
    connector = PaperConnector("paper", settings(path))
    with pytest.raises(ConfigError, match=r"cannot be used.*ult paper reset"):
        await connector.connect()
    await connector.disconnect()
    assert reset_paper_state(str(path)) is True  # the advice works: the lock was released
    async with paper(path) as (broker, _):
        assert (await broker.account()).cash == PaperSettings().starting_cash


async def test_impossible_settings_refuse_to_connect_naming_the_key(tmp_path: Path) -> None:
    connector = PaperConnector("paper", settings(tmp_path / "p.db", price_decimals=42))
    with pytest.raises(ConfigError, match="price_decimals"):
        await connector.connect()


async def test_the_market_clock_moves_prices_and_fills_resting_orders_by_itself(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with paper(
        tmp_path / "p.db", seed=11, tick_interval_s=1.0, volatility_bps=Decimal(20)
    ) as (broker, log):
        placed = await broker.submit(order(type="limit", limit_price="99.5", time_in_force="gtc"))
        start = trio.current_time()
        # No manual ticks: the stream task's clock runs (virtual time, so an hour is instant).
        filled = await log.wait_for(
            lambda u: u.order.id == placed.id and u.order.status == "filled", timeout=3600
        )
        done = filled.order
        assert done.status == "filled" and done.avg_fill_price is not None
        assert done.avg_fill_price <= Decimal("99.5")
        assert trio.current_time() - start >= 1.0  # it took at least one tick
        assert broker.price("AAPL") != 100


async def test_an_order_travelling_at_a_restart_arrives_on_reload_unless_its_day_is_over(
    tmp_path: Path,
) -> None:
    day_ns = 86_400 * 10**9
    now = [20_000 * day_ns + 3_600 * 10**9]
    path = tmp_path / "p.db"
    first = PaperConnector("paper", settings(path, latency_ms=60_000), now_ns=lambda: now[0])
    await first.connect()
    travelling = await first.submit(order(time_in_force="gtc"))
    yesterday = await first.submit(order(time_in_force="day"))
    assert travelling.status == yesterday.status == "accepted"
    await first.disconnect()  # stopped before either reached the market
    now[0] += day_ns
    async with paper(path, now_ns=lambda: now[0], latency_ms=60_000) as (again, _):
        assert (await again.get_order(travelling.id)).status == "filled"
        assert (await again.get_order(yesterday.id)).status == "expired"
        assert {p.symbol: p.qty for p in await again.positions()} == {"AAPL": 10}


# -- the symbols paper trades ---------------------------------------------------------


async def test_an_unlisted_symbol_is_refused_naming_the_symbol_and_nothing_is_booked(
    tmp_path: Path,
) -> None:
    async with paper(tmp_path / "p.db") as (connector, _log):
        with pytest.raises(InvalidOrder) as info:
            await connector.submit(order(symbol="FOOBARXYZ", client_order_id="odd-1"))
        assert info.value.field == "symbol" and "FOOBARXYZ" in info.value.message
        assert await connector.open_orders() == [] and await connector.positions() == []
        # The venue goes on trading what it lists, at a plausible start price.
        placed = await connector.submit(order(symbol="MSFT", qty=1))
        assert placed.status == "filled" and placed.avg_fill_price == Decimal(410)
        fx = await connector.submit(order(symbol="EUR_USD", qty=1000))
        assert fx.avg_fill_price == Decimal("1.085")


async def test_a_star_trades_any_symbol_and_a_custom_list_only_its_own(tmp_path: Path) -> None:
    async with paper(tmp_path / "any.db", symbols=["*"]) as (connector, _log):
        placed = await connector.submit(order(symbol="FOOBARXYZ", qty=1))
        assert placed.status == "filled" and placed.avg_fill_price == Decimal(100)
    async with paper(tmp_path / "own.db", symbols=["ACME"]) as (connector, _log):
        assert (await connector.submit(order(symbol="ACME", qty=1))).status == "filled"
        with pytest.raises(InvalidOrder):
            await connector.submit(order(symbol="AAPL", qty=1))


# -- the router's checks and the venue's own ---------------------------------------------


async def test_a_request_the_router_did_not_validate_is_checked_in_full(
    tmp_path: Path,
) -> None:
    """Only the very request marked validated skips the router's checks: any other one
    (a close-out, an emulated leg, a resubmission, a copy, the next submit) is refused
    as the router would refuse it, naming the field, and nothing is booked."""
    async with paper(tmp_path / "p.db") as (connector, _log):
        for bad, field in (
            (order(limit_price=100), "limit_price"),  # a market order with a limit price
            (order(qty="0.0000000001"), "qty"),
            (order(symbol="aapl"), "symbol"),
            (order(client_order_id="no spaces"), "client_order_id"),
        ):
            connector.mark_validated(msgspec.structs.replace(bad))  # an equal copy
            with pytest.raises(InvalidOrder) as info:
                await connector.submit(bad)
            assert info.value.field == field
            with pytest.raises(InvalidOrder) as info:
                await connector.submit(bad)  # nothing marked
            assert info.value.field == field
        assert await connector.open_orders() == [] and await connector.positions() == []


async def test_a_validated_request_skips_only_the_routers_checks(tmp_path: Path) -> None:
    """A request marked validated meets the venue's own rules still (its instruments, no
    auctions, its funds, its duplicate check), each refusal naming the field; the
    router's own (the decimals here) are not checked a second time, and the mark is
    used once."""
    async with paper(tmp_path / "p.db", starting_cash=Decimal(1000)) as (connector, _log):

        async def submit_validated(request: OrderRequest) -> Order:
            connector.mark_validated(request)
            return await connector.submit(request)

        with pytest.raises(InvalidOrder) as info:
            await submit_validated(order(symbol="FOOBARXYZ"))
        assert info.value.field == "symbol"
        with pytest.raises(InvalidOrder) as info:
            await submit_validated(order(time_in_force="opg"))
        assert info.value.field == "time_in_force"
        with pytest.raises(InsufficientFunds):
            await submit_validated(order(qty=11))  # 1,100 at 100
        placed = await submit_validated(order(qty=2, client_order_id="v-1"))
        assert placed.status == "filled" and placed.filled_qty == Decimal(2)
        with pytest.raises(DuplicateOrder):
            await submit_validated(order(qty=1, client_order_id="v-1"))
        # Not checked again: past the router's bound on decimal places (a request the
        # router would refuse, which only shows the venue left that check to it).
        fine = order(qty="0.0000000001", client_order_id="v-2")
        assert (await submit_validated(fine)).status == "filled"
        with pytest.raises(InvalidOrder):
            await connector.submit(order(qty="0.0000000001"))  # the mark was used up


async def test_an_empty_symbol_list_is_a_config_error(tmp_path: Path) -> None:
    connector = PaperConnector("paper", settings(tmp_path / "p.db", symbols=[]))
    with pytest.raises(ConfigError, match="symbols"):
        await connector.connect()
