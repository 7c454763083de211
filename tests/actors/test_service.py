"""The service tree end to end in-process: gateway -> router -> risk -> broker -> reply."""

from __future__ import annotations

import gc
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from tests.fakes import FakeConnector, FakeVenue
from ult_actors.actors.reconcile import ReconcilePolicy
from ult_actors.config import BrokerEntry, RiskSection, ServiceConfig, ServiceSection
from ult_actors.errors import (
    AuthFailed,
    BrokerUnavailable,
    DuplicateOrder,
    InvalidOrder,
    NotFound,
    RiskRejected,
)
from ult_actors.messages import (
    Cancel,
    GetOrder,
    GetPositions,
    ListOrders,
    Order,
    OrderReply,
    OrderRequest,
    OrderUpdate,
    PositionDrift,
    SetKillSwitch,
    Submit,
)
from ult_actors.service import Service, build_service


def config(tmp: Path, *names: str, **risk: Any) -> ServiceConfig:
    cfg = ServiceConfig(
        service=ServiceSection(default_broker=names[0], state_dir=str(tmp)),
        risk=RiskSection(**risk),
        brokers=[BrokerEntry(name=n, kind="fake", enabled=True, settings=None) for n in names],
    )
    cfg.retry.delay_ms = 10
    cfg.supervision.backoff_initial_ms = 50
    cfg.supervision.backoff_cap_ms = 200
    return cfg


#: The in-process venue's requests land at once: a restarted broker actor reconciles
#: after 0.2 s, not the 2 s a remote venue is given.
IN_PROCESS = ReconcilePolicy(settle_grace_s=0.2)


@asynccontextmanager
async def running(cfg: ServiceConfig, venues: dict[str, FakeVenue]) -> AsyncIterator[Service]:
    factories = {n: (lambda n=n, v=v: FakeConnector(n, v)) for n, v in venues.items()}
    svc = build_service(
        cfg, env={}, rng=random.Random(5), connector_factories=factories,  # type: ignore[misc]
        reconcile=IN_PROCESS,
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.run)
        yield svc
        nursery.cancel_scope.cancel()


_ids = iter(range(1, 1_000_000))


async def submit(svc: Service, **fields: Any) -> Order:
    fields.setdefault("symbol", "AAPL")
    fields.setdefault("side", "buy")
    fields["qty"] = Decimal(str(fields.get("qty", 10)))
    wait = fields.pop("wait", False)
    reply = await svc.gateway.handle(
        Submit(id=next(_ids), order=OrderRequest(**fields), wait=wait)
    )
    assert isinstance(reply, OrderReply)
    return reply.order


async def test_a_market_order_is_routed_filled_journaled_and_published(tmp_path: Path) -> None:
    venue = FakeVenue("fake")
    async with running(config(tmp_path, "fake"), {"fake": venue}) as svc:
        events = svc.bus.subscribe()
        order = await submit(svc, client_order_id="c-1")
        assert order.status == "filled"
        assert order.broker == "fake"
        assert order.filled_qty == 10
        store = await svc.journal.get()
        journaled = await store.get("c-1")
        assert journaled is not None and journaled.status == "filled"
        statuses = []
        with trio.fail_after(5):
            while "filled" not in statuses:
                event = await events.receive()
                if isinstance(event, OrderUpdate):
                    statuses.append(event.order.status)
        # Published once per change, in lifecycle order, ending filled.
        assert statuses[-1] == "filled"
        assert statuses.count("filled") == 1
        assert set(statuses) <= {"pending_new", "accepted", "filled"}


async def test_the_gateway_assigns_a_client_order_id_when_none_is_given(tmp_path: Path) -> None:
    async with running(config(tmp_path, "fake"), {"fake": FakeVenue()}) as svc:
        a = await submit(svc)
        b = await submit(svc)
        assert a.client_order_id and b.client_order_id
        assert a.client_order_id != b.client_order_id


async def test_explicit_broker_and_routing_rules_pick_the_connection(tmp_path: Path) -> None:
    cfg = config(tmp_path, "one", "two")
    from ult_actors.config import RoutingRule

    cfg.routing = [RoutingRule(pattern="*_*", broker="two")]
    venues = {"one": FakeVenue("one"), "two": FakeVenue("two")}
    async with running(cfg, venues) as svc:
        assert (await submit(svc, symbol="AAPL")).broker == "one"
        assert (await submit(svc, symbol="EUR_USD")).broker == "two"
        assert (await submit(svc, symbol="EUR_USD", broker="one")).broker == "one"
        with pytest.raises(NotFound, match=r"unknown broker 'nope' \(configured: one, two\)"):
            await submit(svc, broker="nope")


async def test_an_invalid_order_is_refused_naming_the_field_and_never_sent(
    tmp_path: Path,
) -> None:
    venue = FakeVenue()
    async with running(config(tmp_path, "fake"), {"fake": venue}) as svc:
        with pytest.raises(InvalidOrder, match="limit_price is required") as info:
            await submit(svc, type="limit")
        assert info.value.field == "limit_price"
        with pytest.raises(InvalidOrder) as info:
            await submit(svc, qty=-5)
        assert info.value.field == "qty"
        assert venue.submits == 0


