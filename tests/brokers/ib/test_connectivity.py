"""IB connectivity over a real loopback socket: 1100/1101/1102, drops, 326, notices, rejects.

Waits are on answers, not on time: a request sent after a fault returns only
after the connector has read the fault's message (TWS and the simulator
answer in order), and the simulator's session events mark (re)connects.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog
import trio

from tests.brokers.contract import UpdateLog
from tests.brokers.ib.harness import BOUND, settings
from ult_actors.brokers.ib.connector import IbConnector
from ult_actors.brokers.ib.ledger import ExecutionLedger
from ult_actors.brokers.ib.order_ids import OrderIdSequence
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.errors import BrokerUnavailable, ConfigError, InsufficientFunds, InvalidOrder
from ult_actors.messages import ListOrders, OrderReply, OrderRequest, OrdersReply, Submit
from ult_actors.service import build_service
from ult_actors.sim.ib import TwsSimulator


@dataclass
class Session:
    sim: TwsSimulator
    connector: IbConnector
    log: UpdateLog
    stream_error: list[BaseException] = field(default_factory=list)
    stream_ended: trio.Event = field(default_factory=trio.Event)


async def _stream(
    s: Session, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    try:
        await s.connector.stream_updates(s.log.sink, task_status=task_status)
    except BrokerUnavailable as exc:
        s.stream_error.append(exc)
    finally:
        s.stream_ended.set()


@asynccontextmanager
async def connected(
    sim: TwsSimulator, port: int, nursery: trio.Nursery, **overrides: Any
) -> AsyncIterator[Session]:
    connector = IbConnector("ib", settings(port, **overrides))
    with trio.fail_after(BOUND):
        await connector.connect()
    s = Session(sim, connector, UpdateLog())
    await nursery.start(_stream, s)
    try:
        yield s
    finally:
        await connector.disconnect()


@pytest.fixture
def sim_port(sim: TwsSimulator) -> tuple[TwsSimulator, int]:
    return sim, sim.port


def limit(coid: str, price: str = "1.00", **kw: Any) -> OrderRequest:
    return OrderRequest(
        symbol="AAPL", side="buy", qty=Decimal(10), type="limit", limit_price=Decimal(price),
        time_in_force="gtc", client_order_id=coid, **kw,
    )  # fmt: skip


async def test_1100_refuses_orders_without_dropping_the_socket_and_1102_resumes(
    sim_port: tuple[TwsSimulator, int],
) -> None:
    sim, port = sim_port
    async with trio.open_nursery() as nursery, connected(sim, port, nursery) as s:
        with trio.fail_after(BOUND):
            await sim.connectivity_lost()
            await s.connector.account()  # answered after the 1100 was read
            assert s.connector.available is False
            with pytest.raises(BrokerUnavailable, match="1100"):
                await s.connector.submit(limit("lost-1"))
            assert 1 in sim.sessions and not s.stream_ended.is_set()  # the socket stays up
            assert (await s.connector.account()).cash > 0  # queries still answered

            await sim.connectivity_restored()
            await s.connector.account()
            assert s.connector.available is True
            order = await s.connector.submit(limit("after-1", price="100000"))
            await s.log.wait_for(lambda u: u.order.id == order.id and u.order.status == "filled")
        nursery.cancel_scope.cancel()


async def test_1102_resynchronises_what_changed_while_connectivity_was_lost(
    sim_port: tuple[TwsSimulator, int],
) -> None:
    sim, port = sim_port
    async with trio.open_nursery() as nursery, connected(sim, port, nursery) as s:
        with trio.fail_after(BOUND):
            canceled = await s.connector.submit(limit("gone-1"))
            filled = await s.connector.submit(limit("fills-1", price="250"))
            await sim.connectivity_lost()
            # TWS's messages about these changes never reach the client.
            sim.exchange.cancel(1, int(canceled.id))
            sim.exchange.set_price("AAPL", Decimal(200))
            await sim.connectivity_restored(data_lost=True)
            await s.log.wait_for(
                lambda u: u.order.id == canceled.id and u.order.status == "canceled"
            )
            done = await s.log.wait_for(
                lambda u: u.order.id == filled.id and u.order.status == "filled"
            )
            assert done.order.filled_qty == 10
            fills = [u.fill for u in s.log.for_client_id("fills-1") if u.fill is not None]
            assert [f.qty for f in fills] == [Decimal(10)]  # the missed execution, once
            assert {o.id for o in await s.connector.open_orders()} == set()
        nursery.cancel_scope.cancel()


async def test_a_fill_is_completed_by_its_commission_report_after_a_reconnect(
    sim_port: tuple[TwsSimulator, int],
) -> None:
    sim, port = sim_port
    async with trio.open_nursery() as nursery, connected(sim, port, nursery) as s:
        with trio.fail_after(BOUND):
            # TWS loses IB right after the execution: its commission report comes only
            # with the executions the connector asks for once connectivity is back.
            sim.faults.withhold_commission_reports = True
            order = await s.connector.submit(limit("fee-1", price="100000"))
            await s.log.wait_for(lambda u: u.order.id == order.id and u.order.status == "filled")
            await s.connector.account()  # every message of the execution has been read
            assert not [u for u in s.log.for_client_id("fee-1") if u.fill is not None]
            await sim.connectivity_lost()
            sim.faults.withhold_commission_reports = False
            await sim.connectivity_restored(data_lost=True)
            done = await s.log.wait_for(lambda u: u.fill is not None and u.order.id == order.id)
        assert done.fill is not None and done.fill_only
        # 10 shares at IB's fixed rate: 0.05, raised to the 1.00 minimum.
        assert (done.fill.qty, done.fill.commission, done.fill.fee_currency) == (
            Decimal(10),
            Decimal("1.00"),
            "USD",
        )
        assert len([u for u in s.log.for_client_id("fee-1") if u.fill is not None]) == 1
        nursery.cancel_scope.cancel()


async def test_a_fill_whose_report_never_came_is_delivered_complete_by_the_next_connection(
    sim_port: tuple[TwsSimulator, int],
) -> None:
    sim, port = sim_port
    # Two incarnations of one configured connection share what was delivered.
    ledger, ids = ExecutionLedger(), OrderIdSequence()
    first = IbConnector("ib", settings(port), order_ids=ids, ledger=ledger)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(BOUND):
            await first.connect()
            s = Session(sim, first, UpdateLog())
            await nursery.start(_stream, s)
            sim.faults.withhold_commission_reports = True
            order = await first.submit(limit("fee-2", price="100000"))
            await s.log.wait_for(lambda u: u.order.id == order.id and u.order.status == "filled")
            await sim.drop_connections()  # before the commission report came
            await s.stream_ended.wait()
            await first.disconnect()
            sim.faults.withhold_commission_reports = False
            second = IbConnector("ib", settings(port), order_ids=ids, ledger=ledger)
            await second.connect()
            again = Session(sim, second, UpdateLog())
            await nursery.start(_stream, again)  # delivers what was missed, then reports started
            await second.disconnect()
        nursery.cancel_scope.cancel()
    assert not [u for u in s.log.updates if u.fill is not None]  # held, never half-sent
    missed = again.log.updates
    assert [(u.order.client_order_id, u.fill.qty, u.fill.commission) for u in missed if u.fill] == [
        ("fee-2", Decimal(10), Decimal("1.00"))
    ]


async def test_a_closed_socket_ends_the_stream_with_broker_unavailable(
    sim_port: tuple[TwsSimulator, int],
) -> None:
    sim, port = sim_port
    async with trio.open_nursery() as nursery, connected(sim, port, nursery) as s:
        with trio.fail_after(BOUND):
            assert await sim.drop_connections() == 1
            await s.stream_ended.wait()
        assert isinstance(s.stream_error[0], BrokerUnavailable)
        assert "closed" in str(s.stream_error[0])
        with pytest.raises(BrokerUnavailable):
            await s.connector.submit(limit("after-drop"))


async def test_reconnect_after_a_drop_finds_open_and_meanwhile_filled_orders(
    sim_port: tuple[TwsSimulator, int],
) -> None:
    sim, port = sim_port
    async with trio.open_nursery() as nursery:
        async with connected(sim, port, nursery) as first:
            resting = await first.connector.submit(limit("keep-1"))
            fills_later = await first.connector.submit(limit("later-1", price="250"))
            with trio.fail_after(BOUND):
                await sim.drop_connections()
                await first.stream_ended.wait()
                await sim.wait_for_session(1, present=False)
        await sim.set_price("AAPL", Decimal(200))  # nobody connected hears this fill
        async with connected(sim, port, nursery) as second:
            with trio.fail_after(BOUND):
                assert [o.id for o in await second.connector.open_orders()] == [resting.id]
                again = await second.connector.get_order_by_client_id("later-1")
                assert (again.id, again.status, again.filled_qty) == (fills_later.id, "filled", 10)
                assert (await second.connector.get_order(resting.id)).client_order_id == "keep-1"
                # Ids keep increasing across connections: TWS's next valid id.
                new = await second.connector.submit(limit("new-1"))
                assert int(new.id) > int(fills_later.id)
                # A resync later does not mistake that history for new fills either.
                resynced = second.connector.resynced
                await sim.connectivity_lost()
                await sim.connectivity_restored()
                await resynced.wait()
            # Executions from before this connection are history, not new fills.
            assert not [u for u in second.log.updates if u.fill is not None]
        nursery.cancel_scope.cancel()


async def test_client_id_in_use_is_a_config_error_that_names_the_fix(
    sim_port: tuple[TwsSimulator, int],
) -> None:
    sim, port = sim_port
    async with trio.open_nursery() as nursery, connected(sim, port, nursery):
        other = IbConnector("ib2", settings(port))  # same client id 1
        with trio.fail_after(BOUND), pytest.raises(ConfigError) as info:
            await other.connect()
        assert "326" in str(info.value) and "IB_CLIENT_ID" in str(info.value)
        await other.disconnect()
        nursery.cancel_scope.cancel()
    sim.faults.client_ids_in_use.add(5)
    pretender = IbConnector("ib3", settings(port, client_id=5, client_id_in_use_retries=1,
                                            client_id_in_use_delay_s=0.01))  # fmt: skip
    with trio.fail_after(BOUND), pytest.raises(ConfigError, match="client id 5"):
        await pretender.connect()


async def test_informational_codes_are_logged_not_treated_as_errors(
    sim_port: tuple[TwsSimulator, int],
) -> None:
    sim, port = sim_port
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery, connected(sim, port, nursery) as s:
            with trio.fail_after(BOUND):
                await sim.notify(2103, "Market data farm connection is broken:usfarm")
                await sim.notify(2158, "Sec-def data farm connection is OK:secdefil")
                await s.connector.account()
                assert s.connector.available and not s.stream_ended.is_set()
                order = await s.connector.submit(limit("still-fine", price="100000"))
                assert order.status in ("accepted", "filled")
            nursery.cancel_scope.cancel()
    notices = sorted({e["code"] for e in logs if e["event"] == "tws notice"})
    assert notices == [2103, 2104, 2106, 2158]
    assert not [e for e in logs if e["log_level"] in ("warning", "error")]


async def test_rejections_raise_the_narrowest_error_with_tws_text(
    sim_port: tuple[TwsSimulator, int],
) -> None:
    sim, port = sim_port
    async with trio.open_nursery() as nursery, connected(sim, port, nursery) as s:
        with trio.fail_after(BOUND):
            sim.faults.reject_next = 1
            sim.faults.reject_text = (
                "Order rejected - reason:The contract is not available for trading"
            )
            with pytest.raises(InvalidOrder, match=r"201.*not available for trading"):
                await s.connector.submit(limit("rej-1"))
            assert (await s.connector.get_order_by_client_id("rej-1")).status == "rejected"
            with pytest.raises(InsufficientFunds, match="EQUITY WITH LOAN"):
                await s.connector.submit(
                    OrderRequest(
                        symbol="AAPL", side="buy", qty=Decimal(1_000_000), client_order_id="big-1"
                    )
                )
            market_on_close = msgspec.structs.replace(limit("cls-1"), time_in_force="cls")
            with pytest.raises(InvalidOrder, match="time_in_force"):
                await s.connector.submit(market_on_close)
        nursery.cancel_scope.cancel()


async def test_a_slow_acknowledgement_is_unknown_then_found_once(
    sim_port: tuple[TwsSimulator, int],
) -> None:
    sim, port = sim_port
    async with (
        trio.open_nursery() as nursery,
        connected(sim, port, nursery, ack_timeout_s=0.2) as s,
    ):
        sim.faults.ack_delay_s = 0.5
        request = OrderRequest(symbol="AAPL", side="buy", qty=Decimal(5), client_order_id="slow-1")
        with trio.fail_after(BOUND):
            with pytest.raises(BrokerUnavailable, match="unknown"):
                await s.connector.submit(request)
            found = await s.connector.get_order_by_client_id("slow-1")
            assert (await s.connector.submit(request)).id == found.id  # a retry is not a new order
            await s.log.wait_for(
                lambda u: u.order.client_order_id == "slow-1" and u.order.status == "filled"
            )
        assert [o.order.order_ref for o in sim.exchange.orders.values()] == ["slow-1"]
        nursery.cancel_scope.cancel()


async def test_the_supervisor_reconnects_a_dropped_ib_actor_and_keeps_its_orders(
    sim_port: tuple[TwsSimulator, int], tmp_path: Path
) -> None:
    sim, port = sim_port
    cfg = ServiceConfig(
        service=ServiceSection(default_broker="ib", state_dir=str(tmp_path)),
        brokers=[BrokerEntry(name="ib", kind="ib", enabled=True, settings=settings(port))],
    )
    cfg.supervision.backoff_initial_ms = 20
    cfg.supervision.backoff_cap_ms = 50
    svc = build_service(cfg, env={}, rng=random.Random(3))
    async with trio.open_nursery() as nursery:
        with trio.fail_after(BOUND):
            await nursery.start(svc.run)
            reply = await svc.gateway.handle(Submit(id=1, order=limit("svc-1")))
            assert isinstance(reply, OrderReply) and reply.order.status == "accepted"
            await sim.drop_connections()
            await sim.wait_for_session(1, present=False)
            await sim.wait_for_session(1, present=True)  # the restarted actor reconnected
            listed = await svc.gateway.handle(ListOrders(id=2, open_only=True))
            assert isinstance(listed, OrdersReply)
            assert [o.client_order_id for o in listed.orders] == ["svc-1"]
            health = {h.name: h for h in svc.health().actors}
            assert health["broker.ib"].restarts == 1
            filled = await svc.gateway.handle(
                Submit(
                    id=3, order=OrderRequest(symbol="AAPL", side="buy", qty=Decimal(1)), wait=True
                )
            )
            assert isinstance(filled, OrderReply) and filled.order.status == "filled"
        nursery.cancel_scope.cancel()
