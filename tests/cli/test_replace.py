"""``ult replace`` against ``ult serve`` in front of ``ult sim alpaca``: the replacement is
printed, both orders show their link, and a replace that cannot be done says why."""

from __future__ import annotations

import json

from tests.cli.conftest import AlpacaService


def test_replace_prints_the_replacement_and_both_orders_show_the_link(
    alpaca: AlpacaService,
) -> None:
    placed = alpaca.ult("submit", "AAPL", "buy", "5", "--type", "limit", "--limit-price", "150",
                        "--tif", "gtc", "--client-order-id", "rp-old")  # fmt: skip
    assert placed.returncode == 0, placed.stderr
    done = alpaca.ult("replace", "rp-old", "--qty", "6", "--limit-price", "151.5",
                      "--client-order-id", "rp-new", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    new = json.loads(done.stdout)
    assert (new["client_order_id"], new["replaces"]) == ("rp-new", "rp-old")
    assert (new["qty"], new["limit_price"], new["time_in_force"]) == ("6", "151.5", "gtc")

    old = json.loads(alpaca.ult("order", "rp-old", "--json").stdout)
    assert (old["status"], old["replaced_by"]) == ("replaced", "rp-new")
    human = alpaca.ult("order", "rp-old").stdout.splitlines()
    assert ["replaced", "by", "rp-new"] in [line.split() for line in human]
    table = alpaca.ult("orders").stdout.splitlines()
    assert table[0].split()[-1] == "LINKS"
    assert next(line for line in table if " rp-new " in line).endswith("replaces rp-old")
    assert next(line for line in table if " rp-old " in line).endswith("replaced by rp-new")


def test_replacing_a_filled_order_exits_1_naming_its_state(alpaca: AlpacaService) -> None:
    filled = alpaca.ult("submit", "AAPL", "buy", "1", "--wait", "--client-order-id", "rp-done")
    assert filled.returncode == 0, filled.stderr
    refused = alpaca.ult("replace", "rp-done", "--qty", "2")
    assert refused.returncode == 1
    assert "not_replaceable" in refused.stderr and "is filled" in refused.stderr
    as_json = alpaca.ult("replace", "rp-done", "--qty", "2", "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["error"]["code"] == "not_replaceable"
    assert json.loads(alpaca.ult("order", "rp-done", "--json").stdout)["status"] == "filled"
