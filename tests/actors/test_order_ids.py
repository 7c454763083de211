"""Order ids across brokers: two OANDA simulators hand out the same ids, the service never mixes them."""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import trio

from tests.brokers.oanda.harness import running_sim, settings_for
from tests.ipc.harness import settings_for as ipc_settings
from ult_actors.cli.tables import Style, order_detail, orders_table
from ult_actors.client import AmbiguousOrderId, AsyncClient, NotFound
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.ipc.server import serve_ipc
from ult_actors.messages import Order
from ult_actors.service import build_service

BROKERS = ("oanda-a", "oanda-b")


@asynccontextmanager
async def two_oanda_accounts(tmp: Path) -> AsyncIterator[AsyncClient]:
    """The service with two OANDA connections (one simulator each), a client on its socket."""
    sock_dir = Path(tempfile.mkdtemp(prefix="ult-t", dir="/tmp"))
    try:
        async with AsyncExitStack() as stack:
            sims = [await stack.enter_async_context(running_sim()) for _ in BROKERS]
            cfg = ServiceConfig(
                service=ServiceSection(default_broker=BROKERS[0], state_dir=str(tmp)),
                brokers=[
                    BrokerEntry(name=n, kind="oanda", enabled=True, settings=settings_for(sim))
                    for n, sim in zip(BROKERS, sims, strict=True)
                ],
            )
            svc = build_service(cfg, env={}, rng=random.Random(3))
            async with trio.open_nursery() as nursery:
                with trio.fail_after(15):
                    await nursery.start(svc.run)
                    path = await nursery.start(
                        serve_ipc, svc.gateway, ipc_settings(sock_dir / "s")
                    )
                async with AsyncClient(path, timeout=15) as client:
                    yield client
                nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


async def resting_order_at_each(client: AsyncClient) -> list[Order]:
    orders = []
    for n, broker in enumerate(BROKERS):
        orders.append(
            await client.submit(
                "EUR_USD", "buy", 1000, type="limit", limit_price="0.50000",
                time_in_force="gtc", broker=broker, client_order_id=f"ids-{n}",
            )
        )
    return orders


async def test_a_raw_id_held_by_two_brokers_is_refused_listing_both(tmp_path: Path) -> None:
    async with two_oanda_accounts(tmp_path) as client:
        a, b = await resting_order_at_each(client)
        assert a.id == b.id != ""  # the venues' own ids collide
        for ask in (client.order, client.cancel):
            with pytest.raises(AmbiguousOrderId) as refused:
                await ask(a.id)
            assert refused.value.code == "ambiguous"
            assert f"oanda-a:{a.id}" in refused.value.message
            assert f"oanda-b:{b.id}" in refused.value.message
        # Nothing was canceled by the refused lookup.
        assert [o.status for o in await client.orders(open=True)] == ["accepted", "accepted"]


async def test_broker_prefixed_ids_and_client_order_ids_find_exactly_one(
    tmp_path: Path,
) -> None:
    async with two_oanda_accounts(tmp_path) as client:
        a, b = await resting_order_at_each(client)
        assert (a.ref, b.ref) == (f"oanda-a:{a.id}", f"oanda-b:{b.id}")
        assert (await client.order(b.ref)).client_order_id == "ids-1"
        canceled = await client.cancel(b.ref)
        assert (canceled.broker, canceled.status) == ("oanda-b", "canceled")
        assert (await client.order(a.ref)).status == "accepted"
        # Only one is still open now, yet the raw id stays ambiguous: it names two orders.
        with pytest.raises(AmbiguousOrderId):
            await client.order(a.id)
        assert (await client.cancel("ids-0")).status == "canceled"
        with pytest.raises(NotFound):
            await client.order("oanda-c:" + a.id)


async def test_tables_show_the_broker_prefixed_id(tmp_path: Path) -> None:
    async with two_oanda_accounts(tmp_path) as client:
        a, b = await resting_order_at_each(client)
        listing = orders_table([a, b], Style(False)).splitlines()
        assert [row.split()[0] for row in listing[1:]] == [f"oanda-a:{a.id}", f"oanda-b:{b.id}"]
        assert order_detail(a, Style(False)).splitlines()[0].split() == ["id", a.ref]
