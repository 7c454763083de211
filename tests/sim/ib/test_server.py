"""The TWS simulator at the wire: version negotiation, greetings, bad clients, matching."""

from __future__ import annotations

from decimal import Decimal

import pytest
import trio

from tests.brokers.ib.harness import BOUND, RawClient
from ult_actors.brokers.ib import wire
from ult_actors.brokers.ib.protocol import (
    API_PREFIX,
    ConnectionClosed,
    FrameStream,
    encode_fields,
    encode_raw,
    version_range_text,
)
from ult_actors.sim.ib import TwsSimulator, run_command


@pytest.mark.parametrize(
    ("offer", "chosen"),
    [((100, 157), 157), ((157, 165), 165), ((157, 178), 178), ((157, 225), 178)],
)
async def test_the_server_picks_a_version_in_157_to_178_and_greets(
    sim: TwsSimulator, offer: tuple[int, int], chosen: int
) -> None:
    with trio.fail_after(BOUND):
        client = await RawClient.connect(sim.port, *offer)
        assert client.version == chosen
        await client.send(wire.StartApi(client_id=3))
        greeting = await client.until(wire.NextValidId)
        await client.send(wire.ReqCurrentTime())
        greeting += await client.until(wire.CurrentTime)
        await client.stream.aclose()
    assert greeting[0] == wire.ManagedAccounts(accounts=["DU1234567"])
    assert greeting[1] == wire.NextValidId(order_id=1)
    assert isinstance(greeting[-1], wire.CurrentTime)


async def test_a_client_below_157_or_without_the_preamble_is_closed(sim: TwsSimulator) -> None:
    with trio.fail_after(BOUND):
        old = FrameStream(await trio.open_tcp_stream("127.0.0.1", sim.port))
        await old.send_frames([API_PREFIX + encode_raw(version_range_text(100, 150))])
        with pytest.raises(ConnectionClosed):
            await old.receive_fields()
        rude = FrameStream(await trio.open_tcp_stream("127.0.0.1", sim.port))
        await rude.send_frames([b"GET / HTTP/1.1\r\n\r\n"])
        with pytest.raises(ConnectionClosed):
            await rude.receive_fields()


async def test_a_taken_client_id_gets_326_then_eof(sim: TwsSimulator) -> None:
    with trio.fail_after(BOUND):
        first = await RawClient.connect(sim.port)
        await first.send(wire.StartApi(client_id=2))
        await first.until(wire.NextValidId)
        second = await RawClient.connect(sim.port)
        await second.send(wire.StartApi(client_id=2))
        error = await second.receive()
        assert isinstance(error, wire.ErrorMessage) and error.code == 326
        with pytest.raises(ConnectionClosed):
            await second.receive()


async def test_unsupported_and_malformed_requests_get_errors_not_a_hangup(
    sim: TwsSimulator,
) -> None:
    with trio.fail_after(BOUND):
        client = await RawClient.connect(sim.port)
        await client.send(wire.StartApi(client_id=4))
        await client.until(wire.NextValidId)
        await client.stream.send_frames(
            [encode_fields(["10", "5", "5", "0", "AAPL"])]
        )  # market depth: not simulated
        await client.stream.send_frames([encode_fields(["3", "not-a-number"])])
        await client.stream.send_frames(
            [encode_fields(["1", "11", "5", "0", "AAPL"])]
        )  # market data, cut short
        codes = []
        for _ in range(6):
            msg = await client.receive()
            if isinstance(msg, wire.ErrorMessage) and msg.code < 2100:
                codes.append(msg.code)
            if len(codes) == 3:
                break
        assert codes == [321, 320, 320]
        await client.send(wire.ReqIds())
        assert await client.until(wire.NextValidId)


async def test_stops_trigger_limits_rest_and_global_cancel_clears_the_book(
    sim: TwsSimulator,
) -> None:
    aapl = wire.Contract(symbol="AAPL")

    def order(otype: str, **kw: object) -> wire.IbOrder:
        return wire.IbOrder(
            action="BUY", total_quantity=Decimal(3), order_type=otype, tif="GTC", **kw
        )  # type: ignore[arg-type]

    with trio.fail_after(BOUND):
        client = await RawClient.connect(sim.port)
        await client.send(wire.StartApi(client_id=5))
        await client.until(wire.NextValidId)
        price = sim.exchange.price("AAPL")
        await client.send(
            wire.PlaceOrder(order_id=1, contract=aapl, order=order("STP", aux_price=price + 5))
        )
        await client.send(
            wire.PlaceOrder(order_id=2, contract=aapl, order=order("LMT", lmt_price=price - 50))
        )
        await client.send(wire.ReqOpenOrders())
        listed = await client.until(wire.OpenOrderEnd)
        statuses = {m.order_id: m.status for m in listed if isinstance(m, wire.OrderStatus)}
        assert statuses == {1: "PreSubmitted", 2: "Submitted"}
        await sim.set_price("AAPL", price + 10)  # the stop triggers and fills at the market
        filled = await client.until(wire.ExecDetails)
        assert filled[-1].order_id == 1  # type: ignore[union-attr]
        await client.send(wire.ReqGlobalCancel())
        canceled = await client.until(wire.OrderStatus)
        while not (
            isinstance(canceled[-1], wire.OrderStatus) and canceled[-1].status == "Cancelled"
        ):
            canceled = await client.until(wire.OrderStatus)
        assert canceled[-1].order_id == 2  # type: ignore[union-attr]
    assert "open_orders=0" in await run_command(sim, "status")
