"""What the broker test harnesses share: a connector connected, its stream running into a log.

``tests/brokers/alpaca/harness.py`` and ``tests/brokers/oanda/harness.py`` build
the connector for their simulator and hand it to ``connected_connector``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio

from tests.brokers.contract import UpdateLog
from tests.fakes import StoreWith
from ult_actors.brokers.base import Connector
from ult_actors.messages import ConnectionStateChanged, Event, Fill, OrderUpdate, ReportQuery
from ult_actors.runtime import EventBus
from ult_actors.service import Service


@asynccontextmanager
async def connected_connector(connector: Connector, *, stream: bool) -> AsyncIterator[UpdateLog]:
    """Connect ``connector`` (and run its stream into the ``UpdateLog`` yielded); disconnect after."""
    log = UpdateLog()
    with trio.fail_after(10):
        await connector.connect()
    try:
        async with trio.open_nursery() as nursery:
            if stream:
                with trio.fail_after(10):
                    await nursery.start(partial(connector.stream_updates, log.sink))
            yield log
            nursery.cancel_scope.cancel()
    finally:
        await connector.disconnect()


def watch_connection(bus: EventBus[Event]) -> trio.MemoryReceiveChannel[Event]:
    """A subscription to the connection's changes of state and to every fill."""

    def relevant(event: Event) -> bool:
        return isinstance(event, ConnectionStateChanged) or (
            isinstance(event, OrderUpdate) and event.fill is not None
        )

    return bus.subscribe(relevant)


async def until_state(events: trio.MemoryReceiveChannel[Event], state: str) -> list[Event]:
    """Events (of ``watch_connection``) up to and including the connection entering ``state``."""
    seen: list[Event] = []
    with trio.fail_after(15):
        async for event in events:
            seen.append(event)
            if isinstance(event, ConnectionStateChanged) and event.state == state:
                return seen
    raise AssertionError(f"the bus closed before the connection became {state}")


async def fills_journaled(svc: Service, broker: str, client_order_id: str) -> list[Fill]:
    """The fills the service's journal holds for one order of ``broker``."""
    store = await svc.journal.get()
    inputs = await store.cost_inputs(ReportQuery(broker=broker))
    return [
        fill
        for order, fills in inputs.orders()
        if order.client_order_id == client_order_id
        for fill in fills
    ]


async def crash_applying_first_fill(
    svc: Service, client_order_id: str, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """The broker actor crashes while it applies the first fill of ``client_order_id``.

    The journal's ``record_fill`` raises once for it: after the connector handed
    the fill on, before the journal, risk and positions have it. Returns the
    list the crashed fill's id is put in.
    """
    store = await svc.journal.get()
    crashes: list[str] = []
    record_fill = store.record_fill

    def crash_once(fill: Fill) -> None:
        if fill.client_order_id == client_order_id and not crashes:
            crashes.append(fill.fill_id)
            raise RuntimeError("injected: broker actor crashed applying a fill")
        record_fill(fill)

    monkeypatch.setattr(svc.journal, "_store", StoreWith(store, record_fill=crash_once))
    return crashes
