"""An emulated OCO's peer reduced as its other exit fills in parts, over the real socket,
against the OANDA simulator (no native OCO there: the service pairs two plain orders).

Each reduction is its own replace with its own client order id, so one the venue
refused does not stand in for a later one; done twice (a sweep, a resume) it is done once.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.brokers.oanda.harness import running_sim, settings_for
from tests.service_harness import one_broker_config, served
from ult_actors.actors.reconcile import ReconcilePolicy
from ult_actors.client import AsyncClient
from ult_actors.messages import Event, Order, OrderListRequest, OrderRequest
from ult_actors.runtime.pubsub import Subscription
from ult_actors.service import Service, build_service
from ult_actors.sim.oanda.faults import Fault
from ult_actors.sim.oanda.server import OandaSimulator


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ult-r", dir="/tmp"))  # short: the socket lives here
    yield path
    shutil.rmtree(path, ignore_errors=True)


@asynccontextmanager
async def oanda_service(
    state: Path, sock_dir: Path
) -> AsyncIterator[tuple[OandaSimulator, Service, AsyncClient]]:
    # No running sweep of the lists (a long interval): each reduction here comes from a fill.
    policy = ReconcilePolicy(settle_grace_s=0.2, interval_s=3600)
    async with running_sim() as sim:
        cfg = one_broker_config(state, "oanda", settings_for(sim))
        svc = build_service(cfg, env={}, rng=random.Random(13), reconcile=policy)
        async with served(svc, sock_dir) as client:
            yield sim, svc, client


def _exit(coid: str, **terms: str) -> OrderRequest:
    price = {k: Decimal(v) for k, v in terms.items()}
    kind = "limit" if "limit_price" in price else "stop"
    return OrderRequest(
        symbol="EUR_USD", side="sell", qty=Decimal(2000), type=kind,
        time_in_force="gtc", client_order_id=coid, **price,
    )  # fmt: skip


async def _until(events: Subscription[Event], svc: Service, coid: str, *status: str) -> Order:
    store = await svc.journal.get()
    while (now := await store.get(coid)) is None or now.status not in status:
        await events.receive()
    return now


async def test_a_reduction_after_one_the_venue_refused_is_sent_under_its_own_id(
    tmp_path: Path, sock_dir: Path
) -> None:
    async with oanda_service(tmp_path, sock_dir) as (sim, svc, client):
        events = svc.bus.subscribe()
        with trio.fail_after(30):
            await client.submit("EUR_USD", "buy", 2000, wait=True)
            oco = OrderListRequest(
                contingency="oco",
                list_id="red-oco",
                legs=[
                    _exit("red-tp", limit_price="1.09000"),
                    _exit("red-sl", stop_price="1.05000"),
                ],
            )
            await client.submit_list(oco)
            sim.arm(Fault(kind="status", status=503, method="PUT"))  # the first reduction
            # 500 of the take profit's 2000 fill: the stop is to come down to 1500.
            sim.set_price("EUR_USD", {"bid": "1.09000", "ask": "1.09010", "liquidity": "500"})
            sim.set_price("EUR_USD", {"bid": "1.08000", "ask": "1.08010"})
            refused = await _until(events, svc, "red-sl.r", "rejected")
            # 500 more: the stop is to come down to 1000, refused or not before.
            sim.set_price("EUR_USD", {"bid": "1.09000", "ask": "1.09010", "liquidity": "500"})
            sim.set_price("EUR_USD", {"bid": "1.08000", "ask": "1.08010"})
            while True:
                working = [o for o in sim.book.pending() if o.type == "STOP"]
                if working and working[0].units == Decimal(-1000):
                    break
                await events.receive()
            chain = [await client.order("red-sl")]
            while chain[-1].replaced_by is not None:
                chain.append(await client.order(chain[-1].replaced_by))
    assert refused.reject_reason is not None and "503" in refused.reject_reason
    # The refused reduction stood in for none of the later ones.
    assert [o.status for o in chain[:-1]] == ["replaced"] * (len(chain) - 1)
    assert chain[1].client_order_id == "red-sl.r2"
    (at_venue,) = working
    assert at_venue.client_extensions == {"id": chain[-1].client_order_id}
    assert (chain[-1].status, chain[-1].qty) == ("accepted", Decimal(1000))
