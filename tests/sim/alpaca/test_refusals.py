"""Replace and order-class requests the Alpaca simulator refuses, with Alpaca's 422 and nothing changed."""

from __future__ import annotations

from typing import Any

import httpx

from tests.brokers.alpaca.harness import KEY, SECRET, running_sim

AUTH = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
BRACKET = {
    "symbol": "AAPL", "qty": "1", "side": "buy", "type": "limit", "limit_price": "150",
    "time_in_force": "gtc", "order_class": "bracket",
    "take_profit": {"limit_price": "160"}, "stop_loss": {"stop_price": "140"},
}  # fmt: skip


async def test_malformed_order_classes_get_422_and_place_nothing() -> None:
    bad_cases: list[dict[str, Any]] = [
        {**BRACKET, "order_class": "otoco"},
        {**BRACKET, "stop_loss": None},
        {**BRACKET, "take_profit": {"limit_price": "150"}},  # not above the entry
        {**BRACKET, "stop_loss": {"stop_price": "150.5"}},  # not below the entry
        {**BRACKET, "time_in_force": "ioc"},
        {**BRACKET, "qty": "1.5", "type": "market", "limit_price": None, "time_in_force": "day"},
        {**BRACKET, "order_class": "oto"},  # both exits: an oto takes one
        {**BRACKET, "order_class": "oco", "type": "market", "limit_price": None},
        {**BRACKET, "order_class": "simple"},  # exits need a class
        {**BRACKET, "take_profit": "160"},
    ]
    async with (
        running_sim() as (sim, port),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=AUTH, trust_env=False
        ) as http,
    ):
        for bad in bad_cases:
            reply = await http.post("/v2/orders", json=bad)
            assert reply.status_code == 422, bad
            assert set(reply.json()) == {"code", "message"}
        assert sim.venue.orders == {}


async def test_replaces_alpaca_refuses_get_422_and_leave_the_order_working() -> None:
    async with (
        running_sim(autofill=False) as (sim, port),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=AUTH, trust_env=False
        ) as http,
    ):
        order = (await http.post("/v2/orders", json={**BRACKET, "order_class": None,
                 "take_profit": None, "stop_loss": None})).json()  # fmt: skip
        path = f"/v2/orders/{order['id']}"
        for bad in (
            {},
            {"client_order_id": "only-the-id"},
            {"stop_price": "140"},  # a limit order has no stop
            {"qty": "1.5"},
            {"trail": "1"},
            {"time_in_force": "week"},
        ):
            reply = await http.patch(path, json=bad)
            assert reply.status_code == 422, bad
        assert (await http.patch("/v2/orders/no-such-order", json={"qty": 2})).status_code == 404
        notional = (await http.post("/v2/orders", json={"symbol": "AAPL", "notional": "100",
                    "side": "buy", "type": "market", "time_in_force": "day"})).json()  # fmt: skip
        reply = await http.patch(f"/v2/orders/{notional['id']}", json={"qty": 1})
        assert reply.status_code == 422 and "notional" in reply.json()["message"]
        assert [o.status for o in sim.venue.orders.values()] == ["new", "new"]
