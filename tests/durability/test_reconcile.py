"""Reconciliation in-process: on start before new orders, while running, and fail-closed positions."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import structlog
import trio

from tests.durability.harness import (
    FlakyConnector,
    at_venue,
    config,
    journal_of,
    order,
    running,
)
from tests.fakes import FakeVenue
from ult_actors.errors import BrokerUnavailable, RiskRejected
from ult_actors.journal.sqlite import open_sqlite_store
from ult_actors.messages import (
    ListOrders,
    OrderReply,
    OrderRequest,
    OrdersReply,
    OrderUpdate,
    Submit,
    TradingStateChanged,
)


async def test_on_start_each_open_journaled_order_is_settled_before_new_orders(
    tmp_path: Path,
) -> None:
    async with open_sqlite_store(tmp_path / "journal.db") as store:
        for o in [
            order("sent-1", "pending_new", age_s=5),  # applied, then the service died
            order("cancel-1", "accepted", oid="b-2"),  # canceled while we were down
            order("rest-1", "accepted", oid="b-3", type="limit", limit_price=Decimal(1)),
            order("young-1", "pending_new"),  # never arrived, just now: resubmitted
            order("old-1", "pending_new", age_s=3600),  # never arrived, long ago: rejected
            order("done-1", "filled", oid="b-9", filled_qty=Decimal(10)),  # broker forgot it
        ]:
            await store.record(o, event="submit")
    venue = FakeVenue("fake")
    at_venue(venue, order("sent-1", "filled", oid="b-1", filled_qty=Decimal(10)))
    at_venue(venue, order("cancel-1", "canceled", oid="b-2"))
    at_venue(venue, order("rest-1", "accepted", oid="b-3", type="limit", limit_price=Decimal(1)))
    at_venue(venue, order("stranger-1", "accepted", oid="b-4"))  # not ours
    venue.ids = iter(range(100, 200))  # type: ignore[assignment]

    with structlog.testing.capture_logs() as logs:
        async with running(config(tmp_path), venue) as svc:
            # Started means reconciled: nothing below waits.
            assert (await journal_of(svc, "sent-1")).status == "filled"
            assert (await journal_of(svc, "sent-1")).outcome == "definitive"
            assert (await journal_of(svc, "cancel-1")).status == "canceled"
            assert (await journal_of(svc, "rest-1")).status == "accepted"
            young = await journal_of(svc, "young-1")
            assert (young.status, young.id) == ("filled", "100")  # sent once, on start
            old = await journal_of(svc, "old-1")
            assert old.status == "rejected"
            assert old.reject_reason and old.reject_reason.startswith("never_reached_broker")
            # Open at the broker, unknown to the journal: adopted, as the broker has it.
            stranger = await journal_of(svc, "stranger-1")
            assert (stranger.status, stranger.id, stranger.origin) == ("accepted", "b-4", "adopted")
            assert (await journal_of(svc, "rest-1")).origin == "client"
            # A new order goes after the resubmission, never before it.
            reply = await svc.gateway.handle(
                Submit(id=1, order=OrderRequest(symbol="AAPL", side="buy", qty=Decimal(1)))
            )
            assert isinstance(reply, OrderReply) and reply.order.id == "101"
            assert venue.submits == 2
            # The journal answers for orders the broker no longer has.
            listed = await svc.gateway.handle(ListOrders(id=2))
            assert isinstance(listed, OrdersReply)
            assert {"done-1", "old-1", "cancel-1"} <= {o.client_order_id for o in listed.orders}
    [summary] = [e for e in logs if e["event"] == "reconciled on start"]
    assert summary["checked"] == 5
    assert summary["resubmitted"] == 1
    assert summary["never_arrived"] == 2
    assert summary["settled"] == {"accepted": 1, "canceled": 1, "filled": 2, "rejected": 1}
    assert summary["adopted_ids"] == ["stranger-1"]
    assert summary["log_level"] == "warning"  # adopted: said loudly, nothing for a person to fix


async def test_an_unknown_outcome_is_visible_until_a_lookup_settles_it(tmp_path: Path) -> None:
    venue = FakeVenue("fake")
    venue.lose_replies = 1  # the broker takes the order, the reply is lost
    FlakyConnector.fail_lookups = True  # ... and nobody can ask about it
    FlakyConnector.mute_stream = True  # ... nor hears of it
    async with running(config(tmp_path), venue) as svc:
        updates = svc.bus.subscribe(lambda e: isinstance(e, OrderUpdate))
        with pytest.raises(BrokerUnavailable, match="outcome unknown"):
            await svc.gateway.handle(
                Submit(
                    id=1,
                    order=OrderRequest(
                        symbol="AAPL", side="buy", qty=Decimal(3), client_order_id="lost-1"
                    ),
                )
            )
        listed = await svc.gateway.handle(ListOrders(id=2, open_only=True))
        assert isinstance(listed, OrdersReply)
        assert [(o.client_order_id, o.outcome) for o in listed.orders] == [("lost-1", "unknown")]
        FlakyConnector.fail_lookups = False
        with trio.fail_after(10):
            async for event in updates:
                assert isinstance(event, OrderUpdate)
                if event.order.client_order_id == "lost-1" and event.order.status == "filled":
                    break
        settled = await journal_of(svc, "lost-1")
        assert (settled.status, settled.outcome) == ("filled", "definitive")
        assert venue.submits == 1


async def test_an_unknown_order_that_never_arrived_is_rejected_not_resent(tmp_path: Path) -> None:
    venue = FakeVenue("fake")
    venue.fail_submits = 100  # refused before it is applied
    FlakyConnector.fail_lookups = True
    async with running(config(tmp_path), venue) as svc:
        updates = svc.bus.subscribe(lambda e: isinstance(e, OrderUpdate))
        with pytest.raises(BrokerUnavailable, match="outcome unknown"):
            await svc.gateway.handle(
                Submit(
                    id=1,
                    order=OrderRequest(
                        symbol="AAPL", side="buy", qty=Decimal(3), client_order_id="gone-1"
                    ),
                )
            )
        venue.fail_submits = 0
        FlakyConnector.fail_lookups = False
        with trio.fail_after(10):
            async for event in updates:
                assert isinstance(event, OrderUpdate)
                if event.order.status == "rejected":
                    break
        final = await journal_of(svc, "gone-1")
        assert final.reject_reason and final.reject_reason.startswith("never_reached_broker")
        assert venue.submits == 0 and "gone-1" not in venue.by_client


async def test_no_position_report_puts_the_broker_in_reducing_until_a_report_reconciles(
    tmp_path: Path,
) -> None:
    venue = FakeVenue("fake")
    cfg = config(tmp_path)
    cfg.positions.sync_interval_s = 0.1
    async with running(cfg, venue) as svc:
        changes = svc.bus.subscribe(lambda e: isinstance(e, TradingStateChanged))
        buy = OrderRequest(symbol="AAPL", side="buy", qty=Decimal(5))
        assert (await svc.gateway.handle(Submit(id=1, order=buy))).order.status == "filled"  # type: ignore[union-attr]
        FlakyConnector.fail_positions = True
        with trio.fail_after(10):
            event = await changes.receive()
        assert isinstance(event, TradingStateChanged)
        assert (event.state, event.broker, event.set_by) == ("reducing", "fake", "service")
        assert "no position report" in event.reason
        with pytest.raises(RiskRejected, match="reducing"):
            await svc.gateway.handle(Submit(id=2, order=buy))
        FlakyConnector.fail_positions = False
        # The cause is gone and the report agrees with the book: the service lifts it, said so.
        with trio.fail_after(10):
            event = await changes.receive()
        assert isinstance(event, TradingStateChanged)
        assert (event.state, event.broker, event.set_by) == ("active", "fake", "service")
        assert "reconciled" in event.reason and "no position report" in event.reason
        assert (await svc.gateway.handle(Submit(id=4, order=buy))).order.status == "filled"  # type: ignore[union-attr]
