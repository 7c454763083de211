"""The service on the real paper broker, holding an OCO itself: one exit fills, the other
is canceled even when the venue refuses that cancel for a while.

Paper here carries no OCO (as in the chaos run), so the service cancels the peer
when one exit fills. A cancel lost to a 503 must be tried again, not dropped:
otherwise the stop works on after the take-profit filled.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path

from tests.actors.harness import journaled, paper_lists_service, submit_named_list
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.client import oco_request, order_request
from ult_actors.errors import BrokerUnavailable
from ult_actors.messages import (
    Contingency,
    Order,
    OrderReply,
    Submit,
)

_ids = itertools.count(1)


class RefusingPaper(PaperConnector):
    """Paper without native OCOs, whose first ``refuse`` cancels answer 503."""

    native_contingencies: frozenset[Contingency] = frozenset({"bracket"})

    def __init__(self, settings: PaperSettings, refused: list[str], refuse: int) -> None:
        super().__init__("paper", settings)
        self.refused = refused  # the ids whose cancel was refused, over every incarnation
        self.refuse = refuse

    async def cancel(self, order_id: str) -> Order:
        if len(self.refused) < self.refuse:
            self.refused.append(order_id)
            raise BrokerUnavailable("paper: 503 Service Unavailable (on purpose)")
        return await super().cancel(order_id)


async def test_a_stop_whose_cancel_was_refused_is_canceled_once_its_take_profit_filled(
    tmp_path: Path,
) -> None:
    refused: list[str] = []

    # Two: the fill is acted on twice (as reported, and once the list is placed).
    def connector(settings: PaperSettings) -> RefusingPaper:
        return RefusingPaper(settings, refused, refuse=2)

    async with paper_lists_service(tmp_path, connector) as svc:
        bought = await svc.gateway.handle(
            Submit(id=next(_ids), order=order_request("AAPL", "buy", 10, client_order_id="pos"))
        )
        assert isinstance(bought, OrderReply) and bought.order.status == "filled"
        # A take-profit far below the market fills at once; the stop far below rests.
        oco = oco_request("AAPL", "sell", 10, take_profit="1", stop_loss="0.5", list_id="x")
        await submit_named_list(svc, oco, "tp", "sl")
        await journaled(svc, "tp", "filled")
        stop = await journaled(svc, "sl", "canceled")
        assert len(refused) == 2 and set(refused) <= {"sl", stop.id}  # then one took
        assert stop.filled_qty == Decimal(0)
    venue = PaperConnector("paper", PaperSettings(state_path=str(tmp_path / "paper-paper.db")))
    await venue.connect()
    try:
        assert (await venue.get_order_by_client_id("sl")).status == "canceled"
        assert {p.symbol: p.qty for p in await venue.positions()}.get("AAPL", Decimal(0)) == 0
    finally:
        await venue.disconnect()
