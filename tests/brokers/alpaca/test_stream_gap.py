"""Issue 18's acceptance at Alpaca: a fill made while ``trade_updates`` is down is applied
once, before the gate reopens; orders sent meanwhile are held or refused as configured.

The real service on the Alpaca simulator. The stream is cut and its
reconnects refused until the test lets them through; meanwhile the venue
fills an order (nobody hears of it) and a client sends a new order. The
connection shows ``degraded`` on the event bus; once the stream is back its
resync delivers the fill, and only then is the connection ``ready`` again.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

import pytest
import trio

from tests.brokers.alpaca.harness import running_sim, service_on
from tests.brokers.harness import (
    crash_applying_first_fill,
    fills_journaled,
    until_state,
    watch_connection,
)
from ult_actors.errors import BrokerUnavailable
from ult_actors.messages import (
    Event,
    GetPositions,
    OrderReply,
    OrderRequest,
    OrderUpdate,
    PositionsReply,
    SetTradingState,
    Submit,
)
from ult_actors.service import Service
from ult_actors.sim.alpaca.faults import Fault
from ult_actors.sim.alpaca.server import AlpacaSim


def buy(coid: str, qty: str = "1") -> OrderRequest:
    return OrderRequest(
        symbol="AAPL", side="buy", qty=Decimal(qty), broker="alpaca", client_order_id=coid
    )


async def _stream_down(sim: AlpacaSim, svc: Service) -> trio.MemoryReceiveChannel[Event]:
    events = watch_connection(svc.bus)
    sim.arm(Fault(kind="stream_refuse", count=1_000_000))
    sim.cut_streams()
    seen = await until_state(events, "degraded")
    assert [e for e in seen if isinstance(e, OrderUpdate)] == []
    return events


@pytest.mark.parametrize("on_unavailable", ["hold", "refuse"])
async def test_a_fill_while_the_stream_is_down_is_applied_once_before_orders_go_again(
    tmp_path: Path, on_unavailable: Literal["hold", "refuse"]
) -> None:
    config = tmp_path / "ult.toml"
    config.write_text(
        # Its own state directory: the trading state it sets is saved there.
        f'[service]\nstate_dir = "{tmp_path}"\n'
        f'[brokers.alpaca]\nkind = "alpaca"\non_unavailable = "{on_unavailable}"\n'
        "stream_max_reconnects = 1000\nstream_backoff_initial_s = 0.01\n"
        "stream_backoff_cap_s = 0.05\n"
    )
    async with running_sim(autofill=False) as (sim, port), service_on(port, config=config) as svc:
        with trio.fail_after(15):
            rested = await svc.gateway.handle(Submit(id=1, order=buy("gap-rest", "2")))
        assert isinstance(rested, OrderReply) and rested.order.status == "accepted"
        events = await _stream_down(sim, svc)
        sim.venue.execute(sim.venue.get_by_client_id("gap-rest").id)  # nobody hears of it

        answers: list[object] = []
        answered = trio.Event()

        async def send_during_the_gap() -> None:
            try:
                answers.append(await svc.gateway.handle(Submit(id=2, order=buy("gap-new"))))
            except BrokerUnavailable as exc:
                answers.append(exc)
            answered.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_during_the_gap)
            if on_unavailable == "refuse":
                with trio.fail_after(10):
                    await answered.wait()  # the refusal needs no reconnect
                [refused] = answers
                assert isinstance(refused, BrokerUnavailable)
                assert "degraded" in refused.message
            else:
                # Held at the gate: no answer however long the stream stays away.
                with trio.move_on_after(0.5):
                    await answered.wait()
                assert answers == []
            assert "gap-new" not in sim.venue.by_client
            sim.faults.clear()  # the stream may come back now
            seen = await until_state(events, "ready")

        fills = [e for e in seen if isinstance(e, OrderUpdate)]
        assert [(e.order.client_order_id, e.fill and e.fill.qty) for e in fills] == [
            ("gap-rest", Decimal(2))
        ]  # once, before the gate reopened
        store = await svc.journal.get()
        with trio.fail_after(10):
            while (journaled := await store.get("gap-rest")) is None or (
                journaled.status != "filled"
            ):
                await trio.sleep(0.02)  # the journal writes in the background
        rows = await svc.gateway.handle(GetPositions(id=3, broker="alpaca"))
        assert isinstance(rows, PositionsReply)
        assert [(p.symbol, p.qty) for p in rows.positions] == [("AAPL", Decimal(2))]
        # Risk's own book has the gap's fill: in reducing mode it lets through a sell of
        # the whole position (an order it would refuse as growing one it knows nothing of).
        await svc.gateway.handle(SetTradingState(id=4, state="reducing", broker="alpaca"))
        sell = OrderRequest(
            symbol="AAPL", side="sell", qty=Decimal(2), broker="alpaca", client_order_id="gap-out"
        )
        sold = await svc.gateway.handle(Submit(id=5, order=sell))
        assert isinstance(sold, OrderReply) and sold.order.status == "accepted"
        if on_unavailable == "hold":
            [held] = answers
            assert isinstance(held, OrderReply) and held.order.status == "accepted"
            assert "gap-new" in sim.venue.by_client  # sent once the gate reopened
        else:
            assert await store.get("gap-new") is None  # refused: nothing journaled


async def test_a_fill_whose_application_crashed_the_broker_actor_is_applied_once_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running_sim(autofill=False) as (sim, port), service_on(port) as svc:
        with trio.fail_after(15):
            rested = await svc.gateway.handle(Submit(id=1, order=buy("crash-1", "2")))
        assert isinstance(rested, OrderReply) and rested.order.status == "accepted"
        events = watch_connection(svc.bus)
        # The broker actor crashes while it applies the stream's fill: after the
        # connector handed it on, before the journal, risk and positions have it.
        crashes = await crash_applying_first_fill(svc, "crash-1", monkeypatch)
        sim.venue.execute(sim.venue.get_by_client_id("crash-1").id)
        with trio.fail_after(15):
            while not crashes:  # ends once the incarnation after the crash is in step
                await until_state(events, "ready")
        [activity] = sim.venue.activities.entries
        execution_id = activity["id"].split("::")[1]
        assert crashes == [execution_id]
        journaled = await fills_journaled(svc, "alpaca", "crash-1")
        assert [(f.fill_id, f.qty) for f in journaled] == [(execution_id, Decimal(2))]
        store = await svc.journal.get()
        order = await store.get("crash-1")
        assert order is not None and order.status == "filled"
        rows = await svc.gateway.handle(GetPositions(id=2, broker="alpaca"))
        assert isinstance(rows, PositionsReply)
        assert [(p.symbol, p.qty) for p in rows.positions] == [("AAPL", Decimal(2))]
        assert svc.health().connections["alpaca"].state == "ready"
