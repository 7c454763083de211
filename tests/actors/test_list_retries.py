"""A list asked again, over the real socket, against the OANDA simulator (which has no
OTO: the service holds the child and releases it as the parent fills).

A retry with the list's terms answers the list as it stands now, whatever its legs
did meanwhile (a child resized on release, a parent partly filled); a retry with other
terms under the same client order ids is ``duplicate_order``; nothing is placed twice.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
import trio

from tests.brokers.oanda.harness import running_sim, settings_for
from tests.service_harness import one_broker_config, served
from ult_actors.client import AsyncClient
from ult_actors.errors import DuplicateOrder
from ult_actors.messages import OrderListRequest, OrderRequest, OrderUpdate
from ult_actors.service import Service, build_service
from ult_actors.sim.oanda.server import OandaSimulator


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ult-l", dir="/tmp"))  # short: the socket lives here
    yield path
    shutil.rmtree(path, ignore_errors=True)


@asynccontextmanager
async def oanda_service(
    state: Path, sock_dir: Path
) -> AsyncIterator[tuple[OandaSimulator, Service, AsyncClient]]:
    async with running_sim() as sim:
        cfg = one_broker_config(state, "oanda", settings_for(sim))
        svc = build_service(cfg, env={}, rng=random.Random(11))
        async with served(svc, sock_dir) as client:
            yield sim, svc, client


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
            while True:
                event = await events.receive()
                if (
                    isinstance(event, OrderUpdate)
                    and event.order.client_order_id == "retry-c"
                    and event.order.status == "accepted"
                ):
                    break
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
