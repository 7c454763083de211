"""The service's books: each fill reaches positions and risk once; value and P&L move with fills."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import msgspec
import trio
import trio.testing

from tests.actors.harness import exact_paper_settings
from ult_actors.actors.commands import QueryPositions
from ult_actors.actors.positions import PositionBook
from ult_actors.actors.risk import RiskState, apply_event
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.messages import (
    AccountReset,
    Fill,
    GetPositions,
    Order,
    OrderReply,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    Position,
    PositionsReply,
    Submit,
)
from ult_actors.runtime import call
from ult_actors.service import Service, build_service

NOW_NS = 1_800_000_000 * 10**9


def order(coid: str, status: OrderStatus, filled: str, avg: str | None, *, side: str = "buy",
          qty: str = "10") -> Order:  # fmt: skip
    return Order(
        id=f"id-{coid}", client_order_id=coid, broker="alpaca", symbol="MSFT",
        side=side, qty=Decimal(qty), type="market",  # type: ignore[arg-type]
        time_in_force="day", status=status, filled_qty=Decimal(filled),
        avg_fill_price=None if avg is None else Decimal(avg),
    )  # fmt: skip


def execution(o: Order, qty: str, price: str) -> Fill:
    return Fill(
        fill_id=f"x-{o.client_order_id}-{o.filled_qty}", order_id=o.id,
        client_order_id=o.client_order_id, broker=o.broker, symbol=o.symbol, side=o.side,
        qty=Decimal(qty), price=Decimal(price),
    )  # fmt: skip


def test_one_fill_reported_by_stream_submit_reply_and_sweep_moves_the_book_once() -> None:
    book, risk = PositionBook(), RiskState()
    partial = order("c-1", "partially_filled", "2", "100")
    filled = order("c-1", "filled", "4", "101")
    for update in (
        OrderUpdate(order=partial, fill=execution(partial, "2", "100")),  # stream
        OrderUpdate(order=partial),  # the submit reply, same state
        OrderUpdate(order=filled),  # a sweep that saw the rest first
        OrderUpdate(order=filled, fill=execution(filled, "2", "102"), fill_only=True),
        OrderUpdate(order=partial),  # a late, older report
    ):
        book.apply(update)
        apply_event(risk, update, NOW_NS)
    (position,) = book.positions()
    assert (position.qty, position.avg_entry_price) == (Decimal(4), Decimal(101))
    held = risk.books[("alpaca", "MSFT")]
    assert (held.qty, held.avg_price) == (Decimal(4), Decimal(101))
    # After a restart the stream repeats the execution of an order the journal had final:
    # the new book (started from the broker's report) must not count it again.
    restarted = PositionBook(started_ns=filled.updated_at + 1)
    restarted.apply(OrderUpdate(order=filled, fill=execution(filled, "2", "102"), fill_only=True))
    assert restarted.positions() == []
    # But a state journaled after the book began and repeated as fill_only (its broker actor
    # crashed between journaling and publishing it) is news to the book: it counts, once.
    later = msgspec.structs.replace(filled, updated_at=restarted.started_ns + 1)
    for _ in range(2):
        restarted.apply(OrderUpdate(order=later, fill=execution(later, "2", "102"), fill_only=True))
    assert [p.qty for p in restarted.positions()] == [Decimal(4)]


def test_value_and_pnl_move_with_the_fills_that_move_the_quantity() -> None:
    book = PositionBook()
    report = Position(
        broker="alpaca", symbol="MSFT", qty=Decimal(20), avg_entry_price=Decimal(100),
        market_value=Decimal(2000), unrealized_pl=Decimal(0), realized_pl=Decimal(5),
    )  # fmt: skip
    book.adopt("alpaca", report, "MSFT")
    book.apply(OrderUpdate(order=order("b-1", "filled", "3", "110", qty="3")))
    (held,) = book.positions()
    avg = (Decimal(2000) + Decimal(330)) / 23
    assert (held.qty, held.avg_entry_price) == (Decimal(23), avg)
    assert held.market_value == Decimal(23 * 110)  # not the report's 20 shares' worth
    assert held.unrealized_pl == (Decimal(110) - avg) * 23
    book.apply(OrderUpdate(order=order("s-1", "filled", "5", "120", side="sell", qty="5")))
    (held,) = book.positions()
    assert held.qty == 18 and held.market_value == Decimal(18 * 120)
    assert held.realized_pl == Decimal(5) + (Decimal(120) - avg) * 5
    # The broker's next report wins, whatever the book had worked out.
    book.adopt("alpaca", Position(
        broker="alpaca", symbol="MSFT", qty=Decimal(18), avg_entry_price=Decimal(101),
        market_value=Decimal(2100), unrealized_pl=Decimal(282), realized_pl=Decimal(90),
    ), "MSFT")  # fmt: skip
    (held,) = book.positions()
    assert (held.avg_entry_price, held.market_value, held.realized_pl) == (
        Decimal(101), Decimal(2100), Decimal(90),
    )  # fmt: skip


def test_risk_and_positions_share_each_fill_booked_while_a_report_agrees_digit_for_digit() -> None:
    risk = RiskState()
    book = PositionBook(booking=risk.booking)  # as the service builds them
    key = ("alpaca", "MSFT")

    def fold(o: Order) -> None:
        book.apply(OrderUpdate(order=o))
        apply_event(risk, OrderUpdate(order=o), NOW_NS)

    def shared() -> bool:
        mine, theirs = book.holdings[key], risk.books[key]
        return mine.qty is theirs.qty and mine.avg_price is theirs.avg_price

    fold(order("c-1", "filled", "10", "101.5"))
    fold(order("c-2", "filled", "5", "102.25", qty="5"))
    assert shared()  # one booking, taken by both
    figures = (book.holdings[key].qty, book.holdings[key].avg_price)
    # The broker reports the same figures (its own objects): the book keeps its own.
    book.adopt("alpaca", Position(
        broker="alpaca", symbol="MSFT", qty=Decimal(str(figures[0])),
        avg_entry_price=Decimal(str(figures[1])),
    ), "MSFT")  # fmt: skip
    assert shared() and book.positions()[0].avg_entry_price == figures[1]
    fold(order("c-3", "filled", "5", "103", side="sell", qty="5"))
    assert shared()
    # A report of the same value written otherwise is the broker's figure: taken as it is.
    held = book.holdings[key]
    written_otherwise = Decimal(str(held.avg_price) + "0")
    book.adopt("alpaca", Position(
        broker="alpaca", symbol="MSFT", qty=held.qty, avg_entry_price=written_otherwise,
    ), "MSFT")  # fmt: skip
    assert str(book.holdings[key].avg_price) == str(written_otherwise) and not shared()
    fold(order("c-4", "filled", "2", "104", qty="2"))
    assert book.holdings[key].qty == risk.books[key].qty == 12


def test_fees_come_off_the_realized_pnl_once_with_or_without_the_fill_they_paid_for() -> None:
    book = PositionBook()
    working = order("c-1", "accepted", "0", None)
    fee_first = msgspec.structs.replace(execution(working, "0", "100"), commission=Decimal(1))
    book.apply(OrderUpdate(order=working, fill=fee_first))  # fees ahead of any quantity
    assert book.positions() == []  # nothing held yet, but the fee is owed
    filled = order("c-1", "filled", "10", "100")
    paid = msgspec.structs.replace(execution(filled, "10", "100"), commission=Decimal(2))
    for _ in range(2):  # the same execution twice (stream and sweep): paid once
        book.apply(OrderUpdate(order=filled, fill=paid))
    book.apply(OrderUpdate(order=working, fill=fee_first))  # a late repeat of the first fee
    (held,) = book.positions()
    assert (held.qty, held.market_value, held.realized_pl) == (
        Decimal(10), Decimal(1000), Decimal(-3),
    )  # fmt: skip


@asynccontextmanager
async def paper_service(state_dir: Path) -> AsyncIterator[tuple[Service, list[PaperConnector]]]:
    """The tree on the paper broker; its account file (and the journal) outlive the service."""
    settings = exact_paper_settings(
        displayed_size=Decimal(4), state_path=str(state_dir / "paper-paper.db")
    )
    cfg = ServiceConfig(
        service=ServiceSection(default_broker="paper", state_dir=str(state_dir)),
        brokers=[BrokerEntry(name="paper", kind="paper", enabled=True, settings=settings)],
    )
    made: list[PaperConnector] = []

    def connector() -> PaperConnector:
        made.append(PaperConnector("paper", settings, now_ns=lambda: NOW_NS))
        return made[-1]

    svc = build_service(
        cfg, env={}, rng=random.Random(3), now_ns=lambda: NOW_NS,
        connector_factories={"paper": connector},  # type: ignore[dict-item]
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        with trio.fail_after(15):
            await nursery.start(svc.run)
            await trio.testing.wait_all_tasks_blocked()  # the first position pull is in
        yield svc, made
        nursery.cancel_scope.cancel()


async def book_of(svc: Service) -> tuple[Decimal, Decimal]:
    """(positions' AAPL quantity, risk's), once every actor has taken in what was published."""
    with trio.fail_after(10):
        await trio.testing.wait_all_tasks_blocked()
    reply = await svc.gateway.handle(GetPositions(id=1))
    assert isinstance(reply, PositionsReply)
    held = {p.symbol: p.qty for p in reply.positions}
    return held.get("AAPL", Decimal(0)), svc.risk_state.books[("paper", "AAPL")].qty


async def test_fills_before_a_restart_are_not_counted_again_after_it(tmp_path: Path) -> None:
    # 10 to buy, the venue shows 4 per match: 4 now, 4 at the next price, 2 at the one after.
    limit = OrderRequest(
        symbol="AAPL", side="buy", qty=Decimal(10), type="limit", limit_price=Decimal(100),
        time_in_force="gtc", client_order_id="book-1",
    )  # fmt: skip
    async with paper_service(tmp_path) as (svc, _):
        reply = await svc.gateway.handle(Submit(id=1, order=limit))
        assert isinstance(reply, OrderReply) and reply.order.filled_qty == 4
        assert await book_of(svc) == (4, 4)
    # Started again: both books begin from the broker's report, which holds those 4.
    async with paper_service(tmp_path) as (svc, made):
        assert await book_of(svc) == (4, 4)
        updates = svc.bus.subscribe(lambda e: isinstance(e, OrderUpdate))
        for filled in (8, 10):
            made[-1].venue.set_price("AAPL", Decimal(100))  # 4 more, then the last 2
            with trio.fail_after(10):
                while True:
                    event = await updates.receive()
                    if isinstance(event, OrderUpdate) and event.order.filled_qty == filled:
                        break
            assert await book_of(svc) == (filled, filled)
        (position,) = (await svc.gateway.handle(GetPositions(id=2))).positions  # type: ignore[union-attr]
        # Valued at the last fill's price even before the next report.
        assert position.market_value == 10 * Decimal(100)


async def test_a_paper_fill_is_booked_once_for_the_venue_risk_and_positions(tmp_path: Path) -> None:
    # The paper kind as the configuration makes it (no factory of the test's): the service
    # hands its venue's account the booking risk and positions share.
    settings = exact_paper_settings(state_path=str(tmp_path / "paper.db"))
    cfg = ServiceConfig(
        service=ServiceSection(default_broker="paper", state_dir=str(tmp_path)),
        brokers=[BrokerEntry(name="paper", kind="paper", enabled=True, settings=settings)],
    )
    svc = build_service(cfg, env={}, rng=random.Random(3), now_ns=lambda: NOW_NS)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(15):
            await nursery.start(svc.run)
            await trio.testing.wait_all_tasks_blocked()  # the first position pull is in
        for i, qty in enumerate(("3", "2")):  # opened, then added to (a new average)
            request = OrderRequest(
                symbol="AAPL", side="buy", qty=Decimal(qty), client_order_id=f"once-{i}"
            )
            reply = await svc.gateway.handle(Submit(id=i + 1, order=request))
            assert isinstance(reply, OrderReply) and reply.order.status == "filled"
        assert await book_of(svc) == (5, 5)
        # The venue's own figures (its position report hands its holding's objects on).
        (venue,) = await call(svc.brokers["paper"], QueryPositions(), timeout=5.0, answer=list)
        for held in (svc.book.holdings[("paper", "AAPL")], svc.risk_state.books[("paper", "AAPL")]):
            assert held.qty is venue.qty and held.avg_price is venue.avg_entry_price
        nursery.cancel_scope.cancel()


def test_each_line_of_the_positions_book_holds_the_book_s_own_holding() -> None:
    # Fills, fees alone, broker reports (with and without a position) and account resets
    # in random order: a line's holding is always ``holdings``' entry for its key (a fill
    # books into the line's, so another there would be booked behind the book's back).
    for seed in range(40):
        rng = random.Random(seed)
        book = PositionBook()
        symbols = ("MSFT", "AAPL")
        filled: dict[str, int] = {}
        for step in range(120):
            symbol = rng.choice(symbols)
            roll = rng.random()
            if roll < 0.1:
                report = None
                if rng.random() < 0.7:
                    report = Position(
                        broker="alpaca", symbol=symbol, qty=Decimal(rng.randint(-5, 20)),
                        avg_entry_price=Decimal(rng.randint(90, 110)),
                    )  # fmt: skip
                book.adopt("alpaca", report, symbol)
            elif roll < 0.13:
                book.reset(msgspec.structs.replace(_RESET, positions=[]))
            else:
                coid = f"c-{symbol}-{step // 7}"
                done = filled.get(coid, 0)
                now = min(10, done + rng.choice((0, 1, 3)))
                filled[coid] = now
                o = msgspec.structs.replace(
                    order(coid, "filled" if now == 10 else "partially_filled", str(now),
                          str(rng.randint(95, 105)) if now else None,
                          side=rng.choice(("buy", "sell"))),
                    symbol=symbol,
                )  # fmt: skip
                fill = execution(o, str(max(now - done, 0)), "100") if rng.random() < 0.5 else None
                if fill is not None:
                    fill = msgspec.structs.replace(fill, commission=Decimal("0.01"))
                book.apply(OrderUpdate(order=o, fill=fill, ts=NOW_NS))
            for key, line in book.lines.items():
                assert line.holding is book.holdings.get(key), (seed, step, key)


_RESET = AccountReset(broker="alpaca", positions=[], reason="test")
