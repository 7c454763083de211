"""Brackets, OCOs and OTOs from ``ult`` against ``ult serve`` in front of ``ult sim alpaca``
(native order classes there): every leg printed, listed together, linked in ``--json``."""

from __future__ import annotations

import json
from typing import Any

from tests.cli.conftest import AlpacaService
from ult_actors.testing.process import UltProcess, run_ult


def _legs(done: Any) -> list[dict[str, Any]]:
    assert done.returncode == 0, done.stdout + done.stderr
    orders: list[dict[str, Any]] = json.loads(done.stdout)["orders"]
    return orders


def _rows(alpaca: AlpacaService, *args: str) -> list[str]:
    done = alpaca.ult(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_a_bracket_prints_every_leg_and_is_shown_as_one_list(alpaca: AlpacaService) -> None:
    legs = _legs(alpaca.ult(
        "submit", "AAPL", "buy", "2", "--type", "limit", "--limit-price", "150", "--tif", "gtc",
        "--take-profit", "200", "--stop-loss", "140", "--stop-limit", "139.5",
        "--list-id", "br-1", "--json",
    ))  # fmt: skip
    entry, take, stop = legs
    assert [leg["leg"]["role"] for leg in legs] == ["entry", "take_profit", "stop_loss"]
    assert {leg["leg"]["list_id"] for leg in legs} == {"br-1"}
    assert {leg["leg"]["contingency"] for leg in legs} == {"bracket"}
    assert entry["leg"].get("parent_id") is None
    assert [take["leg"]["parent_id"], stop["leg"]["parent_id"]] == [entry["client_order_id"]] * 2
    assert (entry["side"], entry["limit_price"]) == ("buy", "150")
    assert (take["side"], take["type"], take["limit_price"]) == ("sell", "limit", "200")
    assert (stop["type"], stop["stop_price"], stop["limit_price"]) == ("stop_limit", "140", "139.5")
    assert (take["status"], stop["status"]) == ("held", "held")

    # Another order placed after it does not split the list in the listing.
    assert alpaca.ult("submit", "AAPL", "buy", "1", "--type", "limit", "--limit-price", "100",
                      "--tif", "gtc").returncode == 0  # fmt: skip
    table = _rows(alpaca, "orders", "--open")
    at = next(i for i, line in enumerate(table) if f" {entry['client_order_id']} " in line)
    assert table[at].endswith("bracket br-1 entry")
    assert table[at + 1].startswith("├─ ") and f" {take['client_order_id']} " in table[at + 1]
    assert table[at + 2].startswith("└─ ") and f" {stop['client_order_id']} " in table[at + 2]
    assert table[at + 2].endswith(f"bracket br-1 stop_loss after {entry['client_order_id']}")

    # One leg asked for by id: its place in the list, then the whole list.
    shown = _rows(alpaca, "order", take["client_order_id"])
    fields = {line[:15].strip(): line[15:].strip() for line in shown[: shown.index("")]}
    assert (fields["list"], fields["role"]) == (
        "bracket br-1",
        f"take_profit (after {entry['client_order_id']} fills)",
    )
    listed = shown[shown.index("") + 1 :]
    assert len(listed) == 4 and listed[0].split()[-1] == "LINKS"
    one = json.loads(alpaca.ult("order", take["client_order_id"], "--json").stdout)
    assert one["leg"] == take["leg"]


def test_an_oco_sends_both_exits_of_a_position(alpaca: AlpacaService) -> None:
    held = alpaca.ult("submit", "MSFT", "buy", "3", "--wait")
    assert held.returncode == 0, held.stderr
    take, stop = _legs(alpaca.ult(
        "oco", "MSFT", "sell", "3", "--take-profit", "900", "--stop-loss", "50",
        "--list-id", "oco-1", "--json",
    ))  # fmt: skip
    assert [take["leg"]["role"], stop["leg"]["role"]] == ["take_profit", "stop_loss"]
    assert (take["type"], take["limit_price"], stop["type"], stop["stop_price"]) == (
        "limit",
        "900",
        "stop",
        "50",
    )
    assert take["time_in_force"] == stop["time_in_force"] == "gtc"
    assert take["leg"].get("parent_id") is None and stop["leg"].get("parent_id") is None
    table = _rows(alpaca, "orders", "--open")
    rows = [line for line in table if "oco oco-1" in line]
    assert [row.split()[-1] for row in rows] == ["take_profit", "stop_loss"]
    assert not any(row.startswith(("├─", "└─")) for row in rows)  # no leg triggers another


def test_an_oto_takes_the_parent_before_then_and_the_child_after(alpaca: AlpacaService) -> None:
    parent, child = _legs(alpaca.ult(
        "oto", "AAPL", "buy", "4", "--type", "limit", "--limit-price", "150", "--tif", "gtc",
        "--client-order-id", "oto-parent",
        "--then", "sell", "4", "--type", "limit", "--limit-price", "210",
        "--client-order-id", "oto-child", "--json",
    ))  # fmt: skip
    assert [parent[k] for k in ("client_order_id", "side", "limit_price", "time_in_force")] == [
        "oto-parent", "buy", "150", "gtc"
    ]  # fmt: skip
    # The child's time in force is the parent's unless given (Alpaca works both on one).
    assert [child[k] for k in ("client_order_id", "side", "qty", "limit_price", "time_in_force")] == [
        "oto-child", "sell", "4", "210", "gtc"
    ]  # fmt: skip
    assert (child["status"], child["leg"]["role"], child["leg"]["parent_id"]) == (
        "held", "child", "oto-parent"
    )  # fmt: skip
    assert parent["leg"]["list_id"] == child["leg"]["list_id"]


def test_paper_carries_a_bracket_itself() -> None:
    # The paper broker has native lists: the venue holds the exits, not the service.
    with UltProcess.serve() as service:
        service.start()
        sock = ("--socket", str(service.socket))
        placed = run_ult("submit", "AAPL", "buy", "1", "--type", "limit", "--limit-price", "1",
                         "--tif", "gtc", "--take-profit", "2", "--stop-loss", "0.5", "--json",
                         *sock)  # fmt: skip
        assert placed.returncode == 0, placed.stderr
        legs = json.loads(placed.stdout)
        legs = legs["orders"] if isinstance(legs, dict) else legs
        assert [(o["status"], o["leg"]["emulated"]) for o in legs] == [
            ("accepted", False), ("held", False), ("held", False)
        ]  # fmt: skip
        assert json.loads(run_ult("health", "--json", *sock).stdout)["emulated_legs"] == {}
