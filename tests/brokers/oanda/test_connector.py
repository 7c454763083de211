"""OandaConnector against the simulator: credentials, configuration, failures, positions."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

import pytest
import structlog
import trio
import trio.testing

from tests.brokers.oanda.harness import ACCOUNT, TOKEN, connected, running_sim, settings_for
from ult_actors.brokers.oanda.connector import OandaConnector
from ult_actors.brokers.oanda.settings import (
    LIVE_STREAM_URL,
    LIVE_URL,
    PRACTICE_STREAM_URL,
    PRACTICE_URL,
    OandaSettings,
    oanda_settings_from_env,
    rest_url,
    stream_url,
)
from ult_actors.errors import (
    AlreadyFinal,
    AuthFailed,
    BrokerUnavailable,
    ConfigError,
    DuplicateOrder,
    InvalidOrder,
    NotFound,
    RateLimited,
)
from ult_actors.messages import OrderRequest
from ult_actors.secrets import Secret
from ult_actors.sim.oanda.faults import Fault
from ult_actors.sim.oanda.views import position_wire


def market(
    coid: str, qty: str = "1000", side: str = "buy", symbol: str = "EUR_USD"
) -> OrderRequest:
    return OrderRequest(
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        qty=Decimal(qty),
        client_order_id=coid,
    )


# -- credentials and configuration ----------------------------------------------


async def test_a_wrong_token_is_a_fatal_auth_failure_without_the_token_in_it() -> None:
    async with running_sim() as sim:
        connector = OandaConnector("oanda", settings_for(sim, token=Secret("wrong-token-123")))
        with trio.fail_after(10), pytest.raises(AuthFailed) as caught:
            await connector.connect()
        assert "401" in caught.value.message
        assert "wrong-token-123" not in str(caught.value)
        await connector.disconnect()


async def test_a_token_without_rights_to_the_account_is_auth_failed() -> None:
    async with running_sim() as sim:
        connector = OandaConnector("oanda", settings_for(sim, account_id="101-001-0000000-009"))
        with trio.fail_after(10), pytest.raises(AuthFailed, match="403"):
            await connector.connect()


async def test_live_refuses_to_start_without_confirmation_and_sends_nothing() -> None:
    async with running_sim() as sim:
        live = settings_for(sim, environment="live")
        with pytest.raises(ConfigError, match="live_trading_confirmed"):
            await OandaConnector("oanda-live", live).connect()
        assert sim.requests == 0
        async with connected(
            sim, stream=False, environment="live", live_trading_confirmed=True
        ) as (c, _):
            assert (await c.account()).cash > 0


async def test_a_missing_token_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="OANDA_API_TOKEN"):
        await OandaConnector("oanda", OandaSettings()).connect()


async def test_the_account_is_found_when_the_token_has_only_one() -> None:
    async with running_sim() as sim, connected(sim, stream=False, account_id="") as (c, _):
        assert (await c.account()).cash == Decimal(100_000)


def test_settings_from_the_environment(tmp_path: Path) -> None:
    env = {
        "OANDA_API_TOKEN": "env-token",
        "OANDA_ACCOUNT_ID": "101-001-1-001",
        "OANDA_ENVIRONMENT": "LIVE",
        "OANDA_BASE_URL": "http://127.0.0.1:8620/",
    }
    s = oanda_settings_from_env(env, OandaSettings())
    assert s.token == Secret("env-token")
    assert s.account_id == "101-001-1-001"
    assert s.environment == "live"
    assert rest_url(s) == "http://127.0.0.1:8620"
    assert stream_url(s) == "http://127.0.0.1:8620"  # the simulator serves streams on one port
    assert "env-token" not in repr(s)
    # systemd credentials win over the environment
    (tmp_path / "OANDA_API_TOKEN").write_text("cred-token\n")
    s = oanda_settings_from_env({**env, "CREDENTIALS_DIRECTORY": str(tmp_path)}, OandaSettings())
    assert s.token == Secret("cred-token")


def test_hosts_follow_the_environment_unless_overridden() -> None:
    practice, live = OandaSettings(), OandaSettings(environment="live")
    assert (rest_url(practice), stream_url(practice)) == (PRACTICE_URL, PRACTICE_STREAM_URL)
    assert (rest_url(live), stream_url(live)) == (LIVE_URL, LIVE_STREAM_URL)
    split = oanda_settings_from_env(
        {"OANDA_BASE_URL": "https://a.example", "OANDA_STREAM_URL": "https://b.example"}, live
    )
    assert (rest_url(split), stream_url(split)) == ("https://a.example", "https://b.example")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OANDA_ENVIRONMENT", "demo"),
        ("OANDA_BASE_URL", "ftp://host"),
        ("OANDA_STREAM_URL", "https://user:pw@host"),
    ],
)
def test_bad_environment_values_are_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        oanda_settings_from_env({name: value}, OandaSettings())


# -- failures mapped onto our errors ----------------------------------------------


async def test_429_is_rate_limited_with_the_servers_retry_after() -> None:
    async with running_sim() as sim, connected(sim, stream=False) as (c, _):
        sim.arm(Fault(kind="rate_limit", retry_after_s=3, retry_after_header=True))
        with pytest.raises(RateLimited) as caught:
            await c.account()
        assert caught.value.retry_after == 3.0
        assert (await c.account()).equity > 0  # one-off: the next call goes through


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_broker_unavailable(status: int) -> None:
    async with running_sim() as sim, connected(sim, stream=False) as (c, _):
        sim.arm(Fault(kind="status", status=status))
        with pytest.raises(BrokerUnavailable, match=str(status)):
            await c.positions()


async def test_a_dropped_connection_is_broker_unavailable_and_nothing_was_placed() -> None:
    async with running_sim() as sim, connected(sim, stream=False) as (c, _):
        sim.arm(Fault(kind="drop", method="POST", path=f"/v3/accounts/{ACCOUNT}/orders"))
        with pytest.raises(BrokerUnavailable, match="look it up by client order id"):
            await c.submit(market("drop-1"))
        with pytest.raises(NotFound):
            await c.get_order_by_client_id("drop-1")


async def test_a_lost_reply_is_unknown_and_the_lookup_finds_the_single_order() -> None:
    async with running_sim() as sim, connected(sim, stream=False) as (c, _):
        sim.arm(Fault(kind="lose_reply", method="POST", path=f"/v3/accounts/{ACCOUNT}/orders"))
        with pytest.raises(BrokerUnavailable):
            await c.submit(market("lost-1"))
        found = await c.get_order_by_client_id("lost-1")
        assert found.status == "filled" and found.filled_qty == 1000
        # Resending with the same client id cannot make a second order.
        with pytest.raises(DuplicateOrder):
            await c.submit(market("lost-1"))
        positions = {p.symbol: p.qty for p in await c.positions()}
        assert positions == {"EUR_USD": Decimal(1000)}


async def test_a_slow_reply_times_out_as_broker_unavailable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running_sim() as sim, connected(sim, stream=False, read_timeout_s=2.0) as (c, _):
        sim.arm(Fault(kind="slow", delay_s=30))
        with pytest.raises(BrokerUnavailable, match="timed out"):
            await c.account()


@pytest.mark.parametrize(
    ("request_fields", "field", "reason"),
    [
        ({"qty": Decimal("10.5")}, "qty", "UNITS_PRECISION_EXCEEDED"),
        ({"symbol": "ABC_XYZ"}, "symbol", "INSTRUMENT_UNKNOWN"),
        (
            {"type": "limit", "limit_price": Decimal("1.123456"), "time_in_force": "gtc"},
            "limit_price",
            "PRICE_PRECISION_EXCEEDED",
        ),
        (
            {"type": "stop", "stop_price": Decimal("1.999999"), "time_in_force": "gtc"},
            "stop_price",
            "PRICE_PRECISION_EXCEEDED",
        ),
    ],
)
async def test_oanda_rejects_name_the_field(
    request_fields: dict[str, object], field: str, reason: str
) -> None:
    async with running_sim() as sim, connected(sim, stream=False) as (c, _):
        values: dict[str, object] = {
            "symbol": "EUR_USD",
            "side": "buy",
            "qty": Decimal(1000),
            "client_order_id": "rej-1",
            **request_fields,
        }
        with pytest.raises(InvalidOrder) as caught:
            await c.submit(OrderRequest(**values))  # type: ignore[arg-type]
        assert caught.value.field == field
        assert reason in caught.value.message


async def test_refusals_before_sending() -> None:
    async with running_sim() as sim, connected(sim, stream=False) as (c, _):
        before = sim.requests
        with pytest.raises(InvalidOrder) as caught:
            await c.submit(market("slash-1", symbol="EUR/USD"))
        assert caught.value.field == "symbol" and "EUR_USD" in caught.value.message
        opg = OrderRequest(
            symbol="EUR_USD", side="buy", qty=Decimal(1), time_in_force="opg", client_order_id="o-1"
        )
        with pytest.raises(InvalidOrder) as caught:
            await c.submit(opg)
        assert caught.value.field == "time_in_force"
        assert sim.requests == before


async def test_a_market_order_beyond_the_margin_is_rejected_with_the_reason() -> None:
    async with running_sim() as sim, connected(sim, stream=False) as (c, _):
        order = await c.submit(market("big-1", qty="50000000"))
        assert order.status == "rejected"
        assert order.reject_reason == "INSUFFICIENT_MARGIN"
        assert await c.positions() == []


async def test_cancel_by_client_id_and_of_unknown_orders() -> None:
    async with running_sim() as sim, connected(sim, stream=False) as (c, _):
        limit = OrderRequest(
            symbol="EUR_USD",
            side="sell",
            qty=Decimal(500),
            type="limit",
            limit_price=Decimal("1.5"),
            time_in_force="day",
            client_order_id="by-client-1",
        )
        placed = await c.submit(limit)
        assert placed.time_in_force == "day"
        assert sim.book.orders[placed.id].time_in_force == "GFD"
        canceled = await c.cancel("by-client-1")
        assert (canceled.id, canceled.status) == (placed.id, "canceled")
        with pytest.raises(AlreadyFinal, match="is already canceled"):
            await c.cancel(placed.id)
        with pytest.raises(NotFound):
            await c.cancel("77777")
        with pytest.raises(NotFound):
            await c.get_order("not-a-number")


async def test_long_and_short_sides_net_to_a_signed_position() -> None:
    async with running_sim() as sim, connected(sim, stream=False) as (c, _):
        await c.submit(market("p-1", qty="1000"))
        await c.submit(market("p-2", qty="3000", side="sell"))
        await c.submit(market("p-3", qty="200", symbol="USD_JPY"))
        positions = {p.symbol: p for p in await c.positions()}
        assert positions["EUR_USD"].qty == Decimal(-2000)
        short_price = position_wire(sim.book, "EUR_USD")["short"]["averagePrice"]
        assert positions["EUR_USD"].avg_entry_price == Decimal(short_price)
        assert positions["USD_JPY"].qty == Decimal(200)
        account = await c.account()
        assert account.cash < Decimal(100_000)  # the spread paid on the closed 1000
        assert account.buying_power > account.equity  # 50:1 margin


async def test_stop_limit_is_a_stop_bounded_by_its_limit() -> None:
    async with running_sim() as sim, connected(sim) as (c, log):

        def stop_limit(coid: str, stop: str, limit: str) -> OrderRequest:
            return OrderRequest(
                symbol="EUR_USD",
                side="buy",
                qty=Decimal(1000),
                type="stop_limit",
                stop_price=Decimal(stop),
                limit_price=Decimal(limit),
                time_in_force="gtc",
                client_order_id=coid,
            )

        within = await c.submit(stop_limit("sl-in", "1.09000", "1.09100"))
        beyond = await c.submit(stop_limit("sl-out", "1.09000", "1.09010"))
        wire = sim.book.orders[within.id]
        assert (wire.type, wire.price, wire.price_bound) == (
            "STOP",
            Decimal("1.09000"),
            Decimal("1.09100"),
        )
        # The ask jumps to 1.09050: both trigger; only the one whose bound allows it fills.
        sim.feed.set_quote("EUR_USD", Decimal("1.09036"), Decimal("1.09050"))
        sim.book.on_prices()
        filled = await log.wait_for(
            lambda u: u.order.id == within.id and u.order.status == "filled"
        )
        assert filled.order.avg_fill_price == Decimal("1.09050")
        assert (await c.get_order(within.id)).type == "stop_limit"
        gone = await log.wait_for(
            lambda u: u.order.id == beyond.id and u.order.status == "canceled"
        )
        assert gone.order.reject_reason == "BOUNDS_VIOLATION"


# -- secrets --------------------------------------------------------------------


async def test_the_token_never_reaches_logs_errors_or_reprs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with structlog.testing.capture_logs() as events:
        async with running_sim() as sim:
            async with connected(sim, stale_after_s=5.0) as (c, _):
                texts += [repr(c), repr(c.settings), str(c.settings.token)]
                sim.arm(Fault(kind="status", status=503))
                with pytest.raises(BrokerUnavailable) as unavailable:
                    await c.account()
                texts.append(str(unavailable.value))
                with pytest.raises(InvalidOrder) as invalid:
                    await c.submit(market("leak-1", qty="0.5"))
                texts.append(str(invalid.value))
            bad = OandaConnector("oanda", settings_for(sim, token=Secret(TOKEN + "x")))
            with pytest.raises(AuthFailed) as auth:
                await bad.connect()
            texts.append(str(auth.value))
    texts += [str(e) for e in events] + [r.getMessage() for r in caplog.records]
    assert any(ACCOUNT in t for t in texts)  # the account id is fine to show
    assert not [t for t in texts if TOKEN in t]
