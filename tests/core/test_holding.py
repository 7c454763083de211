"""The one position fold: average in, reduce, close, flip, and the P&L each realizes."""

from decimal import Decimal as D

from ult_actors.holding import Holding


def test_adding_averages_the_price_and_realizes_nothing() -> None:
    h = Holding()
    assert h.book(D(10), D(100)) == 0
    assert h.book(D(30), D(104)) == 0
    assert (h.qty, h.avg_price) == (D(40), D(103))


def test_reducing_a_long_realizes_and_keeps_the_average() -> None:
    h = Holding(qty=D(40), avg_price=D(103))
    assert h.book(D(-10), D(110)) == D(70)
    assert (h.qty, h.avg_price) == (D(30), D(103))


def test_covering_a_short_realizes_the_opposite_sign() -> None:
    h = Holding()
    h.book(D(-5), D(20))
    assert h.book(D(2), D(18)) == D(4)
    assert h.book(D(3), D(21)) == D(-3)
    assert (h.qty, h.avg_price) == (D(0), D(0))


def test_a_flip_closes_the_old_side_and_opens_the_rest_at_the_fill_price() -> None:
    h = Holding(qty=D(10), avg_price=D(50))
    assert h.book(D(-15), D(55)) == D(50)
    assert (h.qty, h.avg_price) == (D(-5), D(55))
