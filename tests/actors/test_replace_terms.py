"""Replaces whose terms the service refuses before anything leaves, over the real socket:
one that changes nothing (the venue would cancel the order and place a copy)."""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.service_harness import one_broker_config, served
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.errors import InvalidOrder
from ult_actors.service import Service, build_service


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ult-t", dir="/tmp"))  # short: the socket lives here
    yield path
    shutil.rmtree(path, ignore_errors=True)


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
