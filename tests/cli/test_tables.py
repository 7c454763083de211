"""Human output: the health tree with last errors and their age, colour only when asked."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from ult_actors.cli.numbers import plain, plain_json
from ult_actors.cli.tables import (
    Style,
    accounts_table,
    duration,
    health_document,
    health_tree,
    order_detail,
    orders_table,
    positions_table,
)
from ult_actors.messages import (
    Account,
    ActorHealth,
    HealthSnapshot,
    LastError,
    Order,
    Position,
    TradingSetting,
)

S = 1_000_000_000
NOW = 1_000_000 * S


def _actor(name: str, parent: str | None, **fields: object) -> ActorHealth:
    base: dict[str, object] = dict(
        kind="actor", state="running", restart="permanent", restarts=0,
        started_at=NOW - 125 * S, last_error=None, mailbox_depth=0, handled=0,
    )  # fmt: skip
    base.update(fields)
    return ActorHealth(name=name, parent=parent, **base)  # type: ignore[arg-type]


SNAPSHOT = HealthSnapshot(
    actors=[
        _actor("ult", None, kind="supervisor", started_at=NOW - 3 * 3600 * S),
        _actor("brokers", "ult", kind="supervisor"),
        _actor(
            "broker.alpaca", "brokers", state="restarting", restarts=3, mailbox_depth=17,
            last_error=LastError(type="BrokerUnavailable", message="alpaca: 503", at=NOW - 65 * S),
        ),
        _actor("broker.paper", "brokers"),
        _actor("ipc", "ult"),
    ],
    pid=42,
    version="0.1.0",
    started_at=NOW - 3 * 3600 * S,
    taken_at=NOW,
)


def test_the_tree_is_indented_with_restarts_mailbox_and_the_last_error_with_its_age() -> None:
    lines = health_tree(SNAPSHOT, Style(False)).splitlines()
    assert lines[0] == "ult 0.1.0  pid 42  up 3h00m  trading active"
    rows = {line.lstrip("│├└─ ").split()[0]: line for line in lines[2:]}
    assert rows["ult"].startswith("ult ")
    assert rows["brokers"].startswith("├─ brokers")
    assert rows["broker.alpaca"].startswith("│  ├─ broker.alpaca")
    assert rows["broker.paper"].startswith("│  └─ broker.paper")
    assert rows["ipc"].startswith("└─ ipc")
    alpaca = rows["broker.alpaca"].split()
    assert alpaca[3:6] == ["restarting", "3", "17"]
    assert rows["broker.alpaca"].endswith("BrokerUnavailable: alpaca: 503 (1m05s ago)")
    assert "\x1b[" not in "\n".join(lines)


def test_health_json_gives_ages_and_uptimes_in_seconds() -> None:
    doc = health_document(SNAPSHOT)
    alpaca = next(a for a in doc["actors"] if a["name"] == "broker.alpaca")
    assert alpaca["last_error"]["age_s"] == 65.0
    assert alpaca["uptime_s"] is None  # not running: no uptime
    assert next(a for a in doc["actors"] if a["name"] == "ipc")["uptime_s"] == 125.0
    assert doc["uptime_s"] == 3 * 3600


def test_colour_marks_states_only_when_enabled() -> None:
    coloured = health_tree(SNAPSHOT, Style(True))
    assert "\x1b[33mrestarting\x1b[0m" in coloured and "\x1b[32mrunning\x1b[0m" in coloured
    assert duration(59) == "59s" and duration(3 * 86400 + 4 * 3600) == "3d04h"


def test_event_lines_say_what_happened() -> None:
    from decimal import Decimal

    from ult_actors.cli.tables import event_line
    from ult_actors.messages import (
        ActorHealthChanged,
        ConnectionStateChanged,
        Fill,
        Order,
        OrderUpdate,
        TradingStateChanged,
    )

    order = Order(
        id="1", client_order_id="c-1", broker="paper", symbol="AAPL", side="buy",
        qty=Decimal(10), type="market", time_in_force="day", status="filled",
        filled_qty=Decimal(10),
    )  # fmt: skip
    fill = Fill(
        fill_id="f", order_id="1", client_order_id="c-1", broker="paper", symbol="AAPL",
        side="buy", qty=Decimal(10), price=Decimal("187.5"),
    )  # fmt: skip
    plain = Style(False)
    assert event_line(OrderUpdate(order=order, fill=fill, ts=NOW), plain).endswith(
        "order   c-1 AAPL buy 10 market filled 10/10  fill 10 @ 187.50"
    )
    fee = Fill(
        fill_id="a-1", order_id="1", client_order_id="c-1", broker="alpaca", symbol="AAPL",
        side="sell", qty=Decimal(0), price=Decimal("187.5"), fees={"sec": Decimal("0.05"),
        "finra_taf": Decimal("0.01")}, fee_currency="USD", fee_of="f",
    )  # fmt: skip
    assert event_line(OrderUpdate(order=order, fill=fee, ts=NOW, fill_only=True), plain).endswith(
        "fees    c-1 AAPL 0.06 USD (finra_taf 0.01, sec 0.05) for execution f"
    )
    crash = ActorHealthChanged(name="broker.paper", state="restarting", restarts=2, error="boom", ts=NOW)
    assert event_line(crash, plain).endswith("actor   broker.paper restarting restarts 2  error: boom")
    halt = TradingStateChanged(state="halted", reason="kill switch", ts=NOW)
    assert event_line(halt, plain).endswith("trading halted: kill switch")
    assert event_line(halt, plain).startswith("13:46:40.000Z")
    lost = ConnectionStateChanged(broker="alpaca", state="degraded", reason="stream lost", ts=NOW)
    assert event_line(lost, plain).endswith("broker  alpaca degraded: stream lost")


def test_an_order_of_unknown_outcome_is_marked_in_the_orders_table() -> None:
    from decimal import Decimal

    from ult_actors.cli.tables import orders_table
    from ult_actors.messages import Order

    def order(coid: str, outcome: str) -> Order:
        return Order(
            id="", client_order_id=coid, broker="paper", symbol="AAPL", side="buy",
            qty=Decimal(1), type="market", time_in_force="day", status="pending_new",
            outcome=outcome,  # type: ignore[arg-type]
        )  # fmt: skip

    lines = orders_table([order("sure-1", "definitive"), order("lost-1", "unknown")], Style(False))
    rows = {line.split()[0]: line for line in lines.splitlines()[1:]}
    assert "pending_new?" in rows["lost-1"]
    assert "pending_new?" not in rows["sure-1"]


def _filled(symbol: str, qty: str, avg: str, **fields: object) -> Order:
    base: dict[str, object] = dict(
        id="7", client_order_id="c-7", broker="paper", symbol=symbol, side="buy",
        qty=Decimal(qty), type="market", time_in_force="day", status="filled",
        filled_qty=Decimal(qty), avg_fill_price=Decimal(avg),
    )  # fmt: skip
    base.update(fields)
    return Order(**base)  # type: ignore[arg-type]


def test_decimals_are_written_in_plain_notation_never_exponents() -> None:
    assert plain(Decimal("1E+1")) == "10"
    assert plain(Decimal("1E-7")) == "0.0000001"
    assert plain(Decimal("2.500")) == "2.5" and plain(Decimal("-0.000")) == "0"
    order = _filled("AAPL", "1E+1", "187.5", limit_price=Decimal("1E+2"), type="limit")
    detail = {line[:17].strip(): line[17:] for line in order_detail(order, Style(False)).splitlines()}
    assert (detail["qty"], detail["filled"], detail["limit price"]) == ("10", "10", "100")
    assert "E+" not in orders_table([order], Style(False))


def test_tables_round_prices_to_the_tick_and_money_to_cents() -> None:
    stock = _filled("AAPL", "3", "99.98618861784489655634976165")
    fx = _filled("EUR_USD", "1000", "1.084512345")
    yen = _filled("USD_JPY", "1000", "151.23456")
    penny = _filled("X.Y", "5", "0.000123456789")
    rows = [line.split() for line in orders_table([stock, fx, yen, penny], Style(False))
            .splitlines()[1:]]  # fmt: skip
    assert [row[-1] for row in rows] == ["99.99", "1.08451", "151.235", "0.000123457"]
    position = Position(
        broker="paper", symbol="AAPL", qty=Decimal(23), avg_entry_price=Decimal("187.123456"),
        market_value=Decimal("4306.9750001"), unrealized_pl=Decimal("-1E+1"),
        realized_pl=Decimal("0.005"),
    )  # fmt: skip
    (row,) = [line.split() for line in positions_table([position], Style(False)).splitlines()[1:]]
    assert row[2:] == ["23", "187.12", "4306.98", "-10.00", "0.01"]
    account = Account(
        broker="paper", cash=Decimal("93650.40229000342"), buying_power=Decimal("1E+5"),
        equity=Decimal("93650.4"),
    )  # fmt: skip
    (row,) = [line.split() for line in accounts_table([account], Style(False)).splitlines()[1:]]
    assert row[2:] == ["93650.40", "100000.00", "93650.40"]


def test_json_keeps_full_precision_in_plain_notation() -> None:
    doc = plain_json({"orders": [_filled("AAPL", "1E+1", "99.98618861784489655634976165")]})
    (order,) = doc["orders"]
    assert order["qty"] == "10" and order["avg_fill_price"] == "99.98618861784489655634976165"


def test_a_connection_that_cannot_connect_shows_its_failures_and_next_try() -> None:
    connecting = _actor(
        "broker.oanda", "brokers", state="connecting", connect_failures=7,
        next_retry_at=NOW + 12 * S,
        last_error=LastError(type="BrokerUnavailable", message="refused", at=NOW - 3 * S),
    )  # fmt: skip
    snapshot = HealthSnapshot(actors=[connecting], taken_at=NOW, started_at=NOW)
    line = health_tree(snapshot, Style(False)).splitlines()[2]
    assert line.split()[1] == "connecting"
    assert line.endswith("7 failed, next try in 12s; BrokerUnavailable: refused (3s ago)")
    row = health_document(snapshot)["actors"][0]
    assert (row["connect_failures"], row["next_retry_at"]) == (7, NOW + 12 * S)


def test_health_shows_every_brokers_trading_state_with_who_set_it_and_why() -> None:
    snapshot = msgspec.structs.replace(
        SNAPSHOT,
        trading=TradingSetting(state="active", set_by="config", reason="risk.initial_state"),
        broker_trading={
            "alpaca": TradingSetting(
                state="reducing", set_by="service", reason="no position report: 503", at=NOW
            ),
            "paper": TradingSetting(state="active", set_by="person", reason="operator", at=NOW),
        },
    )
    text = health_tree(snapshot, Style(False))
    lines = text.splitlines()
    assert lines[0] == "ult 0.1.0  pid 42  up 3h00m  trading active  (reducing: alpaca)"
    below = lines[lines.index("") + 1 :]  # the trading table, after the tree
    assert below[0].split() == ["BROKER", "TRADING", "SET", "BY", "SINCE", "REASON"]
    trading = {line.split()[0]: line.split(None, 4) for line in below[1:]}
    assert trading["*"][1:3] == ["active", "config"]
    assert trading["alpaca"][1:3] == ["reducing", "service"]
    assert trading["alpaca"][4].endswith("no position report: 503")
    doc = health_document(snapshot)
    assert doc["trading_state"] == "active"
    assert doc["broker_trading"]["alpaca"] == {
        "state": "reducing", "set_by": "service", "reason": "no position report: 503", "at": NOW,
    }  # fmt: skip
    assert doc["trading"]["set_by"] == "config"
