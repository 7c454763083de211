"""How order lists and replace links read in ``ult orders`` / ``ult order``, and the usage
errors of ``ult replace``, a bracket, ``ult oco`` and ``ult oto`` (no service needed)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ult_actors.cli.main import main
from ult_actors.cli.tables import Style, event_line, order_detail, orders_table
from ult_actors.messages import Leg, Order, OrderUpdate


def _order(coid: str, **fields: object) -> Order:
    base: dict[str, object] = dict(
        id=f"v-{coid}", client_order_id=coid, broker="alpaca", symbol="AAPL", side="sell",
        qty=Decimal(2), type="limit", limit_price=Decimal(200), time_in_force="gtc",
        status="held",
    )  # fmt: skip
    base.update(fields)
    return Order(**base)  # type: ignore[arg-type]


def _leg(role: str, parent: str | None = None, list_id: str = "L-1") -> Leg:
    return Leg(list_id=list_id, contingency="bracket", role=role, parent_id=parent)  # type: ignore[arg-type]


ENTRY = _order("e", side="buy", status="accepted", limit_price=Decimal(150), leg=_leg("entry"))
TAKE = _order("tp", leg=_leg("take_profit", "e"))
STOP = _order(
    "sl", type="stop", limit_price=None, stop_price=Decimal(140), leg=_leg("stop_loss", "e")
)
PLAIN = _order("p", side="buy", status="accepted")


def test_the_legs_of_a_list_are_listed_together_exits_under_their_entry() -> None:
    # As listed by the service: newest first, another order between the legs.
    lines = orders_table([STOP, PLAIN, TAKE, ENTRY], Style(False)).splitlines()
    assert lines[0].split()[-1] == "LINKS"
    assert [line.split()[0] for line in lines[1:]] == ["alpaca:v-e", "├─", "└─", "alpaca:v-p"]
    assert lines[1].endswith("bracket L-1 entry")
    assert lines[2].startswith("├─ alpaca:v-tp") and lines[2].endswith("take_profit after e")
    assert lines[3].startswith("└─ alpaca:v-sl") and lines[3].endswith("stop_loss after e")
    assert lines[4].split()[-1] == "0"  # a plain order has no links
    # Columns still line up under their headers with the tree drawn in the ID column.
    assert lines[2].index(" tp ") + 1 == lines[0].index("CLIENT ORDER ID")


def test_an_oco_has_no_tree_and_plain_orders_no_links_column() -> None:
    oco = [_order(c, leg=Leg(list_id="O-1", contingency="oco", role=r))
           for c, r in (("b", "stop_loss"), ("a", "take_profit"))]  # fmt: skip
    lines = orders_table(oco, Style(False)).splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["alpaca:v-a", "alpaca:v-b"]
    assert lines[1].endswith("oco O-1 take_profit")
    assert "LINKS" not in orders_table([PLAIN], Style(False))


def test_an_order_shows_its_list_role_and_replace_links() -> None:
    fields = {
        line[:15].strip(): line[15:].strip()
        for line in order_detail(
            _order("tp2", status="accepted", leg=_leg("take_profit", "e"), replaces="tp",
                   replaced_by="tp3"),
            Style(False),
        ).splitlines()
    }  # fmt: skip
    assert fields["list"] == "bracket L-1"
    assert fields["role"] == "take_profit (after e fills)"
    assert (fields["replaces"], fields["replaced by"]) == ("tp", "tp3")


def test_an_order_event_names_its_list_and_replace_links() -> None:
    update = OrderUpdate(order=_order("tp2", status="accepted", leg=_leg("take_profit", "e"),
                                      replaces="tp"), ts=0)  # fmt: skip
    assert event_line(update, Style(False)).endswith(
        "accepted 0/2  (bracket L-1 take_profit after e; replaces tp)"
    )
    assert event_line(OrderUpdate(order=PLAIN, ts=0), Style(False)).endswith("accepted 0/2")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["replace", "c-1"], "nothing to change: give --qty, --limit-price, --stop-price or --tif"),
        (["submit", "AAPL", "buy", "1", "--take-profit", "200"],
         "a bracket needs both --take-profit and --stop-loss"),
        (["submit", "AAPL", "buy", "1", "--take-profit", "200", "--stop-loss", "150", "--wait"],
         "--wait: not for a bracket"),
        (["submit", "AAPL", "buy", "1", "--type", "stop", "--stop-price", "191",
          "--take-profit", "200", "--stop-loss", "150"],
         "a bracket's entry is a market or limit order"),
        (["oco", "AAPL", "sell", "1", "--take-profit", "200"], "--stop-loss"),
        (["oto", "AAPL", "buy", "1"], "--then SIDE QTY [terms] is required"),
        (["oto", "AAPL", "buy", "1", "--then", "sell"], "the following arguments are required: qty"),
    ],
)  # fmt: skip
def test_usage_errors_exit_2_and_say_what_is_missing(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--socket", "/nonexistent/ult.sock"])
    assert exited.value.code == 2
    assert says in capsys.readouterr().err
