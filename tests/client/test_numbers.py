"""A quantity or price the client cannot send exactly is refused with ``InvalidOrder``
naming the field, before anything is sent, whether the client runs as Python or
compiled by mypyc (CI runs this file against the compiled build, where a float once
raised mypyc's own ``TypeError`` instead)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ult_actors.client import (
    AsyncClient,
    Client,
    InvalidOrder,
    bracket_request,
    oco_request,
    order_request,
    replace_request,
)

#: What a caller no type checker saw may pass for a number, and the type the error names.
NOT_NUMBERS: list[tuple[Any, str]] = [
    (0.1, "float"),
    (1.0, "float"),
    (True, "bool"),
    (None, "NoneType"),
    (b"1", "bytes"),
    ([1], "list"),
]


def _refusal(field: str, type_name: str) -> str:
    return re.escape(
        f"{field} must be a str, int or Decimal, not {type_name}"
        " (floats cannot hold prices exactly)"
    )


@pytest.mark.parametrize(("value", "type_name"), NOT_NUMBERS)
def test_a_quantity_that_is_not_a_number_is_refused_naming_the_field_and_its_type(
    value: Any, type_name: str
) -> None:
    with pytest.raises(InvalidOrder, match=_refusal("qty", type_name)) as info:
        order_request("AAPL", "buy", value)
    assert info.value.field == "qty"


@pytest.mark.parametrize(
    ("field", "build"),
    [
        ("limit_price", lambda x: order_request("AAPL", "buy", 1, type="limit", limit_price=x)),
        ("stop_price", lambda x: order_request("AAPL", "buy", 1, type="stop", stop_price=x)),
        ("qty", lambda x: replace_request("o-1", qty=x)),
        ("limit_price", lambda x: replace_request("o-1", limit_price=x)),
        ("stop_price", lambda x: replace_request("o-1", stop_price=x)),
        ("limit_price", lambda x: bracket_request("AAPL", "buy", 1, take_profit=x, stop_loss=9)),
        ("stop_price", lambda x: bracket_request("AAPL", "buy", 1, take_profit=11, stop_loss=x)),
        ("limit_price", lambda x: oco_request("AAPL", "sell", 1, take_profit=11, stop_loss=9,
                                              stop_limit=x)),
    ],
)  # fmt: skip
def test_a_float_price_or_quantity_is_refused_in_every_request_builder(
    field: str, build: Any
) -> None:
    with pytest.raises(InvalidOrder, match=_refusal(field, "float")) as info:
        build(187.25)
    assert info.value.field == field


def test_the_blocking_client_refuses_a_float_before_it_sends(tmp_path: Path) -> None:
    # Never connected: the refusal comes before the client looks for its socket.
    client = Client(tmp_path / "no.sock")
    with pytest.raises(InvalidOrder, match=_refusal("qty", "float")):
        client.submit("AAPL", "buy", 0.1)
    with pytest.raises(InvalidOrder, match=_refusal("limit_price", "float")):
        client.replace("o-1", limit_price=187.25)
    with pytest.raises(InvalidOrder, match=_refusal("stop_price", "float")):
        client.bracket("AAPL", "buy", 1, take_profit=11, stop_loss=9.5)


async def test_the_async_client_refuses_a_float_before_it_sends(tmp_path: Path) -> None:
    client = AsyncClient(tmp_path / "no.sock")
    with pytest.raises(InvalidOrder, match=_refusal("qty", "float")):
        await client.submit("AAPL", "buy", 0.1)
    with pytest.raises(InvalidOrder, match=_refusal("limit_price", "float")):
        await client.replace("o-1", limit_price=187.25)
    with pytest.raises(InvalidOrder, match=_refusal("stop_price", "float")):
        await client.oco("AAPL", "sell", 1, take_profit=11, stop_loss=9.5)
