"""Replaces whose terms the service refuses before anything leaves, over the real socket:
one that changes nothing (the venue would cancel the order and place a copy), and one
that resizes a bracket's exit alone (at paper and at the Alpaca simulator)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.brokers.alpaca.harness import running_sim, settings_for
from tests.service_harness import one_broker_config, served
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.client import AsyncClient
from ult_actors.errors import InvalidOrder
from ult_actors.messages import OrderUpdate
from ult_actors.service import Service, build_service


def _paper(state: Path) -> Service:
    settings = PaperSettings(
        tick_interval_s=0,
        state_path=str(state / "paper.db"),
        start_prices={"AAPL": Decimal("100")},
    )
    return build_service(one_broker_config(state, "paper", settings), env={}, rng=random.Random(2))


async def test_a_replace_that_changes_nothing_is_refused_and_nothing_is_sent(
    tmp_path: Path, sock_dir: Path
) -> None:
    async with served(_paper(tmp_path), sock_dir) as client:
        with trio.fail_after(30):
            order = await client.submit(
                "AAPL", "buy", 10, type="limit", limit_price="90", time_in_force="gtc",
                client_order_id="same-1",
            )  # fmt: skip
            with pytest.raises(InvalidOrder) as same_price:
                await client.replace("same-1", limit_price="90.00", client_order_id="same-2")
            with pytest.raises(InvalidOrder) as same_everything:
                await client.replace(
                    "same-1", qty=10, limit_price=90, time_in_force="gtc", client_order_id="same-3"
                )
            changed = await client.replace("same-1", qty=11, client_order_id="same-4")
            orders = await client.orders()
    assert "the replace changes nothing" in same_price.value.message
    assert "already has limit_price 90.00" in same_price.value.message
    assert "qty 10, limit_price 90, time_in_force gtc" in same_everything.value.message
    assert (changed.replaces, changed.qty) == ("same-1", Decimal(11))
    assert {o.client_order_id: o.status for o in orders} == {
        "same-1": "replaced", "same-4": "accepted"
    }  # fmt: skip
    assert order.status == "accepted"


@asynccontextmanager
async def _paper_client(state: Path, sock_dir: Path) -> AsyncIterator[AsyncClient]:
    async with served(_paper(state), sock_dir) as client:
        yield client


@asynccontextmanager
async def _alpaca_client(state: Path, sock_dir: Path) -> AsyncIterator[AsyncClient]:
    async with running_sim() as (_sim, port):
        cfg = one_broker_config(state, "alpaca", settings_for(port))
        svc = build_service(cfg, env={}, rng=random.Random(4))
        async with served(svc, sock_dir) as client:
            yield client


@pytest.mark.parametrize("venue", [_paper_client, _alpaca_client], ids=["paper", "alpaca"])
async def test_one_exit_of_a_bracket_is_not_resized_alone_but_its_price_may_change(
    venue: Callable[[Path, Path], AbstractAsyncContextManager[AsyncClient]],
    tmp_path: Path,
    sock_dir: Path,
) -> None:
    async with (
        venue(tmp_path, sock_dir) as client,
        AsyncClient(sock_dir / "s", timeout=30) as watcher,
    ):
        with trio.fail_after(30):
            events = await watcher.subscribe(["orders"])
            await client.bracket(
                "AAPL", "buy", 10, type="limit", limit_price="500", take_profit="600",
                stop_loss="20", list_id="ex", time_in_force="gtc",
            )  # fmt: skip
            working: set[str] = set()
            async for event in events:  # the entry fills at once: both exits work
                if isinstance(event, OrderUpdate) and event.order.status == "accepted":
                    working.add(event.order.client_order_id)
                if {"ex-2", "ex-3"} <= working:
                    break
            with pytest.raises(InvalidOrder) as resized:
                await client.replace("ex-2", qty=5, client_order_id="ex-2-small")
            repriced = await client.replace("ex-2", limit_price="610", client_order_id="ex-2-up")
            take_profit, stop_loss = await client.order("ex-2"), await client.order("ex-3")
    assert resized.value.field == "qty"
    assert "take profit of bracket ex" in resized.value.message
    assert (repriced.qty, repriced.limit_price) == (Decimal(10), Decimal(610))
    assert (take_profit.status, take_profit.replaced_by) == ("replaced", "ex-2-up")
    assert (stop_loss.status, stop_loss.qty) == ("accepted", Decimal(10))
