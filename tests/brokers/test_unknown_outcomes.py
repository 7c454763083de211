"""A broker answer that cannot be read is an unknown outcome, and the broker's record wins.

The whole service runs on each broker's simulator (real loopback sockets, a
real SQLite journal, the real IPC socket and client library). The simulators'
``garble_reply`` fault applies an order and then answers with half its body,
as a mangling proxy would.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from tests.brokers.alpaca import harness as alpaca
from tests.brokers.ib.harness import settings as ib_settings
from tests.brokers.oanda import harness as oanda
from tests.service_harness import one_broker_config, served
from ult_actors.actors.reconcile import ReconcilePolicy
from ult_actors.client import AsyncClient, BrokerUnavailable
from ult_actors.journal.sqlite import open_sqlite_store
from ult_actors.messages import Order, OrderRequest, OrderUpdate
from ult_actors.order_state import order_from_request
from ult_actors.service import Service, build_service
from ult_actors.sim.alpaca.faults import Fault as AlpacaFault
from ult_actors.sim.faults import FaultSpec
from ult_actors.sim.ib import TwsSimulator
from ult_actors.sim.oanda.faults import Fault as OandaFault

FAST = ReconcilePolicy(settle_grace_s=0.05, stuck_after_s=0.2, interval_s=0.05, sweep_every=2)


@dataclass
class Venue:
    """One broker's simulator as these tests drive it."""

    kind: str
    symbol: str
    qty: Decimal
    settings: Any
    arm: Callable[[FaultSpec], None]
    clear: Callable[[], None]
    orders_path: str
    #: Break the answer to the next ``n`` new orders after applying them.
    garble_orders: Callable[[int], None]
    #: Orders the simulator has created (a duplicate would show here).
    created: Callable[[], int]


@asynccontextmanager
async def venue_of(kind: str) -> AsyncIterator[Venue]:
    if kind == "alpaca":
        async with alpaca.running_sim() as (asim, port):
            yield Venue(
                kind="alpaca",
                symbol="AAPL",
                qty=Decimal(2),
                settings=alpaca.settings_for(port),
                arm=lambda f: asim.arm(f),  # type: ignore[arg-type]
                clear=asim.faults.clear,
                orders_path="/v2/orders",
                garble_orders=lambda n: asim.arm(
                    AlpacaFault(kind="garble_reply", method="POST", path="/v2/orders", count=n)
                ),
                created=lambda: asim.venue.stats.orders_created,
            )
    elif kind == "oanda":
        async with oanda.running_sim() as osim:
            yield Venue(
                kind="oanda",
                symbol="EUR_USD",
                qty=Decimal(1000),
                settings=oanda.settings_for(osim),
                arm=lambda f: osim.arm(f),  # type: ignore[arg-type]
                clear=osim.faults.clear,
                orders_path=f"/v3/accounts/{oanda.ACCOUNT}/orders",
                garble_orders=lambda n: osim.arm(
                    OandaFault(
                        kind="garble_reply",
                        method="POST",
                        path=f"/v3/accounts/{oanda.ACCOUNT}/orders",
                        count=n,
                    )
                ),
                created=lambda: len(osim.book.orders),
            )
    else:
        tws = TwsSimulator(tick_interval_s=None)
        async with trio.open_nursery() as nursery:
            await nursery.start(tws.serve)

            def drop_on_order(n: int) -> None:
                tws.faults.drop_on_order = n  # TWS's lost answer: the socket drops after placing

            yield Venue(
                kind="ib",
                symbol="AAPL",
                qty=Decimal(2),
                settings=ib_settings(tws.port),
                arm=lambda f: None,
                clear=lambda: None,
                orders_path="",
                garble_orders=drop_on_order,
                created=lambda: len(tws.exchange.orders),
            )
            nursery.cancel_scope.cancel()


