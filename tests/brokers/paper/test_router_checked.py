"""Through the service, the paper venue leaves the router's checks to the router.

The real tree on a real paper account: an order the router validated reaches
the venue marked so, and the venue does not run ``validate_order`` on it
again; the closing order of a flatten, which the service builds itself and
the router never saw, is checked in full at the venue.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.actors.harness import paper_service
from ult_actors.messages import Flatten, OrderReply, OrderRequest, OrdersReply, Submit


async def test_the_venue_checks_again_only_what_the_router_did_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str | None] = []
    async with paper_service(tmp_path) as (svc, made):
        venue = made["paper"][-1].venue
        validate = venue.validate

        def counted(request: OrderRequest) -> None:
            checked.append(request.client_order_id)
            validate(request)

        monkeypatch.setattr(venue, "validate", counted)
        with trio.fail_after(15):
            buy = OrderRequest(symbol="AAPL", side="buy", qty=Decimal(2), client_order_id="r-1")
            filled = await svc.gateway.handle(Submit(id=1, order=buy, wait=True))
            assert isinstance(filled, OrderReply) and filled.order.status == "filled"
            assert checked == []  # the router's check stands
            done = await svc.gateway.handle(Flatten(id=2, broker="paper"))
            assert isinstance(done, OrdersReply)
            [closing] = done.orders
            assert (closing.side, closing.qty) == ("sell", Decimal(2))
            assert checked == [closing.client_order_id]  # built by the service: checked
