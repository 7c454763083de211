"""The TWS simulator's side of issue 18: message rate, silence, dropped fills, subscriptions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import trio

from tests.brokers.ib.harness import BOUND, RawClient, running_sim
from ult_actors.brokers.ib import wire
from ult_actors.brokers.ib.protocol import ConnectionClosed
from ult_actors.sim.ib import TwsSimulator, run_command

AAPL = wire.Contract(symbol="AAPL")


def market(qty: int, ref: str, action: str = "BUY") -> wire.IbOrder:
    return wire.IbOrder(
        action=action, total_quantity=Decimal(qty), order_type="MKT", tif="DAY", order_ref=ref
    )


async def started(sim: TwsSimulator, client_id: int = 5) -> RawClient:
    client = await RawClient.connect(sim.port)
    await client.send(wire.StartApi(client_id=client_id))
    await client.send(wire.ReqOpenOrders())
    await client.until(wire.OpenOrderEnd)  # past the greeting and farm notices
    return client


async def test_over_the_message_rate_a_client_gets_error_100_then_its_socket_closes(
    mock_clock: trio.testing.MockClock,
) -> None:
    # The limit counts a second of trio time. The clock stands still, so the six messages
    # are in one second however long a loaded machine stalls the test between them (with
    # the real clock a second's stall let the first out of the window: no error 100).
    mock_clock.autojump_threshold = 1.0  # a hang (idle a real second) ends at BOUND
    sim = TwsSimulator(tick_interval_s=None, max_messages_per_s=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve)
        with trio.fail_after(BOUND):
            client = await started(sim)
            for _ in range(5):  # with the one ``started`` sent, 6 in a second
                await client.send(wire.ReqCurrentTime())
            seen: list[Any] = []
            with pytest.raises(ConnectionClosed):
                while True:
                    seen.append(await client.receive())
        nursery.cancel_scope.cancel()
    times = [m for m in seen if isinstance(m, wire.CurrentTime)]
    errors = [m for m in seen if isinstance(m, wire.ErrorMessage) and m.code == 100]
    assert len(times) == 4  # the sixth in the second was not answered
    assert len(errors) == 1 and "max=5" in errors[0].message
    assert sim.rate_violations == 1


async def test_at_the_limit_a_client_is_served() -> None:
    sim = TwsSimulator(tick_interval_s=None, max_messages_per_s=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve)
        with trio.fail_after(BOUND):
            client = await started(sim)
            for _ in range(3):  # with the one ``started`` sent, 5 in a second
                await client.send(wire.ReqCurrentTime())
            await client.send(wire.ReqOpenOrders())
            answered = await client.until(wire.OpenOrderEnd)
        nursery.cancel_scope.cancel()
    assert sum(isinstance(m, wire.CurrentTime) for m in answered) == 3
    assert sim.rate_violations == 0


async def test_a_slow_answer_delays_what_follows_not_the_count_of_what_arrived(
    mock_clock: trio.testing.MockClock,
) -> None:
    # TWS counts messages as they arrive, whatever it is busy with. Ten sent two a
    # second while the first one's answer takes six seconds: the answers then come
    # one after another, and none of the messages was over the limit.
    mock_clock.autojump_threshold = 1.0  # a hang (idle a real second) ends at BOUND
    sim = TwsSimulator(tick_interval_s=None, max_messages_per_s=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve)
        with trio.fail_after(BOUND):
            client = await started(sim)
            sim.faults.reply_delay_s = 6.0
            await client.send(wire.ReqCurrentTime())
            for _ in range(10):
                mock_clock.jump(0.5)
                await client.send(wire.ReqCurrentTime())
                await trio.testing.wait_all_tasks_blocked()  # the simulator has read it
            sim.faults.reply_delay_s = 0.0
            mock_clock.jump(1.0)  # the first answer is due
            times = 0
            while times < 11:
                times += isinstance(await client.receive(), wire.CurrentTime)
        nursery.cancel_scope.cancel()
    assert sim.rate_violations == 0


async def test_a_silent_tws_reads_and_acts_but_sends_nothing(sim: TwsSimulator) -> None:
    with trio.fail_after(BOUND):
        client = await started(sim)
        assert (await run_command(sim, "silent on")) == "ok silent on"
        await client.send(wire.ReqCurrentTime())
        await client.send(wire.PlaceOrder(order_id=1, contract=AAPL, order=market(2, "quiet")))
        await client.send(wire.ReqOpenOrders())
        await sim.wait_handled(5, 4)  # ``started`` sent one
        assert sim.exchange.positions()[0].position == 2  # the order was acted on
        await run_command(sim, "silent off")
        await client.send(wire.ReqExecutions(req_id=9))
        # The first thing the client hears answers the request made after the silence.
        first = await client.receive()
    assert isinstance(first, wire.ExecDetails) and first.req_id == 9
    assert first.order_ref == "quiet"


async def test_dropped_executions_are_not_pushed_but_req_executions_lists_them(
    sim: TwsSimulator,
) -> None:
    with trio.fail_after(BOUND):
        client = await started(sim)
        await run_command(sim, "drop-executions on")
        await client.send(wire.PlaceOrder(order_id=1, contract=AAPL, order=market(3, "gone")))
        await client.send(wire.ReqExecutions(req_id=4))
        heard = await client.until(wire.ExecDetailsEnd)
    pushed = [m for m in heard if isinstance(m, wire.ExecDetails) and m.req_id == -1]
    listed = [m for m in heard if isinstance(m, wire.ExecDetails) and m.req_id == 4]
    reports = [m for m in heard if isinstance(m, wire.CommissionReport)]
    statuses = [m.status for m in heard if isinstance(m, wire.OrderStatus)]
    assert not pushed and "Filled" in statuses  # the status still comes
    assert [m.order_ref for m in listed] == ["gone"]
    assert [r.exec_id for r in reports] == [listed[0].exec_id]  # with the answer only


async def test_req_executions_honours_the_filter_time() -> None:
    now = [1_760_000_000 * 10**9]  # 2025-10-09 08:53:20 UTC
    sim = TwsSimulator(tick_interval_s=None, now_ns=lambda: now[0])
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve)
        with trio.fail_after(BOUND):
            client = await started(sim)
            await client.send(wire.PlaceOrder(order_id=1, contract=AAPL, order=market(1, "early")))
            await sim.wait_handled(5, 2)  # filled before the clock moves
            now[0] += 60 * 10**9
            await client.send(wire.PlaceOrder(order_id=2, contract=AAPL, order=market(1, "late")))
            answers = {}
            for req_id, since in ((1, "20251009-08:54:00"), (2, "20251009 08:53:00 UTC"), (3, "")):
                await client.send(
                    wire.ReqExecutions(req_id=req_id, filter=wire.ExecutionFilter(time=since))
                )
                heard = await client.until(wire.ExecDetailsEnd)
                answers[req_id] = [
                    m.order_ref for m in heard if isinstance(m, wire.ExecDetails) and m.req_id > 0
                ]
            await client.send(
                wire.ReqExecutions(req_id=4, filter=wire.ExecutionFilter(time="yesterday"))
            )
            refused = await client.until(wire.ErrorMessage)
        nursery.cancel_scope.cancel()
    assert answers == {1: ["late"], 2: ["early", "late"], 3: ["early", "late"]}
    assert refused[-1].code == 321  # type: ignore[union-attr]


async def test_position_and_account_subscriptions_push_each_fill_once_subscribed() -> None:
    async with running_sim() as sim:
        with trio.fail_after(BOUND):
            client = await started(sim)
            await client.send(wire.ReqPositions())
            await client.send(wire.ReqAccountUpdates(subscribe=True, account=sim.exchange.account))
            first = await client.until(wire.AccountDownloadEnd)
            await client.send(wire.PlaceOrder(order_id=1, contract=AAPL, order=market(4, "a")))
            pushed = await client.until(wire.AccountUpdateTime)
            await client.send(wire.CancelPositions())
            await client.send(wire.ReqAccountUpdates(subscribe=False))
            await client.send(wire.PlaceOrder(order_id=2, contract=AAPL, order=market(4, "b")))
            await client.send(wire.ReqOpenOrders())
            after = await client.until(wire.OpenOrderEnd)
    assert sum(isinstance(m, wire.PositionEnd) for m in first) == 1
    positions = [m.position for m in pushed if isinstance(m, wire.PositionData)]
    portfolio = [m.position for m in pushed if isinstance(m, wire.PortfolioValue)]
    assert positions == [Decimal(4)] and portfolio == [Decimal(4)]
    assert not any(isinstance(m, wire.PositionEnd) for m in pushed)  # only after the first batch
    assert not any(isinstance(m, wire.PositionData | wire.PortfolioValue) for m in after)


async def test_the_admin_port_sets_the_limit_and_reports_who_went_over(sim: TwsSimulator) -> None:
    assert await run_command(sim, "max-messages 2") == "ok max messages per second 2"
    with trio.fail_after(BOUND):
        client = await started(sim)  # one message
        await client.send(wire.ReqCurrentTime())
        await client.send(wire.ReqCurrentTime())
        with pytest.raises(ConnectionClosed):
            while True:
                await client.receive()
    assert "rate_violations=1" in await run_command(sim, "status")
    assert await run_command(sim, "max-messages off") == "ok max messages per second off"


async def test_1101_data_lost_ends_the_subscriptions_a_client_must_make_again() -> None:
    async with running_sim() as sim:
        with trio.fail_after(BOUND):
            client = await started(sim)
            await client.send(wire.ReqPositions())
            await client.until(wire.PositionEnd)
            await sim.connectivity_lost()
            await sim.connectivity_restored(data_lost=True)
            await client.send(wire.PlaceOrder(order_id=1, contract=AAPL, order=market(2, "x")))
            await client.send(wire.ReqOpenOrders())
            after = await client.until(wire.OpenOrderEnd)
            await client.send(wire.ReqPositions())  # subscribed again
            again = await client.until(wire.PositionEnd)
    assert [m.code for m in after if isinstance(m, wire.ErrorMessage)] == [1100, 1101]
    assert not any(isinstance(m, wire.PositionData) for m in after)
    assert [m.position for m in again if isinstance(m, wire.PositionData)] == [Decimal(2)]
