"""The paper connector's ``submit_answer``: what the venue did to the order within the call
comes back with the answer, and only that is kept off the update stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.actors.harness import exact_paper_settings
from tests.brokers.contract import UpdateLog
from ult_actors.brokers.base import AnswersWithNews
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.messages import Order, OrderRequest


def _settings(tmp_path: Path, **overrides: Any) -> PaperSettings:
    return exact_paper_settings(state_path=str(tmp_path / "paper.db"), **overrides)


def _market(coid: str, qty: int, **fields: object) -> OrderRequest:
    return OrderRequest(
        symbol="AAPL",
        side="buy",
        qty=Decimal(qty),
        client_order_id=coid,
        **fields,  # type: ignore[arg-type]
    )


async def _streaming(connector: PaperConnector, nursery: trio.Nursery) -> UpdateLog:
    await connector.connect()
    log = UpdateLog()
    await nursery.start(connector.stream_updates, log.sink)
    return log


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        yield nursery
        nursery.cancel_scope.cancel()


async def test_a_market_order_s_fill_comes_with_the_answer_and_not_on_the_stream(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    connector = PaperConnector("paper", _settings(tmp_path))
    log = await _streaming(connector, nursery)
    assert isinstance(connector, AnswersWithNews)

    order, news = await connector.submit_answer(_market("c-1", 7))

    assert order.status == "filled" and order.filled_qty == 7
    [update] = news
    assert update.order == order  # the fill with the order's state after it
    assert update.fill is not None and update.fill.qty == 7 and update.fill.client_order_id == "c-1"
    # A plain submit's fill is streamed; the first order's is not streamed as well.
    await connector.submit(_market("c-2", 2))
    first = await log.wait_for(lambda u: u.fill is not None)
    assert first.order.client_order_id == "c-2"
    assert log.for_client_id("c-1") == []
    await connector.disconnect()


async def test_a_fill_after_the_call_is_streamed(tmp_path: Path, nursery: trio.Nursery) -> None:
    # Four shown at a time: the order fills 4 within its submit, the rest on later matches.
    connector = PaperConnector("paper", _settings(tmp_path, displayed_size=Decimal(4)))
    log = await _streaming(connector, nursery)

    order, news = await connector.submit_answer(_market("c-1", 10))

    assert (order.status, order.filled_qty) == ("partially_filled", 4)
    assert [(u.order.filled_qty, u.fill and u.fill.qty) for u in news] == [(4, 4)]
    connector.set_price("AAPL", Decimal(100))  # the next match: 4 more
    connector.set_price("AAPL", Decimal(100))  # and the last 2
    done = await log.wait_for(lambda u: u.order.status == "filled")
    streamed = log.for_client_id("c-1")
    assert [(u.order.filled_qty, u.fill and u.fill.qty) for u in streamed] == [(8, 4), (10, 2)]
    assert done is streamed[-1]
    await connector.disconnect()


class _LostReply(PaperConnector):
    """The venue takes the order, then its answer is lost on the way back."""

    async def submit(self, request: OrderRequest) -> Order:
        await super().submit(request)
        raise RuntimeError("reply lost")


async def test_a_submit_that_fails_after_the_venue_took_it_streams_its_news(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    connector = _LostReply("paper", _settings(tmp_path))
    log = await _streaming(connector, nursery)

    with pytest.raises(RuntimeError):
        await connector.submit_answer(_market("c-1", 3))

    # Nobody was told of the fill by an answer: the stream tells, once.
    await super(_LostReply, connector).submit(_market("c-2", 1))
    await log.wait_for(lambda u: u.order.client_order_id == "c-2")
    [streamed] = log.for_client_id("c-1")
    assert streamed.fill is not None and streamed.fill.qty == 3
    assert streamed.order.status == "filled"
    await connector.disconnect()