def fault(venue: Venue, kind: str, **more: Any) -> FaultSpec:
    fault_type = AlpacaFault if venue.kind == "alpaca" else OandaFault
    return fault_type(kind=kind, **more)


@asynccontextmanager
async def service_on(venue: Venue, state: Path) -> AsyncIterator[tuple[Service, AsyncClient]]:
    """The service with one broker on ``venue``, journal in ``state``; a client on its socket."""
    cfg = one_broker_config(state, venue.kind, venue.settings)
    cfg.retry.delay_ms = 10
    cfg.retry.max_retries = 2
    cfg.supervision.backoff_initial_ms = 20
    svc = build_service(cfg, env={}, rng=random.Random(11), reconcile=FAST)
    async with served(svc, state, timeout=20) as client:
        yield svc, client


async def journaled(svc: Service, coid: str) -> Order:
    store = await svc.journal.get()
    found = await store.get(coid)
    assert found is not None, coid
    return found


async def until_journal_says(svc: Service, coid: str, status: str) -> Order:
    with trio.fail_after(15):
        while (order := await journaled(svc, coid)).status != status:
            await trio.sleep(0.02)
    return order


async def until_published(events: AsyncIterator[Any], coid: str, status: str) -> None:
    """Until subscribers have been told that ``coid`` is ``status``."""
    with trio.fail_after(10):
        async for event in events:
            order = event.order if isinstance(event, OrderUpdate) else None
            if order is not None and order.client_order_id == coid and order.status == status:
                return


@pytest.fixture
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Short: the IPC socket's path must fit in sun_path.
    return Path(tmp_path_factory.mktemp("uo", numbered=True))


@pytest.mark.parametrize("kind", ["alpaca", "oanda", "ib"])
async def test_a_garbled_answer_to_a_placed_order_is_found_never_rejected_never_doubled(
    kind: str, state: Path
) -> None:
    async with venue_of(kind) as venue, service_on(venue, state) as (svc, client):
        orders = 1 if kind == "ib" else 5  # each drop costs IB a reconnect
        venue.garble_orders(orders)
        for i in range(orders):
            with trio.fail_after(20):
                order = await client.submit(
                    venue.symbol, "buy", venue.qty, client_order_id=f"garbled-{i}", wait=True
                )
            assert order.status == "filled", order
            assert order.id  # the broker's own record, found by client order id
            assert (await until_journal_says(svc, f"garbled-{i}", "filled")).id == order.id
        assert venue.created() == orders  # each placed once: the unreadable answer was not resent


@pytest.mark.parametrize("kind", ["alpaca", "oanda"])
async def test_when_nothing_can_be_read_the_answer_says_unknown_and_the_broker_settles_it(
    kind: str, state: Path
) -> None:
    async with venue_of(kind) as venue, service_on(venue, state) as (svc, client):
        # The order is placed; every answer about it (the reply, each lookup) is unreadable.
        venue.arm(fault(venue, "garble_reply", path=venue.orders_path, count=1000))
        events = await client.subscribe(["orders"])
        unknown = r"outcome (stays )?unknown.*\(check: ult order blind-1\)"
        with trio.fail_after(20), pytest.raises(BrokerUnavailable, match=unknown):
            await client.submit(venue.symbol, "buy", venue.qty, client_order_id="blind-1")
        assert (await journaled(svc, "blind-1")).status != "rejected"  # maybe streamed already
        venue.clear()  # the proxy behaves again: reconciliation asks, the broker's record wins
        settled = await until_journal_says(svc, "blind-1", "filled")
        assert settled.filled_qty == venue.qty and settled.outcome == "definitive"
        assert (await client.order("blind-1")).status == "filled"
        await until_published(events, "blind-1", "filled")
        assert venue.created() == 1


