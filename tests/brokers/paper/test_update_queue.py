"""The paper connector's update stream: every update once, in order, however they come.

The venue emits synchronously and the stream's task hands what it queued to the
sink: several at a wake-up, more queued while the sink waits, and what a stream
ended early (cancelled, a sink's error) had not handed over stays queued, in order.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import trio
import trio.testing

from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.messages import Order, OrderUpdate


def _update(n: int) -> OrderUpdate:
    order = Order(
        id=f"id-{n}", client_order_id=f"c-{n}", broker="paper", symbol="AAPL", side="buy",
        qty=Decimal(1), type="market", time_in_force="day", status="accepted", updated_at=n,
    )  # fmt: skip
    return OrderUpdate(order=order)


async def _connected(tmp_path: Path) -> PaperConnector:
    settings = PaperSettings(tick_interval_s=0, state_path=str(tmp_path / "paper.db"))
    connector = PaperConnector("paper", settings)
    await connector.connect()
    return connector


def _numbers(updates: list[OrderUpdate]) -> list[int]:
    return [u.order.updated_at for u in updates]


async def test_updates_queued_while_the_sink_waits_come_next_in_order(tmp_path: Path) -> None:
    connector = await _connected(tmp_path)
    seen: list[OrderUpdate] = []
    go_on = trio.Event()

    async def slow_sink(update: OrderUpdate) -> None:
        seen.append(update)
        if len(seen) == 1:
            await go_on.wait()

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(connector.stream_updates, slow_sink)
            connector.redeliver([_update(1), _update(2)])
            await trio.testing.wait_all_tasks_blocked()
            assert _numbers(seen) == [1]  # the first waits in the sink
            connector.redeliver([_update(3)])
            go_on.set()
            await trio.testing.wait_all_tasks_blocked()
            assert _numbers(seen) == [1, 2, 3]
            connector.redeliver([_update(4)])  # the stream waits for more: woken
            await trio.testing.wait_all_tasks_blocked()
            assert _numbers(seen) == [1, 2, 3, 4]
            nursery.cancel_scope.cancel()
    finally:
        await connector.disconnect()


async def test_what_a_cancelled_stream_had_not_handed_over_the_next_one_delivers(
    tmp_path: Path,
) -> None:
    connector = await _connected(tmp_path)
    seen: list[OrderUpdate] = []

    async def stuck_sink(update: OrderUpdate) -> None:
        seen.append(update)
        await trio.sleep_forever()

    async def sink(update: OrderUpdate) -> None:
        seen.append(update)

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(connector.stream_updates, stuck_sink)
            connector.redeliver([_update(1), _update(2), _update(3)])
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        assert _numbers(seen) == [1]
        connector.redeliver([_update(4)])
        async with trio.open_nursery() as nursery:
            await nursery.start(connector.stream_updates, sink)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        assert _numbers(seen) == [1, 2, 3, 4]
    finally:
        await connector.disconnect()


async def test_a_failure_queued_after_updates_ends_the_stream_once_they_are_delivered(
    tmp_path: Path,
) -> None:
    connector = await _connected(tmp_path)
    seen: list[OrderUpdate] = []

    async def sink(update: OrderUpdate) -> None:
        seen.append(update)

    class VenueFailed(Exception):
        pass

    try:
        with pytest.RaisesGroup(VenueFailed):
            async with trio.open_nursery() as nursery:
                await nursery.start(connector.stream_updates, sink)
                connector.redeliver([_update(1), _update(2)])
                connector._fail(VenueFailed("the file failed"))
                connector.redeliver([_update(3)])
        assert _numbers(seen) == [1, 2]
    finally:
        await connector.disconnect()