async def test_a_repeated_client_order_id_returns_the_same_order_not_a_second_one(
    tmp_path: Path,
) -> None:
    venue = FakeVenue()
    async with running(config(tmp_path, "fake"), {"fake": venue}) as svc:
        first = await submit(svc, client_order_id="dup-1")
        again = await submit(svc, client_order_id="dup-1")
        assert again.id == first.id
        assert venue.submits == 1
        with pytest.raises(DuplicateOrder, match="already used by a different order"):
            await submit(svc, client_order_id="dup-1", qty=99)


async def test_a_lost_submit_reply_is_settled_by_lookup_without_a_second_order(
    tmp_path: Path,
) -> None:
    venue = FakeVenue()
    venue.lose_replies = 1
    async with running(config(tmp_path, "fake"), {"fake": venue}) as svc:
        order = await submit(svc, client_order_id="lost-1")
        assert order.status == "filled"
        assert venue.submits == 1


async def test_transient_errors_are_retried_with_the_same_client_order_id(
    tmp_path: Path,
) -> None:
    venue = FakeVenue()
    venue.fail_submits = 2
    async with running(config(tmp_path, "fake"), {"fake": venue}) as svc:
        order = await submit(svc, client_order_id="retry-1")
        assert order.status == "filled"
        assert list(venue.by_client) == ["retry-1"]


async def test_retries_give_up_with_broker_unavailable_and_a_rejected_record(
    tmp_path: Path,
) -> None:
    venue = FakeVenue()
    venue.fail_submits = 10
    cfg = config(tmp_path, "fake")
    cfg.retry.max_retries = 2
    async with running(cfg, {"fake": venue}) as svc:
        with pytest.raises(BrokerUnavailable):
            await submit(svc, client_order_id="gone-1")
        store = await svc.journal.get()
        record = await store.get("gone-1")
        assert record is not None and record.status == "rejected"
        assert record.reject_reason is not None and "broker_unavailable" in record.reject_reason


#: More orders than a broker actor submits at once, so some wait in its mailbox.
QUEUED = 100

async def test_killing_the_broker_actor_with_orders_queued_answers_each_exactly_once(
    tmp_path: Path,
) -> None:
    venue = FakeVenue()
    venue.submit_gate = trio.Event()  # hold submits so orders pile up in the mailbox
    async with running(config(tmp_path, "fake"), {"fake": venue}) as svc:
        answers: dict[str, list[Order]] = {}

        async def one(i: int) -> None:
            order = await submit(svc, client_order_id=f"q-{i}")
            answers.setdefault(order.client_order_id, []).append(order)

        async with trio.open_nursery() as nursery:
            for i in range(QUEUED):
                nursery.start_soon(one, i)
            await trio.testing.wait_all_tasks_blocked()
            brokers = svc.root.child("brokers").spec.supervisor
            assert brokers is not None
            assert svc.brokers["fake"].depth > 0  # queued behind the held submit
            venue.kill_stream.set()  # the connection drops: the actor crashes
            await trio.testing.wait_all_tasks_blocked()
            venue.submit_gate.set()
        assert sorted(answers) == sorted(f"q-{i}" for i in range(QUEUED))
        assert all(len(v) == 1 for v in answers.values())
        assert sorted(venue.by_client) == sorted(answers)  # none lost, none doubled
        assert venue.submits == QUEUED
        assert brokers.child("broker.fake").health.restarts == 1


async def test_refused_credentials_fail_the_actor_without_a_restart_loop(tmp_path: Path) -> None:
    venue = FakeVenue()
    venue.refuse_auth = True
    async with running(config(tmp_path, "fake"), {"fake": venue}) as svc:
        with pytest.raises(AuthFailed, match="credentials refused"):
            await submit(svc)
        await trio.sleep(0.5)
        health = {h.name: h for h in svc.health().actors}
        assert health["broker.fake"].state == "failed"
        assert health["broker.fake"].restarts == 0
        assert venue.connects == 1


async def test_a_risk_limit_refuses_before_the_broker_sees_the_order(tmp_path: Path) -> None:
    venue = FakeVenue()
    async with running(config(tmp_path, "fake", max_order_qty=Decimal(100)), {"fake": venue}) as svc:
        with pytest.raises(RiskRejected) as info:
            await submit(svc, qty=101)
        assert info.value.limit == "max_order_qty"
        assert (await submit(svc, qty=100)).status == "filled"
        assert venue.submits == 1


async def test_the_kill_switch_halts_trading_and_cancels_open_orders(tmp_path: Path) -> None:
    venue = FakeVenue()
    async with running(config(tmp_path, "fake"), {"fake": venue}) as svc:
        resting = await submit(svc, type="limit", limit_price=Decimal(50), time_in_force="gtc")
        assert resting.status == "accepted"
        reply = await svc.gateway.handle(SetKillSwitch(id=1, on=True))
        assert "1 orders canceled" in reply.detail  # type: ignore[union-attr]
        assert venue.orders[resting.id].status == "canceled"
        with pytest.raises(RiskRejected, match="halted"):
            await submit(svc)
        assert svc.health().trading_state == "halted"
        await svc.gateway.handle(SetKillSwitch(id=2, on=False))
        assert (await submit(svc)).status == "filled"