async def test_a_journaled_local_rejection_gives_way_to_the_brokers_record(state: Path) -> None:
    async with alpaca.running_sim() as (sim, port):
        # At the broker: a resting limit. In the journal, from a service that could not
        # read the answer: "rejected", never given a broker order id.
        request = OrderRequest(
            symbol="AAPL",
            side="buy",
            qty=Decimal(3),
            type="limit",
            limit_price=Decimal("150.00"),
            time_in_force="gtc",
            broker="alpaca",
            client_order_id="guessed-1",
        )
        async with alpaca.connected(port, stream=False) as (conn, _):
            placed = await conn.submit(request)
        guess = msgspec.structs.replace(
            order_from_request(
                request, broker="alpaca", order_id="", status="rejected", now_ns=placed.created_at
            ),
            reject_reason="internal: Alpaca sent a reply the gateway cannot read",
        )
        async with open_sqlite_store(state / "journal.db") as store:
            await store.record(guess, event="submit")

        venue = Venue(
            kind="alpaca",
            symbol="AAPL",
            qty=Decimal(3),
            settings=alpaca.settings_for(port),
            arm=lambda f: None,
            clear=lambda: None,
            orders_path="/v2/orders",
            garble_orders=lambda n: None,
            created=lambda: sim.venue.stats.orders_created,
        )
        async with service_on(venue, state) as (svc, client):
            # The sweep finds it open at the broker: the broker's record replaces the guess.
            reopened = await until_journal_says(svc, "guessed-1", "accepted")
            assert reopened.id == placed.id and reopened.reject_reason is None
            assert "guessed-1" in {o.client_order_id for o in await client.orders(open=True)}
            # It fills: journal, subscribers and positions follow the broker.
            events = await client.subscribe(["orders"])
            sim.venue.set_price("AAPL", Decimal("149.00"))
            await until_published(events, "guessed-1", "filled")
            assert (await until_journal_says(svc, "guessed-1", "filled")).filled_qty == 3
            with trio.fail_after(10):
                while not any(
                    p.symbol == "AAPL" and p.qty == 3 for p in await client.positions("alpaca")
                ):
                    await trio.sleep(0.02)
        assert sim.venue.stats.orders_created == 1


async def test_an_order_arriving_after_the_service_gave_up_on_it_is_taken_from_the_broker(
    state: Path,
) -> None:
    # Alpaca takes the order only after the service has judged it never arrived
    # (sent, timed out, looked up, not there, after the grace: "rejected").
    async with alpaca.running_sim() as (sim, port):
        venue = Venue(
            kind="alpaca",
            symbol="AAPL",
            qty=Decimal(4),
            settings=alpaca.settings_for(port, read_timeout_s=0.3),
            arm=lambda f: None,
            clear=lambda: None,
            orders_path="/v2/orders",
            garble_orders=lambda n: None,
            created=lambda: sim.venue.stats.orders_created,
        )
        async with service_on(venue, state) as (svc, client):
            # Every send (the first and its retries) times out before Alpaca takes it.
            sim.arm(
                AlpacaFault(kind="slow", delay_s=2.0, method="POST", path="/v2/orders", count=3)
            )
            with trio.fail_after(20), pytest.raises(BrokerUnavailable):
                await client.submit(
                    "AAPL", "buy", 4, type="limit", limit_price="150.00", time_in_force="gtc",
                    client_order_id="late-1",
                )  # fmt: skip
            guess = await journaled(svc, "late-1")
            assert (guess.status, guess.id) == ("rejected", "")  # the local verdict
            assert svc.risk_state.open_qty.get(("alpaca", "AAPL", "buy"), 0) == 0
            # The broker's record arrives on the stream: it wins, everywhere.
            taken = await until_journal_says(svc, "late-1", "accepted")
            assert taken.id and taken.reject_reason is None
            with trio.fail_after(10):  # risk counts it as open again
                while svc.risk_state.open_qty.get(("alpaca", "AAPL", "buy"), 0) != 4:
                    await trio.sleep(0.02)
            assert [o.client_order_id for o in await client.orders(open=True)] == ["late-1"]
        assert sim.venue.stats.orders_created == 1
