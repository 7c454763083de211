"""Emulated order lists through the service, over the real socket, against the OANDA
simulator (no OCO or OTO there: the service holds children and pairs exits itself).

A list asked again with its terms answers the list as it stands now, whatever its legs
did meanwhile (a child resized on release, a parent partly filled); with other terms
under the same client order ids it is ``duplicate_order``; nothing is placed twice.
Each reduction of a peer is its own replace with its own client order id, so one the
venue refused does not stand in for a later one.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
import trio

from tests.brokers.oanda.harness import running_sim, settings_for
from tests.service_harness import one_broker_config, served
from ult_actors.actors.reconcile import ReconcilePolicy
from ult_actors.client import AsyncClient
from ult_actors.errors import DuplicateOrder
from ult_actors.messages import Event, Order, OrderListRequest, OrderRequest
from ult_actors.runtime.pubsub import Subscription
from ult_actors.service import Service, build_service
from ult_actors.sim.oanda.faults import Fault
from ult_actors.sim.oanda.server import OandaSimulator


@asynccontextmanager
async def oanda_service(
    state: Path, sock_dir: Path
) -> AsyncIterator[tuple[OandaSimulator, Service, AsyncClient]]:
    # No running sweep of the lists (a long interval): each reaction here comes from a fill.
    policy = ReconcilePolicy(settle_grace_s=0.2, interval_s=3600)
    async with running_sim() as sim:
        cfg = one_broker_config(state, "oanda", settings_for(sim))
        svc = build_service(cfg, env={}, rng=random.Random(11), reconcile=policy)
        async with served(svc, sock_dir) as client:
            yield sim, svc, client


async def _until(events: Subscription[Event], svc: Service, coid: str, *status: str) -> Order:
    store = await svc.journal.get()
    while (now := await store.get(coid)) is None or now.status not in status:
        await events.receive()
    return now


def _limit(coid: str, side: str, price: str) -> OrderRequest:
    return msgspec.convert(
        {
            "symbol": "EUR_USD", "side": side, "qty": "2000", "type": "limit",
            "limit_price": price, "time_in_force": "gtc", "client_order_id": coid,
        },
        OrderRequest,
    )  # fmt: skip


OTO = OrderListRequest(
    contingency="oto",
    list_id="retry-oto",
    legs=[_limit("retry-p", "buy", "1.00000"), _limit("retry-c", "sell", "1.10000")],
)


async def test_an_oto_asked_again_after_its_child_was_resized_answers_the_list_as_it_stands(
    tmp_path: Path, sock_dir: Path
) -> None:
    async with oanda_service(tmp_path, sock_dir) as (sim, svc, client):
        events = svc.bus.subscribe()
        with trio.fail_after(30):
            first = await client.submit_list(OTO)
            assert [o.status for o in first] == ["accepted", "held"]
            # 500 of the parent's 2000 fill: the child goes out for 500.
            sim.set_price("EUR_USD", {"bid": "0.99990", "ask": "1.00000", "liquidity": "500"})
            sim.set_price("EUR_USD", {"bid": "1.04990", "ask": "1.05000"})
            await _until(events, svc, "retry-c", "accepted")
            again = await client.submit_list(OTO)
            other_child = msgspec.structs.replace(
                OTO, legs=[OTO.legs[0], _limit("retry-c", "sell", "1.20000")]
            )
            with pytest.raises(DuplicateOrder) as other_price:
                await client.submit_list(other_child)
            bigger = msgspec.structs.replace(
                OTO, legs=[msgspec.structs.replace(leg, qty=Decimal(3000)) for leg in OTO.legs]
            )
            with pytest.raises(DuplicateOrder) as other_qty:
                await client.submit_list(bigger)
    parent, child = again
    assert (parent.client_order_id, parent.status, parent.filled_qty) == (
        "retry-p", "partially_filled", Decimal(500)
    )  # fmt: skip
    assert (child.client_order_id, child.status, child.qty) == (
        "retry-c", "accepted", Decimal(500)
    )  # fmt: skip
    assert other_price.value.field == other_qty.value.field == "client_order_id"
    assert "retry-c" in other_price.value.message and "retry-p" in other_qty.value.message
    # Nothing was sent twice: the parent's rest and the child, one order each.
    assert sorted(o.client_extensions["id"] for o in sim.book.pending()) == ["retry-c", "retry-p"]


def _exit(coid: str, **terms: str) -> OrderRequest:
    price = {k: Decimal(v) for k, v in terms.items()}
    kind = "limit" if "limit_price" in price else "stop"
    return OrderRequest(
        symbol="EUR_USD", side="sell", qty=Decimal(2000), type=kind,
        time_in_force="gtc", client_order_id=coid, **price,
    )  # fmt: skip


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
