"""The bytes every message puts on the wire: pinned, so a change of how the classes are
declared (bases, options) cannot change what clients and journals read."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest

from ult_actors import messages as m
from ult_actors.actors import commands as c

REQUEST = m.OrderRequest(
    symbol="AAPL",
    side="buy",
    qty=Decimal("1.5"),
    type="limit",
    limit_price=Decimal("10.25"),
    broker="paper",
    client_order_id="c-1",
)
ORDER = m.Order(
    id="o-1",
    client_order_id="c-1",
    broker="paper",
    symbol="AAPL",
    side="buy",
    qty=Decimal("2"),
    type="limit",
    time_in_force="day",
    status="partially_filled",
    limit_price=Decimal("10.25"),
    filled_qty=Decimal("1"),
    avg_fill_price=Decimal("10.2"),
    created_at=1,
    updated_at=2,
    arrival_price=Decimal("10.1"),
    arrival_source="venue_quote",
)
FILL = m.Fill(
    fill_id="f-1",
    order_id="o-1",
    client_order_id="c-1",
    broker="paper",
    symbol="AAPL",
    side="buy",
    qty=Decimal("1"),
    price=Decimal("10.2"),
    ts=3,
    fees={"exchange": Decimal("0.01")},
    fee_currency="USD",
)
POSITION = m.Position(
    broker="paper",
    symbol="AAPL",
    qty=Decimal("-3"),
    avg_entry_price=Decimal("9.5"),
    realized_pl=Decimal("1.25"),
)
HEALTH = m.HealthSnapshot(
    actors=[
        m.ActorHealth(
            name="router",
            parent="root",
            kind="actor",
            state="running",
            restart="permanent",
            restarts=1,
            started_at=2,
            last_error=m.LastError(type="E", message="x", at=3),
            mailbox_depth=0,
            handled=4,
        )
    ],
    pid=7,
    version="1",
    trading=m.TradingSetting(state="reducing", set_by="service", reason="r", at=5),
    degraded=["x"],
    cluster=m.ClusterHealth(name="c", instance="b", role="standby", active="a", epoch=3),
)
UPDATE = m.OrderUpdate(order=ORDER, fill=FILL, ts=4)

REQUEST_JSON = (
    '{"symbol":"AAPL","side":"buy","qty":"1.5","type":"limit","limit_price":"10.25",'
    '"stop_price":null,"time_in_force":"day","extended_hours":false,"broker":"paper",'
    '"client_order_id":"c-1","deadline_ns":null}'
)
ORDER_JSON = (
    '{"id":"o-1","client_order_id":"c-1","broker":"paper","symbol":"AAPL","side":"buy",'
    '"qty":"2","type":"limit","time_in_force":"day","status":"partially_filled",'
    '"limit_price":"10.25","stop_price":null,"extended_hours":false,"filled_qty":"1",'
    '"avg_fill_price":"10.2","created_at":1,"updated_at":2,"reject_reason":null,'
    '"outcome":"definitive","origin":"client","replaces":null,"replaced_by":null,"leg":null,'
    '"arrival_price":"10.1","arrival_source":"venue_quote"}'
)
FILL_JSON = (
    '{"fill_id":"f-1","order_id":"o-1","client_order_id":"c-1","broker":"paper",'
    '"symbol":"AAPL","side":"buy","qty":"1","price":"10.2","commission":"0","ts":3,'
    '"fees":{"exchange":"0.01"},"fee_currency":"USD","fee_of":null}'
)
POSITION_JSON = (
    '{"broker":"paper","symbol":"AAPL","qty":"-3","avg_entry_price":"9.5",'
    '"market_value":null,"unrealized_pl":null,"realized_pl":"1.25"}'
)
HEALTH_JSON = (
    '{"actors":[{"name":"router","parent":"root","kind":"actor","state":"running",'
    '"restart":"permanent","restarts":1,"started_at":2,'
    '"last_error":{"type":"E","message":"x","at":3},"mailbox_depth":0,"handled":4,'
    '"strategy":null,"restarts_in_window":0,"connect_failures":0,"next_retry_at":null}],'
    '"pid":7,"version":"1","started_at":0,"taken_at":0,"trading_state":"active",'
    '"trading":{"state":"reducing","set_by":"service","reason":"r","at":5},'
    '"broker_trading":{},"degraded":["x"],"log_lines_dropped":0,"emulated_legs":{},"connections":{},'
    '"cluster":{"name":"c","instance":"b","role":"standby","active":"a","epoch":3,'
    '"problem":"","problem_since":0},"nats":null}'
)
UPDATE_JSON = (
    f'{{"kind":"order_update","order":{ORDER_JSON},"fill":{FILL_JSON},"ts":4,"fill_only":false}}'
)

REQUESTS: list[tuple[Any, str]] = [
    (
        m.Submit(id=1, order=REQUEST, wait=True),
        f'{{"kind":"submit","id":1,"order":{REQUEST_JSON},"wait":true}}',
    ),
    (
        m.Replace(
            id=14,
            change=m.ReplaceRequest(order_id="c-1", limit_price=Decimal("10.5"), client_order_id="c-3"),
        ),
        '{"kind":"replace","id":14,"change":{"order_id":"c-1","qty":null,"limit_price":"10.5",'
        '"stop_price":null,"time_in_force":null,"client_order_id":"c-3","deadline_ns":null},'
        '"wait":false}',
    ),
    (
        m.SubmitList(
            id=15,
            orders=m.OrderListRequest(contingency="oto", legs=[REQUEST, REQUEST], list_id="l-1"),
        ),
        f'{{"kind":"submit_list","id":15,"orders":{{"contingency":"oto","legs":[{REQUEST_JSON},'
        f'{REQUEST_JSON}],"list_id":"l-1","broker":null,"deadline_ns":null}}}}',
    ),
    (m.Cancel(id=2, order_id="c-1"), '{"kind":"cancel","id":2,"order_id":"c-1"}'),
    (m.GetOrder(id=3, order_id="paper:o-1"), '{"kind":"get_order","id":3,"order_id":"paper:o-1"}'),
    (
        m.ListOrders(id=4, open_only=True, broker="paper", limit=10),
        '{"kind":"list_orders","id":4,"open_only":true,"broker":"paper","limit":10}',
    ),
    (m.GetPositions(id=5, broker="paper"), '{"kind":"get_positions","id":5,"broker":"paper"}'),
    (m.GetAccount(id=6), '{"kind":"get_account","id":6,"broker":null}'),
    (m.GetHealth(id=7), '{"kind":"get_health","id":7}'),
    (m.SetKillSwitch(id=8, on=True), '{"kind":"kill_switch","id":8,"on":true}'),
    (
        m.SetTradingState(id=9, state="reducing", broker="paper"),
        '{"kind":"trading_state","id":9,"state":"reducing","broker":"paper"}',
    ),
    (
        m.ClosePosition(id=10, symbol="AAPL"),
        '{"kind":"close_position","id":10,"symbol":"AAPL","broker":null}',
    ),
    (m.Flatten(id=11, broker="paper"), '{"kind":"flatten","id":11,"broker":"paper"}'),
    (
        m.Subscribe(id=12),
        '{"kind":"subscribe","id":12,"topics":["orders","fills","health","positions","risk"]}',
    ),
    (
        m.GetReport(id=16, query=m.ReportQuery(since_ns=1, broker="paper", by="day")),
        '{"kind":"get_report","id":16,"query":{"since_ns":1,"until_ns":null,"broker":"paper",'
        '"symbol":null,"by":"day","with_orders":false,"with_charts":false}}',
    ),
    (m.Ping(id=13), '{"kind":"ping","id":13}'),
]
EVENTS: list[tuple[Any, str]] = [
    (UPDATE, UPDATE_JSON),
    (
        m.AccountReset(broker="paper", positions=[POSITION], reason="reset", ts=5),
        f'{{"kind":"account_reset","broker":"paper","positions":[{POSITION_JSON}],'
        '"reason":"reset","ts":5}',
    ),
    (
        m.PositionDrift(
            broker="paper", symbol="AAPL", book_qty=Decimal("1"), broker_qty=None, ts=6
        ),
        '{"kind":"position_drift","broker":"paper","symbol":"AAPL","book_qty":"1",'
        '"broker_qty":null,"ts":6}',
    ),
    (
        m.ActorHealthChanged(name="router", state="restarting", restarts=2, error="boom", ts=7),
        '{"kind":"actor_health","name":"router","state":"restarting","restarts":2,'
        '"error":"boom","ts":7}',
    ),
    (
        m.TradingStateChanged(
            state="halted", reason="kill", broker="paper", ts=8, set_by="service"
        ),
        '{"kind":"trading_state","state":"halted","reason":"kill","broker":"paper","ts":8,'
        '"set_by":"service"}',
    ),
    (
        m.ConnectionStateChanged(broker="oanda", state="degraded", reason="quiet", ts=9),
        '{"kind":"connection_state","broker":"oanda","state":"degraded","reason":"quiet","ts":9}',
    ),
]
REPLIES: list[tuple[Any, str]] = [
    (m.OrderReply(id=1, order=ORDER), f'{{"kind":"order","id":1,"order":{ORDER_JSON}}}'),
    (
        m.ReportReply(
            id=9,
            report=m.CostReport(
                query=m.ReportQuery(),
                rows=[
                    m.CostRow(
                        key="AAPL",
                        orders=1,
                        filled_qty=Decimal("1"),
                        notional=Decimal("10.2"),
                        fees=Decimal("0.01"),
                        slippage_bps_p50=99.0,
                        slippage_bps_p90=99.0,
                        shortfall=Decimal("0.11"),
                        fill_time_p50_s=0.5,
                        fill_time_p90_s=0.5,
                    )
                ],
                total_orders=1,
                charts=m.CostCharts(
                    slippage_bps={"paper": m.Histogram(low=1.0, high=2.0, counts=[1, 0])},
                    cost_per_day={"2026-12-04": Decimal("0.11")},
                ),
            ),
        ),
        '{"kind":"report","id":9,"report":{"query":{"since_ns":null,"until_ns":null,'
        '"broker":null,"symbol":null,"by":"symbol","with_orders":false,"with_charts":false},'
        '"rows":[{"key":"AAPL",'
        '"orders":1,"filled_qty":"1","notional":"10.2","fees":"0.01","slippage_bps_p50":99.0,'
        '"slippage_bps_p90":99.0,"shortfall":"0.11","fill_time_p50_s":0.5,'
        '"fill_time_p90_s":0.5}],"orders":[],"total_orders":1,"charts":{"slippage_bps":'
        '{"paper":{"low":1.0,"high":2.0,"counts":[1,0]}},"cost_per_day":{"2026-12-04":"0.11"},'
        '"fill_time_s":null}}}',
    ),
    (m.OrdersReply(id=2, orders=[ORDER]), f'{{"kind":"orders","id":2,"orders":[{ORDER_JSON}]}}'),
    (
        m.PositionsReply(id=3, positions=[POSITION]),
        f'{{"kind":"positions","id":3,"positions":[{POSITION_JSON}]}}',
    ),
    (
        m.AccountsReply(
            id=4,
            accounts=[
                m.Account(
                    broker="paper",
                    cash=Decimal("100"),
                    buying_power=Decimal("200"),
                    equity=Decimal("150"),
                )
            ],
        ),
        '{"kind":"accounts","id":4,"accounts":[{"broker":"paper","cash":"100",'
        '"buying_power":"200","equity":"150","currency":"USD"}]}',
    ),
    (m.HealthReply(id=5, health=HEALTH), f'{{"kind":"health","id":5,"health":{HEALTH_JSON}}}'),
    (m.OkReply(id=6, detail="done"), '{"kind":"ok","id":6,"detail":"done"}'),
    (
        m.ErrorReply(
            id=7, error=m.ErrorInfo(code="risk_rejected", message="too big", limit="max_order_qty")
        ),
        '{"kind":"error","id":7,"error":{"code":"risk_rejected","message":"too big",'
        '"limit":"max_order_qty"}}',
    ),
    (m.EventMessage(event=UPDATE), f'{{"kind":"event","event":{UPDATE_JSON}}}'),
    (m.SubscriptionDropped(reason="slow"), '{"kind":"dropped","reason":"slow"}'),
]
COMMANDS: list[tuple[Any, str]] = [
    (c.PlaceOrder(request=REQUEST), f'{{"kind":"place_order","request":{REQUEST_JSON}}}'),
    (
        c.CloseOut(broker="paper", symbol=None, client_order_id="c-2"),
        '{"kind":"close_out","broker":"paper","symbol":null,"client_order_id":"c-2"}',
    ),
    (
        c.ReplaceOrder(
            order=ORDER,
            change=m.ReplaceRequest(order_id="c-1", qty=Decimal("3"), client_order_id="c-2"),
            terms=REQUEST,
        ),
        f'{{"kind":"replace_order","order":{ORDER_JSON},"change":{{"order_id":"c-1","qty":"3",'
        '"limit_price":null,"stop_price":null,"time_in_force":null,"client_order_id":"c-2",'
        f'"deadline_ns":null}},"terms":{REQUEST_JSON}}}',
    ),
    (
        c.PlaceList(request=m.OrderListRequest(contingency="oto", legs=[REQUEST], list_id="l")),
        f'{{"kind":"place_list","request":{{"contingency":"oto","legs":[{REQUEST_JSON}],'
        '"list_id":"l","broker":null,"deadline_ns":null}}',
    ),
    (c.CancelOrder(order_id="o-1"), '{"kind":"cancel_order","order_id":"o-1"}'),
    (c.CancelAll(), '{"kind":"cancel_all","reason":"kill switch"}'),
    (c.QueryOrder(order_id="o-1"), '{"kind":"query_order","order_id":"o-1"}'),
    (c.QueryOpenOrders(), '{"kind":"query_open_orders"}'),
    (c.QueryPositions(), '{"kind":"query_positions"}'),
    (c.QueryAccount(), '{"kind":"query_account"}'),
    (
        c.RestrictTrading(broker="paper", reason="no report"),
        '{"kind":"restrict","broker":"paper","reason":"no report","state":"reducing"}',
    ),
    (
        c.LiftRestriction(broker="paper", reason="ok"),
        '{"kind":"lift","broker":"paper","reason":"ok"}',
    ),
    (
        c.SeedPositions(broker="paper", positions=[POSITION]),
        f'{{"kind":"seed","broker":"paper","positions":[{POSITION_JSON}]}}',
    ),
]
UNIONS: list[tuple[Any, list[tuple[Any, str]]]] = [
    (m.Request, REQUESTS),
    (m.Event, EVENTS),
    (m.Reply, REPLIES),
    (c.BrokerCommand | c.RestrictTrading | c.LiftRestriction | c.SeedPositions, COMMANDS),
]


def test_every_union_member_is_pinned() -> None:
    """A new message must get a line here, so its bytes are pinned too."""
    for union, samples in UNIONS:
        assert {type(msg) for msg, _ in samples} == set(union.__args__)


@pytest.mark.parametrize(
    ("union", "msg", "expected"),
    [(union, msg, expected) for union, samples in UNIONS for msg, expected in samples],
    ids=lambda v: type(v).__name__ if isinstance(v, msgspec.Struct) else "",
)
def test_wire_bytes_unchanged(union: Any, msg: Any, expected: str) -> None:
    assert msgspec.json.encode(msg).decode() == expected
    # The socket speaks msgpack: the same fields, in the same order, with the same tag.
    packed = msgspec.msgpack.encode(msg)
    assert packed == msgspec.msgpack.encode(msgspec.json.decode(expected))
    assert msgspec.msgpack.decode(packed, type=union) == msg


def test_orders_and_fills_from_before_costs_still_decode() -> None:
    """Journals and clients hold orders and fills written before arrival prices and
    fees existed: they decode, with none of either."""
    old_order = ORDER_JSON.replace(',"arrival_price":"10.1","arrival_source":"venue_quote"', "")
    old_fill = FILL_JSON.replace(',"fees":{"exchange":"0.01"},"fee_currency":"USD"', "")
    order = msgspec.json.decode(old_order, type=m.Order)
    fill = msgspec.json.decode(old_fill, type=m.Fill)
    assert (order.arrival_price, order.arrival_source) == (None, None)
    assert (fill.fees, fill.fee_currency, fill.total_fees) == ({}, None, Decimal(0))
