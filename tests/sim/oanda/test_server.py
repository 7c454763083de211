"""The OANDA simulator as any v20 client sees it: over HTTP on 127.0.0.1, OANDA's paths and shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from ult_actors.sim.oanda.faults import Fault
from ult_actors.sim.oanda.prices import PriceFeed
from ult_actors.sim.oanda.server import UNAUTHORIZED_BODY, OandaSimulator

TOKEN = "sim-test-token-93b1"
ACCOUNT = "101-001-5550001-001"


class Clock:
    """Wall-clock nanoseconds the test moves by hand."""

    def __init__(self) -> None:
        self.ns = 1_714_572_131_000_000_000

    def __call__(self) -> int:
        return self.ns


@asynccontextmanager
async def served(**options: Any) -> AsyncIterator[tuple[OandaSimulator, httpx.AsyncClient]]:
    """A simulator on a free loopback port and a client authorised for it."""
    options.setdefault("tick_s", 0)
    sim = OandaSimulator(token=TOKEN, account_id=ACCOUNT, **options)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            await nursery.start(sim.serve)
        async with httpx.AsyncClient(
            base_url=f"{sim.base_url}/v3/accounts/{ACCOUNT}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        ) as client:
            yield sim, client
        nursery.cancel_scope.cancel()


def order(**fields: Any) -> dict[str, Any]:
    return {"order": {"type": "MARKET", "instrument": "EUR_USD", "units": "1000", **fields}}


async def test_tokens_and_accounts_are_checked_with_oandas_bodies() -> None:
    async with served() as (sim, client):
        wrong = await client.get("/summary", headers={"Authorization": "Bearer nope"})
        assert (wrong.status_code, wrong.json()) == (401, UNAUTHORIZED_BODY)
        missing = await client.get(sim.base_url + "/v3/accounts", headers={"Authorization": ""})
        assert missing.status_code == 401
        foreign = await client.get(sim.base_url + "/v3/accounts/101-001-0-001/summary")
        assert foreign.status_code == 403 and "errorMessage" in foreign.json()
        listed = await client.get(sim.base_url + "/v3/accounts")
        assert listed.json() == {"accounts": [{"id": ACCOUNT, "tags": []}]}
        summary = (await client.get("/summary")).json()["account"]
        assert (summary["balance"], summary["currency"], summary["hedgingEnabled"]) == (
            "100000.0000",
            "USD",
            False,
        )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", None),
        (b'{"orders": {}}', None),
        (b'{"order": {"type": "FIXED_PRICE"}}', None),
        (order(units="0"), "UNITS_INVALID"),
        (order(units="12.5"), "UNITS_PRECISION_EXCEEDED"),
        (order(instrument="EUR_XXX"), "INSTRUMENT_UNKNOWN"),
        (order(timeInForce="GTC"), "TIME_IN_FORCE_INVALID"),
        (order(type="LIMIT"), "PRICE_MISSING"),
        (order(type="LIMIT", price="1.0812345"), "PRICE_PRECISION_EXCEEDED"),
        (
            order(type="LIMIT", price="1.08", timeInForce="GTD"),
            "TIME_IN_FORCE_GTD_TIMESTAMP_MISSING",
        ),
        (order(type="MARKET_IF_TOUCHED", price="1.08", timeInForce="IOC"), "TIME_IN_FORCE_INVALID"),
        (order(clientExtensions={"id": ""}), "CLIENT_ORDER_ID_INVALID"),
    ],
)
async def test_malformed_orders_get_400_with_an_error_message(
    body: bytes | dict[str, Any], reason: str | None
) -> None:
    async with served() as (sim, client):
        before = sim.book.last_id
        if isinstance(body, bytes):
            reply = await client.post("/orders", content=body)
        else:
            reply = await client.post("/orders", json=body)
        assert reply.status_code == 400
        data = reply.json()
        assert data["errorMessage"]
        if reason is None:
            assert sim.book.last_id == before  # not even a reject transaction
        else:
            rejected = data["orderRejectTransaction"]
            assert rejected["rejectReason"] == data["errorCode"] == reason
            assert rejected["type"].endswith("_ORDER_REJECT")
            assert data["lastTransactionID"] == rejected["id"]


async def test_fills_and_positions_with_long_and_short_sides() -> None:
    async with served() as (sim, client):
        bought = (await client.post("/orders", json=order(clientExtensions={"id": "a"}))).json()
        fill = bought["orderFillTransaction"]
        assert fill["orderID"] == bought["orderCreateTransaction"]["id"]
        assert fill["clientOrderID"] == "a" and fill["units"] == "1000"
        assert fill["tradeOpened"]["units"] == "1000"
        ask = sim.feed.quote("EUR_USD").ask
        assert Decimal(fill["price"]) == ask

        sold = (await client.post("/orders", json=order(units="-3000"))).json()
        fill = sold["orderFillTransaction"]
        assert fill["tradesClosed"][0]["units"] == "-1000"
        assert fill["tradeOpened"]["units"] == "-2000"
        assert Decimal(fill["pl"]) < 0  # bought at the ask, sold at the bid
        (position,) = (await client.get("/openPositions")).json()["positions"]
        assert (position["long"]["units"], position["short"]["units"]) == ("0", "-2000")
        assert position["short"]["tradeIDs"] == [fill["id"]]
        trades = (await client.get("/openTrades")).json()["trades"]
        assert [t["currentUnits"] for t in trades] == ["-2000"]

        await client.post("/orders", json=order(units="2000"))
        assert (await client.get("/openPositions")).json()["positions"] == []
        everything = (await client.get("/positions")).json()["positions"]
        assert [p["instrument"] for p in everything] == ["EUR_USD"]


async def test_margin_limits_orders() -> None:
    async with served(balance=Decimal(1000)) as (_, client):
        reply = (await client.post("/orders", json=order(units="1000000"))).json()
        assert reply["orderCancelTransaction"]["reason"] == "INSUFFICIENT_MARGIN"
        assert "orderFillTransaction" not in reply


async def test_pending_orders_cancels_and_lookups_by_client_id() -> None:
    async with served() as (_, client):
        spec = order(type="LIMIT", price="0.90000", clientExtensions={"id": "rest-1"})
        created = (await client.post("/orders", json=spec)).json()
        order_id = created["orderCreateTransaction"]["id"]
        assert "orderFillTransaction" not in created
        pending = (await client.get("/pendingOrders")).json()["orders"]
        assert [(o["id"], o["state"]) for o in pending] == [(order_id, "PENDING")]
        by_client = (await client.get("/orders/%40rest-1")).json()["order"]
        assert by_client["id"] == order_id
        dup = await client.post("/orders", json=spec)
        assert dup.json()["errorCode"] == "CLIENT_ORDER_ID_ALREADY_EXISTS"
        canceled = await client.put("/orders/@rest-1/cancel")
        assert canceled.status_code == 200
        assert canceled.json()["orderCancelTransaction"]["reason"] == "CLIENT_REQUEST"
        again = await client.put(f"/orders/{order_id}/cancel")
        assert again.status_code == 404
        assert again.json()["orderCancelRejectTransaction"]["rejectReason"] == "ORDER_DOESNT_EXIST"
        assert (await client.get("/pendingOrders")).json()["orders"] == []
        listed = (await client.get("/orders", params={"state": "CANCELLED"})).json()["orders"]
        assert [o["id"] for o in listed] == [order_id]
        assert (await client.get("/orders/999")).status_code == 404


async def test_resting_orders_fill_when_the_price_reaches_them_and_gtd_expires() -> None:
    clock = Clock()
    async with served(now_ns=clock) as (sim, client):
        limit = order(type="LIMIT", price="1.07000")
        stop = order(type="STOP", units="-500", price="1.07000")
        gtd = order(type="LIMIT", price="0.50000", timeInForce="GTD", gtdTime="1714572191.0")
        ids = []
        for spec in (limit, stop, gtd):
            ids.append(
                (await client.post("/orders", json=spec)).json()["orderCreateTransaction"]["id"]
            )
        clock.ns += 120 * 1_000_000_000
        moved = await client.post(
            sim.base_url + "/_sim/prices",
            json={"EUR_USD": {"bid": "1.06986", "ask": "1.07000"}},
        )
        assert moved.status_code == 200
        states = {i: (await client.get(f"/orders/{i}")).json()["order"] for i in ids}
        assert states[ids[0]]["state"] == "FILLED"  # buy limit: the ask came down to it
        assert states[ids[1]]["state"] == "FILLED"  # sell stop: the bid fell through it
        assert states[ids[2]]["state"] == "CANCELLED"
        reason = (
            await client.get(f"/transactions/{states[ids[2]]['cancellingTransactionID']}")
        ).json()
        assert reason["transaction"]["reason"] == "TIME_IN_FORCE_EXPIRED"


def test_the_price_walk_is_deterministic_per_seed() -> None:
    def walk(seed: int) -> list[Decimal]:
        feed = PriceFeed(seed)
        out = []
        for _ in range(50):
            feed.step()
            out.append(feed.quote("EUR_USD").bid)
        return out

    assert walk(3) == walk(3)
    assert walk(3) != walk(4)


async def test_faults_set_from_another_process_over_the_admin_endpoint() -> None:
    async with served() as (sim, client), httpx.AsyncClient(base_url=sim.base_url) as admin:
        summary = f"/v3/accounts/{ACCOUNT}/summary"
        armed = await admin.post(
            "/_sim/faults", json={"kind": "status", "status": 503, "count": 2, "path": summary}
        )
        assert armed.json()["armed"][0]["count"] == 2
        assert [(await client.get("/summary")).status_code for _ in range(3)] == [503, 503, 200]
        await admin.post(
            "/_sim/faults",
            json={"kind": "rate_limit", "retry_after_s": 2, "retry_after_header": True},
        )
        limited = await client.get("/summary")
        assert (limited.status_code, limited.headers["Retry-After"]) == (429, "2")
        await admin.post("/_sim/faults", json=[{"kind": "drop"}])
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/summary")
        await admin.post("/_sim/faults", json={"kind": "lose_reply", "method": "POST"})
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("/orders", json=order(clientExtensions={"id": "lost"}))
        applied = (await client.get("/orders/@lost")).json()["order"]
        assert applied["state"] == "FILLED"  # applied though the reply was lost
        await admin.post("/_sim/faults", json={"kind": "slow", "delay_s": 0, "count": 5})
        state = (await admin.get("/_sim/state")).json()
        assert state["fired"] == {"status": 2, "rate_limit": 1, "drop": 1, "lose_reply": 1}
        assert [f["kind"] for f in state["faults"]] == ["slow"]
        assert (await admin.delete("/_sim/faults")).json() == {"armed": []}
        assert (await admin.get("/_sim/faults")).json() == {"armed": []}
        bad = await admin.post("/_sim/faults", json={"kind": "explode"})
        assert bad.status_code == 400
        assert (
            await admin.post("/_sim/faults", json={"kind": "drop", "count": 0})
        ).status_code == 400
        unknown = await admin.post("/_sim/nothing")
        assert unknown.status_code == 404


async def test_the_transaction_stream_sends_transactions_and_heartbeats() -> None:
    async with served(heartbeat_s=0.05) as (sim, client):
        lines: list[dict[str, Any]] = []
        headers = {"Accept-Datetime-Format": "UNIX"}
        with trio.fail_after(10):
            async with client.stream("GET", "/transactions/stream", headers=headers) as stream:
                assert stream.status_code == 200
                await client.post("/orders", json=order())
                async for line in stream.aiter_lines():
                    lines.append(httpx.Response(200, content=line).json())
                    types = [entry["type"] for entry in lines]
                    if "ORDER_FILL" in types and types[-1] == "HEARTBEAT":
                        break
        types = [entry["type"] for entry in lines]
        assert types.index("MARKET_ORDER") < types.index("ORDER_FILL")
        beat = lines[-1]
        assert beat["lastTransactionID"] == sim.book.last_id
        assert float(beat["time"]) > 1e9  # UNIX seconds, as the request asked


async def test_stream_faults_refuse_mute_and_cut(autojump_clock: trio.testing.MockClock) -> None:
    async with (
        served(heartbeat_s=5) as (sim, client),
        httpx.AsyncClient(base_url=sim.base_url) as admin,
    ):
        await admin.post("/_sim/faults", json={"kind": "stream_refuse"})
        async with client.stream("GET", "/transactions/stream") as refused:
            assert refused.status_code == 503
        async with client.stream("GET", "/transactions/stream", timeout=None) as muted:
            lines = muted.aiter_lines()
            assert "HEARTBEAT" in await lines.__anext__()
            await admin.post("/_sim/faults", json={"kind": "stream_mute"})
            with trio.move_on_after(60) as quiet:  # twelve heartbeat periods
                await lines.__anext__()
            assert quiet.cancelled_caught  # nothing at all, though the connection is open
        async with client.stream("GET", "/transactions/stream", timeout=None) as fresh:
            lines = fresh.aiter_lines()
            await admin.post("/_sim/faults", json={"kind": "stream_drop", "after_events": 2})
            await client.post("/orders", json=order())  # two transactions: create and fill
            got = [await lines.__anext__(), await lines.__anext__()]
            assert ["MARKET_ORDER" in got[0], "ORDER_FILL" in got[1]] == [True, True]
            with pytest.raises(httpx.RemoteProtocolError):
                await lines.__anext__()
        assert (await admin.post("/_sim/stream/drop")).json() == {"cut": 0}


async def test_heartbeats_can_stop_while_transactions_flow(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        served(heartbeat_s=5) as (sim, client),
        client.stream("GET", "/transactions/stream", timeout=None) as stream,
    ):
        lines = stream.aiter_lines()
        assert "HEARTBEAT" in await lines.__anext__()
        sim.arm(Fault(kind="heartbeat_stop"))
        await client.post("/orders", json=order())
        assert "MARKET_ORDER" in await lines.__anext__()
        assert "ORDER_FILL" in await lines.__anext__()
        with trio.move_on_after(30) as quiet:
            await lines.__anext__()
        assert quiet.cancelled_caught


async def test_pricing_snapshot_and_stream() -> None:
    async with served(heartbeat_s=0.05) as (sim, client):
        prices = (await client.get("/pricing", params={"instruments": "EUR_USD,USD_JPY"})).json()
        assert [p["instrument"] for p in prices["prices"]] == ["EUR_USD", "USD_JPY"]
        assert prices["prices"][1]["asks"][0]["price"].count(".") == 1
        assert (await client.get("/pricing", params={"instruments": "NOPE"})).status_code == 400
        with trio.fail_after(10):
            async with client.stream(
                "GET", "/pricing/stream", params={"instruments": "EUR_USD"}
            ) as stream:
                lines = stream.aiter_lines()
                first = httpx.Response(200, content=await lines.__anext__()).json()
                assert first["type"] == "PRICE" and first["instrument"] == "EUR_USD"
                sim.tick()
                second = httpx.Response(200, content=await lines.__anext__()).json()
                assert second["type"] in ("PRICE", "HEARTBEAT")


async def test_position_close_sells_the_long_side_at_market_with_oandas_reply() -> None:
    async with served() as (_sim, client):
        await client.post("/orders", json=order(units="3000"))
        part = await client.put(
            "/positions/EUR_USD/close",
            json={"longUnits": "1000", "longClientExtensions": {"id": "close-1"}},
        )
        assert part.status_code == 200
        body = part.json()
        create, fill = body["longOrderCreateTransaction"], body["longOrderFillTransaction"]
        assert create["type"] == "MARKET_ORDER" and create["reason"] == "POSITION_CLOSEOUT"
        assert create["longPositionCloseout"] == {"instrument": "EUR_USD", "units": "1000"}
        assert fill["units"] == "-1000" and fill["reason"] == "MARKET_ORDER_POSITION_CLOSEOUT"
        assert fill["clientOrderID"] == "close-1"
        assert body["relatedTransactionIDs"] == [create["id"], fill["id"]]
        assert (await client.get("/orders/@close-1")).json()["order"]["state"] == "FILLED"

        rest = (await client.put("/positions/EUR_USD/close", json={"longUnits": "ALL"})).json()
        assert rest["longOrderFillTransaction"]["units"] == "-2000"
        assert (await client.get("/openPositions")).json()["positions"] == []

        flat = await client.put("/positions/EUR_USD/close", json={"longUnits": "ALL"})
        assert flat.status_code == 400
        assert flat.json()["errorCode"] == "CLOSEOUT_POSITION_DOESNT_EXIST"
        assert flat.json()["longOrderRejectTransaction"]["type"] == "MARKET_ORDER_REJECT"
        assert (await client.get("/positions/EUR_USD/close")).status_code == 405


async def test_position_close_with_v20_defaults_closes_a_short_and_checks_units() -> None:
    async with served() as (_sim, client):
        await client.post("/orders", json=order(units="-2000"))
        too_many = await client.put("/positions/EUR_USD/close", json={"shortUnits": "5000"})
        assert too_many.status_code == 400
        assert too_many.json()["errorCode"] == "CLOSEOUT_POSITION_UNITS_EXCEED_POSITION_SIZE"
        closed = (await client.put("/positions/EUR_USD/close")).json()  # both sides "ALL"
        assert closed["shortOrderFillTransaction"]["units"] == "2000"
        assert "longOrderCreateTransaction" not in closed
        assert (await client.get("/openPositions")).json()["positions"] == []


async def test_transactions_list_is_paged_into_idrange_urls_that_fetch_every_transaction() -> None:
    async with served() as (sim, client):
        for _ in range(5):
            await client.post("/orders", json=order())  # create + fill: two transactions each
        listed = await client.get("/transactions", params={"pageSize": "4"})
        assert listed.status_code == 200
        body = listed.json()
        assert {"from", "to", "pageSize", "count", "pages", "lastTransactionID"} <= set(body)
        assert body["count"] == int(body["lastTransactionID"]) == 12  # CREATE, TRANSFER_FUNDS, 10
        assert len(body["pages"]) == 3
        assert body["pages"][0] == (
            f"{sim.base_url}/v3/accounts/{ACCOUNT}/transactions/idrange?from=1&to=4"
        )
        seen: list[str] = []
        for url in body["pages"]:
            page = await client.get(url)
            assert page.status_code == 200
            seen += [t["id"] for t in page.json()["transactions"]]
        assert seen == [str(n) for n in range(1, 13)]

        fills = (await client.get("/transactions", params={"type": "ORDER_FILL"})).json()
        assert fills["count"] == 5 and fills["type"] == ["ORDER_FILL"]
        (only_page,) = fills["pages"]
        fetched = (await client.get(only_page)).json()["transactions"]
        assert {t["type"] for t in fetched} == {"ORDER_FILL"} and len(fetched) == 5

        assert (await client.get("/transactions", params={"pageSize": "0"})).status_code == 400
        assert (await client.get("/transactions", params={"from": "yesterday"})).status_code == 400
        beyond = await client.get("/transactions/idrange", params={"from": "99", "to": "100"})
        assert beyond.status_code == 416