async def test_cancel_and_queries_by_order_id_or_client_order_id(tmp_path: Path) -> None:
    async with running(config(tmp_path, "fake"), {"fake": FakeVenue()}) as svc:
        resting = await submit(svc, client_order_id="r-1", type="limit", limit_price=Decimal(1))
        by_client = await svc.gateway.handle(GetOrder(id=1, order_id="r-1"))
        by_id = await svc.gateway.handle(GetOrder(id=2, order_id=resting.id))
        assert by_client.order.id == by_id.order.id == resting.id  # type: ignore[union-attr]
        open_orders = await svc.gateway.handle(ListOrders(id=3, open_only=True))
        assert [o.client_order_id for o in open_orders.orders] == ["r-1"]  # type: ignore[union-attr]
        canceled = await svc.gateway.handle(Cancel(id=4, order_id="r-1"))
        assert canceled.order.status == "canceled"  # type: ignore[union-attr]
        with pytest.raises(NotFound):
            await svc.gateway.handle(GetOrder(id=5, order_id="nope"))


async def test_positions_follow_fills_and_drift_is_reported(tmp_path: Path) -> None:
    venue = FakeVenue()
    cfg = config(tmp_path, "fake")
    cfg.positions.sync_interval_s = 0.2
    async with running(cfg, {"fake": venue}) as svc:
        drift = svc.bus.subscribe(lambda e: isinstance(e, PositionDrift))
        await submit(svc, qty=10)
        reply = await svc.gateway.handle(GetPositions(id=1))
        rows = {p.symbol: p for p in reply.positions}  # type: ignore[union-attr]
        assert rows["AAPL"].qty == 10
        venue.positions["AAPL"] = Decimal(7)  # the broker disagrees with our book
        with trio.fail_after(5):
            event = await drift.receive()
        assert isinstance(event, PositionDrift)
        assert (event.book_qty, event.broker_qty) == (Decimal(10), Decimal(7))


async def test_wait_returns_the_order_once_terminal(tmp_path: Path) -> None:
    async with running(config(tmp_path, "fake"), {"fake": FakeVenue()}) as svc:
        order = await submit(svc, wait=True)
        assert order.status == "filled"
        assert msgspec.json.decode(msgspec.json.encode(order), type=Order) == order


async def test_one_unreachable_broker_keeps_being_tried_while_the_others_keep_trading(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path, "good", "down")
    cfg.supervision.max_restarts = 2
    cfg.supervision.park_s = 600.0
    cfg.supervision.connect_backoff_cap_s = 0.2
    down = FakeVenue("down")
    down.unreachable = True
    async with running(cfg, {"good": FakeVenue("good"), "down": down}) as svc:
        health = svc.bus.subscribe(lambda e: getattr(e, "name", None) == "broker.down")
        with trio.fail_after(30):
            while down.connects < 10:  # far beyond max_restarts, and never parked
                event = await health.receive()
                assert event.state != "failed"  # type: ignore[union-attr]
        # Refused at once, with the broker's last error, instead of waiting out the deadline.
        with pytest.raises(BrokerUnavailable, match="cannot connect"):
            await submit(svc, broker="down")
        assert (await submit(svc, broker="good")).status == "filled"
        rows = {h.name: h for h in svc.health().actors}
        assert rows["ult"].state == rows["brokers"].state == "running"
        assert rows["broker.good"].state == "running"
        assert rows["broker.down"].state in ("connecting", "starting")
        # The outage ends: within the cap the connection is tried again and serves.
        down.unreachable = False
        with trio.fail_after(30):
            while (await health.receive()).state != "running":  # type: ignore[union-attr]
                pass
        assert (await submit(svc, broker="down")).status == "filled"


@pytest.mark.usefixtures("collector_restored")
async def test_the_collector_is_held_back_while_the_tree_starts_and_given_back_once_up(
    tmp_path: Path,
) -> None:
    from ult_actors.collector import STARTING_YOUNG_THRESHOLD

    seen: list[int] = []

    class Probe(FakeConnector):
        async def connect(self) -> None:
            seen.append(gc.get_threshold()[0])
            await super().connect()

    before = gc.get_threshold()
    venues = {n: FakeVenue(n) for n in ("a", "b")}
    svc = build_service(
        config(tmp_path, "a", "b"), env={}, rng=random.Random(5), reconcile=IN_PROCESS,
        connector_factories={n: (lambda n=n: Probe(n, venues[n])) for n in venues},
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.run)
        assert seen == [STARTING_YOUNG_THRESHOLD] * 2
        assert gc.get_threshold() == before  # ready: CPython's (or serve's) settings again
        order = await submit(svc, broker="b", client_order_id="c-gc")
        assert order.status == "filled"
        nursery.cancel_scope.cancel()
    assert gc.get_threshold() == before
