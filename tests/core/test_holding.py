"""The one position fold: average in, reduce, close, flip, and the P&L each realizes."""

import random
from decimal import Decimal as D

from ult_actors.holding import Holding, SharedBooking, same_figure


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


def _figures(h: Holding) -> tuple[tuple[object, ...], tuple[object, ...]]:
    """A holding's figures to the digit and exponent (``==`` alone ignores both)."""
    return h.qty.as_tuple(), h.avg_price.as_tuple()


def _amount(rng: random.Random, places: int) -> D:
    """A positive amount with ``places`` decimal places (the exponent varies too)."""
    return D(rng.randint(1, 5000)).scaleb(-places) if places else D(rng.randint(1, 50))


def test_a_shared_booking_gives_each_holding_what_its_own_booking_would() -> None:
    # Two books (risk's and positions') fold the same fills, mostly from the same figures;
    # sometimes one alone takes a fill or a broker's figures (then they differ for a while).
    for seed in range(60):
        rng = random.Random(seed)
        shared = SharedBooking()
        a, b = Holding(), Holding()  # booked through ``shared``
        own_a, own_b = Holding(), Holding()  # each booked by itself
        for _ in range(120):
            qty, price = _amount(rng, rng.choice((0, 0, 1, 3))), _amount(rng, rng.choice((0, 2, 4)))
            buy = rng.random() < 0.55
            signed = qty if buy else -qty
            roll = rng.random()
            if roll < 0.05:  # a broker's report replaces one book's figures
                report_qty, report_avg = _amount(rng, 1), _amount(rng, 3)
                b.qty, b.avg_price = own_b.qty, own_b.avg_price = report_qty, report_avg
                continue
            if roll < 0.1:  # a fill only one book folds (its ledger knew it already)
                assert shared.book(a, qty, buy, price) == own_a.book(signed, price)
                continue
            for held, own in ((a, own_a), (b, own_b)):
                realized = shared.book(held, qty, buy, price)
                expected = own.book(signed, price)
                assert realized.as_tuple() == expected.as_tuple(), seed
                assert _figures(held) == _figures(own), seed


def test_a_shared_booking_works_a_fill_out_once_for_two_holdings_with_the_same_figures() -> None:
    shared = SharedBooking()
    risk, positions = Holding(), Holding()
    qty, price = D(3), D("187.12")
    for _ in range(3):
        shared.book(risk, qty, True, price)
        shared.book(positions, qty, True, price)
        # The second took the first's result: the same objects, not a second division.
        assert positions.qty is risk.qty and positions.avg_price is risk.avg_price
        price += D("0.07")
    # Figures equal in value but written otherwise (a report's) are worked out anew.
    positions.avg_price = D(str(risk.avg_price) + "0")
    shared.book(risk, qty, False, price)
    shared.book(positions, qty, False, price)
    assert positions.qty == risk.qty and positions.qty is not risk.qty


def test_same_figure_tells_digits_and_exponent_apart() -> None:
    assert same_figure(D("1.50"), D("1.50"))
    assert not same_figure(D("1.5"), D("1.50"))
    assert not same_figure(D("0"), D("-0"))
