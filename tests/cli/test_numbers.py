"""``ult submit`` takes plain decimals only: the exponent, underscore, space and
too-fine forms Python's ``Decimal`` would read are refused before anything is sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal

import pytest

from ult_actors.testing.process import UltProcess, run_ult


@pytest.fixture(scope="module")
def service() -> Iterator[UltProcess]:
    svc = UltProcess.serve().start()
    yield svc
    svc.cleanup()


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["1e1"], "qty"),
        (["1_0"], "qty"),
        ([" 10"], "qty"),
        (["0.0000000001"], "qty"),
        (["\u0661\u0660"], "qty"),  # Arabic-Indic digits: Decimal reads them as 10
        (["1", "--type", "limit", "--limit-price", "1E+2"], "limit_price"),
        (["1", "--type", "stop", "--stop-price", "1e999999999"], "stop_price"),
    ],
)
def test_loose_numbers_are_refused_naming_the_field(
    service: UltProcess, args: list[str], field: str
) -> None:
    done = run_ult("submit", "AAPL", "buy", *args, "--json", "--socket", str(service.socket))
    assert done.returncode == 1, done.stdout + done.stderr
    error = json.loads(done.stdout)["error"]
    assert (error["code"], error["field"]) == ("invalid_order", field)
    listed = run_ult("orders", "--json", "--socket", str(service.socket))
    assert json.loads(listed.stdout)["orders"] == [], "a refused number placed an order"


def test_a_plain_decimal_with_nine_places_is_taken_as_written(service: UltProcess) -> None:
    done = run_ult("submit", "AAPL", "buy", "0.000000001", "--json", "--client-order-id",
                   "plain-9", "--socket", str(service.socket))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert Decimal(json.loads(done.stdout)["qty"]) == Decimal("0.000000001")


@pytest.mark.parametrize(
    "args",
    [
        ["orders", "--limit", "1_0"],
        ["orders", "--limit", "1e3"],
        ["orders", "--limit", "-1"],
        ["health", "--timeout", "nan"],
        ["health", "--timeout", "1e1"],
        ["health", "--timeout", "0"],
        ["health", "--watch", "--interval", "inf", "--count", "1"],
    ],
)
def test_loose_numbers_in_options_are_usage_errors(service: UltProcess, args: list[str]) -> None:
    done = run_ult(*args, "--socket", str(service.socket))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "is not a" in done.stderr
