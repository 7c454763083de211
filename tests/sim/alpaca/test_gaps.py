"""The Alpaca simulator's gaps (issue 18): dropped and silent updates, FILL activities, rate limits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio
import trio_websocket

from tests.brokers.alpaca.harness import KEY, SECRET, clock_standing_in_this_minute
from tests.sim.alpaca.test_server import client

MARKET = {"symbol": "AAPL", "side": "buy", "type": "market", "time_in_force": "day"}


@asynccontextmanager
async def listening(http: httpx.AsyncClient) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A raw ``trade_updates`` connection, authenticated and listening."""
    url = str(http.base_url).replace("http://", "ws://").rstrip("/") + "/stream"
    async with trio_websocket.open_websocket_url(url) as ws:
        with trio.fail_after(10):
            frames = [
                {"action": "authenticate", "data": {"key_id": KEY, "secret_key": SECRET}},
                {"action": "listen", "data": {"streams": ["trade_updates"]}},
            ]
            for frame in frames:
                await ws.send_message(json.dumps(frame))
                await ws.get_message()
        yield ws


async def next_event(ws: trio_websocket.WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(10):
        return dict(json.loads(await ws.get_message())["data"])


async def test_drop_events_keeps_fills_off_the_stream_but_not_out_of_the_record() -> None:
    async with client(autofill=False) as (sim, http), listening(http) as ws:
        armed = await http.post("/_sim/faults", json={"kind": "drop_events", "events": ["fill"]})
        assert armed.status_code == 200
        order = (await http.post("/v2/orders", json={**MARKET, "qty": "3"})).json()
        assert (await next_event(ws))["event"] == "new"  # not a fill: sent
        sim.venue.execute(order["id"])  # dropped
        second = (await http.post("/v2/orders", json={**MARKET, "qty": "1"})).json()
        assert (await next_event(ws))["event"] == "new"  # the fill in between never came
        sim.venue.execute(second["id"])  # count 1 was used up: sent
        sent = await next_event(ws)
        assert (sent["event"], sent["order"]["id"]) == ("fill", second["id"])

        record = (await http.get(f"/v2/orders/{order['id']}")).json()
        assert record["status"] == "filled" and record["filled_qty"] == "3"
        state = (await http.get("/_sim/state")).json()
        assert state["events_dropped"] == 1 and state["fired"] == {"drop_events": 1}
        fills = (await http.get("/v2/account/activities/FILL", params={"direction": "asc"})).json()
        assert [(f["order_id"], f["qty"], f["cum_qty"]) for f in fills] == [
            (order["id"], "3", "3"),
            (second["id"], "1", "1"),
        ]
        # The activity's id ends with the execution id its trade update carried.
        assert fills[1]["id"].endswith("::" + sent["execution_id"])


async def test_drop_events_by_probability_is_the_same_for_the_same_seed() -> None:
    async def dropped_pattern() -> list[bool]:
        async with client(autofill=False) as (sim, http):
            await http.post("/_sim/faults", json={"kind": "drop_events", "count": 100,
                                                  "probability": 0.5})  # fmt: skip
            pattern = []
            for _ in range(12):
                before = sim.events_dropped
                await http.post("/v2/orders", json={**MARKET, "qty": "1"})
                pattern.append(sim.events_dropped > before)
            return pattern

    first = await dropped_pattern()
    assert any(first) and not all(first)
    assert await dropped_pattern() == first


async def test_silent_keeps_the_stream_open_with_no_updates_and_no_pongs() -> None:
    async with client(autofill=False) as (sim, http), listening(http) as ws:
        assert (await http.post("/_sim/faults", json={"kind": "silent"})).status_code == 200
        await http.post("/v2/orders", json={**MARKET, "qty": "1"})
        with trio.move_on_after(0.3) as quiet:
            await ws.ping()
        assert quiet.cancelled_caught  # no pong
        with trio.move_on_after(0.1) as nothing:
            await ws.get_message()
        assert nothing.cancelled_caught and not ws.closed
        assert sim.faults.fired == {"silent": 1}
        async with listening(http) as fresh:  # a new connection is not silenced
            await http.post("/v2/orders", json={**MARKET, "qty": "1"})
            assert (await next_event(fresh))["event"] == "new"


async def test_fill_activities_page_in_order_by_page_token_and_after() -> None:
    async with client(fill_slices=1, fill_delay_s=0) as (sim, http):
        for _ in range(3):
            order = (await http.post("/v2/orders", json={**MARKET, "qty": "1"})).json()
            with trio.fail_after(10):
                while (await http.get(f"/v2/orders/{order['id']}")).json()["status"] != "filled":
                    await trio.sleep(0.01)
        everything = sim.venue.activities.entries
        assert len(everything) == 3
        first = (
            await http.get(
                "/v2/account/activities/FILL", params={"direction": "asc", "page_size": "2"}
            )
        ).json()
        rest = (
            await http.get(
                "/v2/account/activities/FILL",
                params={"direction": "asc", "page_size": "2", "page_token": first[-1]["id"]},
            )
        ).json()
        assert first + rest == everything
        newest_first = (await http.get("/v2/account/activities/FILL")).json()
        assert newest_first == everything[::-1]
        after = (
            await http.get(
                "/v2/account/activities/FILL",
                params={"after": everything[0]["transaction_time"], "direction": "asc"},
            )
        ).json()
        assert after == everything[1:]
        assert (await http.get("/v2/account/activities/NOPE")).status_code == 422
        assert (await http.get("/v2/account/activities/DIV")).json() == []


async def test_rate_limit_set_by_admin_answers_429_with_alpacas_headers() -> None:
    now_ns = clock_standing_in_this_minute(30)  # the minute does not end between requests
    async with client(now_ns=now_ns) as (_sim, http):
        bad = await http.post("/_sim/rate-limit", json={"per_minute": -1})
        assert bad.status_code == 400
        assert (await http.post("/_sim/rate-limit", json={"per_minute": 2})).status_code == 200
        first = await http.get("/v2/account")
        assert first.headers["X-RateLimit-Limit"] == "2"
        assert first.headers["X-RateLimit-Remaining"] == "1"
        assert (await http.get("/v2/clock")).status_code == 200
        refused = await http.get("/v2/account")
        assert refused.status_code == 429
        assert refused.json() == {"code": 42910000, "message": "rate limit exceeded"}
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        reset = int(refused.headers["X-RateLimit-Reset"])
        assert reset == now_ns() // 1_000_000_000 + 30  # the next minute boundary
        state = (await http.get("/_sim/state")).json()
        assert state["rate_limit_per_minute"] == 2
        assert (await http.post("/_sim/rate-limit", json={"per_minute": 0})).status_code == 200
        unlimited = await http.get("/v2/account")
        assert unlimited.status_code == 200 and "X-RateLimit-Limit" not in unlimited.headers
