"""A paper fill booked once for the process: the venue's account, then risk's books and the
positions book, through the service's one ``SharedBooking``."""

from __future__ import annotations

from decimal import Decimal

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from ult_actors.actors.positions import PositionBook
from ult_actors.actors.risk import RiskState, apply_event
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.holding import SharedBooking
from ult_actors.messages import Order, OrderRequest, OrderUpdate

NOW_NS = 1_800_000_000 * 10**9
KEY = ("paper", "AAPL")


def trade(
    orders: list[tuple[str, str, bool]], impact: Decimal, *, shared: bool
) -> tuple[list[Order], RiskState, PositionBook]:
    """Market orders of AAPL (side, size, a tick before it) at a paper venue, each answer
    folded by risk's books and the positions book, as the service publishes it; with
    ``shared``, the venue's account and both books book through one ``SharedBooking``."""
    setup = PaperSettings(
        state_path=":memory:", starting_cash=Decimal(10) ** 14, tick_interval_s=0,
        slippage_bps=Decimal("1.5"), size_impact_bps_per_share=impact, price_decimals=4,
    )  # fmt: skip
    booking = SharedBooking() if shared else None
    risk = RiskState() if booking is None else RiskState(booking=booking)
    book = PositionBook(started_ns=NOW_NS)
    if booking is not None:
        book.booking = booking

    async def run() -> list[Order]:
        connector = PaperConnector("paper", setup, booking=booking)
        await connector.connect()
        try:
            venue = connector.venue
            venue.set_price("AAPL", Decimal("187.1234"))
            answered = []
            for i, (side, qty, moves) in enumerate(orders):
                if moves:
                    venue.tick()
                request = OrderRequest(
                    symbol="AAPL", side=side, qty=Decimal(qty),  # type: ignore[arg-type]
                    client_order_id=f"c-{i}",
                )  # fmt: skip
                order = venue.submit(request)
                answered.append(order)
                book.apply(OrderUpdate(order=order))
                apply_event(risk, OrderUpdate(order=order), NOW_NS)
                if shared:
                    # Taken, not worked out again: both books hold the venue's own figures.
                    held = venue.account.holdings["AAPL"]
                    for books in (book.holdings[KEY], risk.books[KEY]):
                        assert books.qty is held.qty and books.avg_price is held.avg_price
            return answered
        finally:
            await connector.disconnect()

    return trio.run(run), risk, book


@settings(max_examples=60, deadline=None)
@given(
    orders=st.lists(
        st.tuples(
            st.sampled_from(("buy", "sell")),
            st.sampled_from(("1", "1.0", "2", "2.00", "7", "350", "0.125")),
            st.booleans(),  # whether the price moves (a tick) before this order
        ),
        min_size=1,
        max_size=12,
    ),
    impact=st.sampled_from((Decimal(0), Decimal("0.001"), Decimal("0.37"))),
)
def test_the_books_take_the_venues_booking_of_each_fill_and_reach_the_same_figures(
    orders: list[tuple[str, str, bool]], impact: Decimal
) -> None:
    shared, shared_risk, shared_book = trade(orders, impact, shared=True)
    # The same orders at a venue and books that each book by themselves: every figure
    # the same, digit for digit.
    alone, risk, book = trade(orders, impact, shared=False)
    assert [(str(o.filled_qty), str(o.avg_fill_price)) for o in shared] == [
        (str(o.filled_qty), str(o.avg_fill_price)) for o in alone
    ]
    assert str(shared_risk.realized_today) == str(risk.realized_today)
    assert [str(h.qty) for h in (shared_risk.books[KEY], shared_book.holdings[KEY])] == [
        str(h.qty) for h in (risk.books[KEY], book.holdings[KEY])
    ]
    assert [str(h.avg_price) for h in (shared_risk.books[KEY], shared_book.holdings[KEY])] == [
        str(h.avg_price) for h in (risk.books[KEY], book.holdings[KEY])
    ]
    assert str(shared_book.lines[KEY].realized) == str(book.lines[KEY].realized)
