"""The Alpaca simulator as any client sees it: paths, JSON shapes, stream protocol, admin, CLI."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio
import trio_websocket

from tests.brokers.alpaca.harness import KEY, SECRET, running_sim
from ult_actors.sim.alpaca.server import main
from ult_actors.testing.process import ult_command

AUTH = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}

ORDER_FIELDS = {
    "id", "client_order_id", "created_at", "updated_at", "submitted_at", "filled_at",
    "expired_at", "expires_at", "canceled_at", "failed_at", "replaced_at", "replaced_by",
    "replaces", "asset_id", "symbol", "asset_class", "notional", "qty", "filled_qty",
    "filled_avg_price", "order_class", "order_type", "type", "side", "time_in_force",
    "limit_price", "stop_price", "status", "extended_hours", "legs", "trail_percent",
    "trail_price", "hwm", "position_intent",
}  # fmt: skip
ACCOUNT_FIELDS = {
    "id", "account_number", "status", "currency", "cash", "buying_power", "regt_buying_power",
    "non_marginable_buying_power", "portfolio_value", "equity", "last_equity",
    "long_market_value", "short_market_value", "initial_margin", "maintenance_margin",
    "multiplier", "trading_blocked", "transfers_blocked", "account_blocked", "shorting_enabled",
    "created_at",
}  # fmt: skip
POSITION_FIELDS = {
    "asset_id", "symbol", "exchange", "asset_class", "avg_entry_price", "qty", "qty_available",
    "side", "market_value", "cost_basis", "unrealized_pl", "unrealized_plpc", "current_price",
    "lastday_price", "change_today",
}  # fmt: skip


@asynccontextmanager
async def client(**options: Any) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    async with running_sim(**options) as (sim, port):
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, headers=AUTH, trust_env=False) as http:
            yield sim, http


async def test_bad_keys_get_alpacas_401_and_missing_keys_its_bare_403() -> None:
    async with client() as (_sim, http):
        wrong = await http.get("/v2/account", headers={"APCA-API-SECRET-KEY": "nope"})
        assert wrong.status_code == 401
        assert wrong.json() == {"code": 40110000, "message": "request is not authorized"}
        bare = await http.get(
            "/v2/account", headers={"APCA-API-KEY-ID": "", "APCA-API-SECRET-KEY": ""}
        )
        assert bare.status_code == 403 and bare.json() == {"message": "forbidden."}


async def test_documented_shapes_for_account_clock_orders_and_positions() -> None:
    async with client() as (sim, http):
        account = (await http.get("/v2/account")).json()
        assert set(account) >= ACCOUNT_FIELDS
        assert account["cash"] == "100000" and isinstance(account["cash"], str)
        clock = (await http.get("/v2/clock")).json()
        assert set(clock) == {"timestamp", "is_open", "next_open", "next_close"}

        body = {"symbol": "AAPL", "qty": "2", "side": "buy", "type": "market",
                "time_in_force": "day", "client_order_id": "shape-1"}  # fmt: skip
        placed = await http.post("/v2/orders", json=body)
        assert placed.status_code == 200
        order = placed.json()
        assert set(order) == ORDER_FIELDS
        assert order["status"] == "new" and order["qty"] == "2" and order["filled_qty"] == "0"
        by_client = await http.get(
            "/v2/orders:by_client_order_id", params={"client_order_id": "shape-1"}
        )
        assert by_client.json()["id"] == order["id"]

        with trio.fail_after(10):
            while sim.venue.orders[order["id"]].status != "filled":
                await trio.sleep(0.01)
        filled = (await http.get(f"/v2/orders/{order['id']}")).json()
        assert filled["filled_qty"] == "2" and filled["filled_avg_price"] == "190"
        positions = (await http.get("/v2/positions")).json()
        assert len(positions) == 1 and set(positions[0]) >= POSITION_FIELDS
        assert positions[0]["qty"] == "2" and positions[0]["avg_entry_price"] == "190"
        assert (await http.get("/v2/positions/MSFT")).status_code == 404

        closed = (await http.get("/v2/orders", params={"status": "closed"})).json()
        assert [o["id"] for o in closed] == [order["id"]]
        assert (await http.get("/v2/orders")).json() == []  # status=open is the default


async def test_malformed_orders_get_422_and_a_reused_client_id_is_refused() -> None:
    async with client() as (_sim, http):
        good = {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "limit",
                "limit_price": "100", "time_in_force": "gtc", "client_order_id": "x-1"}  # fmt: skip
        bad_cases = [
            {**good, "qty": "-1"},
            {**good, "side": "long"},
            {**good, "limit_price": None},
            {**good, "type": "stop"},
            {**good, "time_in_force": "week"},
            {**good, "extended_hours": True},
            {**good, "client_order_id": "c" * 49},
            {**good, "limit_price": "100.001"},
        ]
        for bad in bad_cases:
            reply = await http.post("/v2/orders", json=bad)
            assert reply.status_code == 422, bad
            assert set(reply.json()) == {"code", "message"}
        not_json = await http.post("/v2/orders", content=b"{oops")
        assert not_json.status_code == 400
        assert (await http.post("/v2/orders", json=good)).status_code == 200
        again = await http.post("/v2/orders", json=good)
        assert again.status_code == 422
        assert again.json() == {"code": 40010001, "message": "client_order_id must be unique"}


async def test_cancel_is_204_cancel_all_is_207_and_unknown_is_404() -> None:
    async with client() as (_sim, http):
        ids = []
        for n in range(2):
            body = {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "limit",
                    "limit_price": "100", "time_in_force": "day", "client_order_id": f"r-{n}"}  # fmt: skip
            ids.append((await http.post("/v2/orders", json=body)).json()["id"])
        one = await http.delete(f"/v2/orders/{ids[0]}")
        assert one.status_code == 204 and one.content == b""
        again = await http.delete(f"/v2/orders/{ids[0]}")
        assert again.status_code == 422
        rest = await http.delete("/v2/orders")
        assert rest.status_code == 207
        assert [(r["id"], r["status"]) for r in rest.json()] == [(ids[1], 200)]
        assert (await http.get("/v2/orders/no-such-order")).status_code == 404


async def wait_status(http: httpx.AsyncClient, order_id: str, status: str) -> dict[str, Any]:
    """Poll one order until it reaches ``status`` (the venue fills on its own clock)."""
    with trio.fail_after(10):
        while True:
            order = dict((await http.get(f"/v2/orders/{order_id}")).json())
            if order["status"] == status:
                return order
            await trio.sleep(0.01)


async def buy(http: httpx.AsyncClient, symbol: str, qty: str) -> dict[str, Any]:
    """A filled market buy."""
    body = {"symbol": symbol, "qty": qty, "side": "buy", "type": "market", "time_in_force": "day"}
    return await wait_status(
        http, (await http.post("/v2/orders", json=body)).json()["id"], "filled"
    )


async def test_delete_position_sells_it_with_a_market_order_and_404s_when_flat() -> None:
    async with client() as (_sim, http):
        await buy(http, "AAPL", "5")
        partly = await http.delete("/v2/positions/AAPL", params={"qty": "2"})
        assert partly.status_code == 200 and set(partly.json()) == ORDER_FIELDS
        assert partly.json()["side"] == "sell" and partly.json()["qty"] == "2"
        await wait_status(http, partly.json()["id"], "filled")
        assert (await http.get("/v2/positions/AAPL")).json()["qty"] == "3"
        rest = await http.delete("/v2/positions/AAPL")
        assert rest.json()["type"] == "market" and rest.json()["qty"] == "3"
        await wait_status(http, rest.json()["id"], "filled")
        assert (await http.get("/v2/positions")).json() == []
        flat = await http.delete("/v2/positions/AAPL")
        assert flat.status_code == 404
        both = await http.delete("/v2/positions/AAPL", params={"qty": "1", "percentage": "5"})
        assert both.status_code in (404, 422)


async def test_delete_all_positions_cancels_orders_and_answers_207_per_symbol() -> None:
    async with client() as (_sim, http):
        await buy(http, "AAPL", "2")
        await buy(http, "MSFT", "1")
        resting = {"symbol": "AAPL", "qty": "2", "side": "sell", "type": "limit",
                   "limit_price": "500", "time_in_force": "gtc"}  # fmt: skip
        resting_id = (await http.post("/v2/orders", json=resting)).json()["id"]
        held = await http.delete("/v2/positions")  # the resting sell holds AAPL's shares
        assert held.status_code == 207
        by_symbol = {r["symbol"]: r for r in held.json()}
        assert by_symbol["AAPL"]["status"] == 403 and by_symbol["MSFT"]["status"] == 200
        assert {"code", "message", "available", "held_for_orders"} <= set(by_symbol["AAPL"]["body"])
        await wait_status(http, by_symbol["MSFT"]["body"]["id"], "filled")
        closed = await http.delete("/v2/positions", params={"cancel_orders": "true"})
        assert [(r["symbol"], r["status"]) for r in closed.json()] == [("AAPL", 200)]
        assert (await http.get(f"/v2/orders/{resting_id}")).json()["status"] == "canceled"
        await wait_status(http, closed.json()[0]["body"]["id"], "filled")
        assert (await http.get("/v2/positions")).json() == []


async def test_assets_are_served_with_the_documented_fields() -> None:
    async with client() as (_sim, http):
        asset = (await http.get("/v2/assets/AAPL")).json()
        assert {"id", "class", "exchange", "symbol", "name", "status", "tradable", "marginable",
                "shortable", "easy_to_borrow", "fractionable"} <= set(asset)  # fmt: skip
        assert asset["symbol"] == "AAPL" and asset["class"] == "us_equity"
        assert asset["status"] == "active" and asset["tradable"] is True
        missing = await http.get("/v2/assets/not-a-symbol")
        assert missing.status_code == 404 and set(missing.json()) == {"code", "message"}


async def test_notional_market_day_orders_buy_a_fractional_qty() -> None:
    async with client() as (_sim, http):
        body = {"symbol": "AAPL", "notional": "500", "side": "buy", "type": "market",
                "time_in_force": "day"}  # fmt: skip
        placed = await http.post("/v2/orders", json=body)
        assert placed.status_code == 200
        assert placed.json()["notional"] == "500" and placed.json()["qty"] is None
        filled = await wait_status(http, placed.json()["id"], "filled")
        assert filled["filled_qty"] == "2.631578947"  # 500 / 190, to nine places, rounded down
        position = (await http.get("/v2/positions/AAPL")).json()
        assert position["qty"] == "2.631578947"
        for bad in ({**body, "type": "limit", "limit_price": "100"},
                    {**body, "time_in_force": "gtc"},
                    {**body, "qty": "1"},
                    {**body, "notional": "0"}):  # fmt: skip
            reply = await http.post("/v2/orders", json=bad)
            assert reply.status_code == 422, bad


async def test_stream_speaks_alpacas_authenticate_listen_protocol() -> None:
    async with client() as (_sim, http):
        url = str(http.base_url).replace("http://", "ws://").rstrip("/") + "/stream"
        async with trio_websocket.open_websocket_url(url) as ws:

            async def send(action: str, data: dict[str, Any]) -> dict[str, Any]:
                await ws.send_message(json.dumps({"action": action, "data": data}))
                return dict(json.loads(await ws.get_message()))

            with trio.fail_after(10):
                early = await send("listen", {"streams": ["trade_updates"]})
                assert early == {
                    "stream": "authorization",
                    "data": {"action": "listen", "status": "unauthorized"},
                }
                authed = await send("authenticate", {"key_id": KEY, "secret_key": SECRET})
                assert authed["data"] == {"action": "authenticate", "status": "authorized"}
                listening = await send("listen", {"streams": ["trade_updates"]})
                assert listening == {"stream": "listening", "data": {"streams": ["trade_updates"]}}

                body = {"symbol": "SPY", "qty": "1", "side": "buy", "type": "market",
                        "time_in_force": "day"}  # fmt: skip
                await http.post("/v2/orders", json=body)
                events = []
                while not events or events[-1]["event"] != "fill":
                    frame = await ws.get_message()
                    assert isinstance(frame, bytes)  # binary frames, as the paper stream sends
                    message = json.loads(frame)
                    assert message["stream"] == "trade_updates"
                    events.append(message["data"])
        assert [e["event"] for e in events] == ["new", "fill"]
        # alpaca-py's TradeUpdate requires ``timestamp`` on every event, ``new`` included.
        assert all(isinstance(e.get("timestamp"), str) for e in events), events
        fill = events[-1]
        assert {"timestamp", "price", "qty", "position_qty", "execution_id"} <= set(fill)
        assert fill["order"]["status"] == "filled" and fill["position_qty"] == "1"


async def test_admin_endpoints_arm_faults_move_prices_and_report_state() -> None:
    async with client(fill_slices=1) as (_sim, http):
        armed = await http.post(
            "/_sim/faults", json={"kind": "status", "status": 503, "path": "/v2/clock"}
        )
        assert armed.status_code == 200 and armed.json()["armed"][0]["kind"] == "status"
        assert (await http.get("/v2/clock")).status_code == 503
        assert (await http.get("/v2/clock")).status_code == 200  # count 1: used up
        bad = await http.post("/_sim/faults", json={"kind": "earthquake"})
        assert bad.status_code == 400

        body = {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "limit",
                "limit_price": "180", "time_in_force": "gtc"}  # fmt: skip
        order_id = (await http.post("/v2/orders", json=body)).json()["id"]
        moved = await http.post("/_sim/prices", json={"AAPL": "179.50"})
        assert moved.json()["prices"]["AAPL"] == "179.50"
        with trio.fail_after(10):
            while (await http.get(f"/v2/orders/{order_id}")).json()["status"] != "filled":
                await trio.sleep(0.01)
        filled = (await http.get(f"/v2/orders/{order_id}")).json()
        assert filled["filled_avg_price"] == "179.5"  # a buy limit fills at or below its limit

        closed = await http.post("/_sim/market", json={"is_open": False})
        assert closed.json()["is_open"] is False
        await http.post("/_sim/faults", json=[{"kind": "drop"}, {"kind": "slow", "delay_s": 0}])
        state = (await http.get("/_sim/state")).json()
        assert state["fired"] == {"status": 1}
        assert [f["kind"] for f in state["faults"]] == ["drop", "slow"]
        assert (await http.delete("/_sim/faults")).json() == {"armed": []}
        assert (await http.post("/_sim/stream/drop")).json() == {"cut": 0}
        day = {**body, "limit_price": "100", "time_in_force": "day"}
        day_id = (await http.post("/v2/orders", json=day)).json()["id"]
        assert (await http.post("/_sim/close-day")).json() == {"expired": [day_id]}
        assert (await http.get(f"/v2/orders/{day_id}")).json()["expired_at"] is not None


async def test_ult_sim_alpaca_runs_on_a_free_port_and_stops_on_ctrl_c() -> None:
    process = await trio.lowlevel.open_process(
        ult_command("sim", "alpaca", "--port", "0", "--key", KEY, "--secret", SECRET),
        stdout=-1,  # subprocess.PIPE
    )  # fmt: skip
    try:
        assert process.stdout is not None
        with trio.fail_after(30):
            text = b""
            while b"\n" not in text:
                chunk = await process.stdout.receive_some(4096)
                assert chunk, "the simulator exited before saying where it listens"
                text += chunk
        first = text.decode().splitlines()[0]
        assert first.startswith("alpaca simulator on http://127.0.0.1:")
        assert SECRET not in text.decode()
        port = int(first.split("http://127.0.0.1:")[1].split()[0])
        async with httpx.AsyncClient(trust_env=False) as http:
            state = await http.get(f"http://127.0.0.1:{port}/_sim/state")
            assert state.status_code == 200 and state.json()["requests"] == 0
        process.send_signal(signal.SIGINT)
        with trio.fail_after(20):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await process.wait()


def test_a_bad_fault_on_the_command_line_is_a_usage_error() -> None:
    assert main(["--fault", '{"kind": "earthquake"}']) == 2


def test_a_port_in_use_is_reported_not_a_traceback() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["--port", str(taken.getsockname()[1])]) == 1
