"""The log line of each mutating request: the fields an operator reads, in their order."""

from __future__ import annotations

import io
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import msgspec
import pytest
import structlog

from ult_actors.ipc.dispatch import Dispatcher
from ult_actors.logsetup import configure_logging
from ult_actors.messages import (
    Cancel,
    GetHealth,
    OrderListRequest,
    OrderRequest,
    Replace,
    ReplaceRequest,
    Request,
    SetKillSwitch,
    SetTradingState,
    Submit,
    SubmitList,
)


class _Lines:
    """A logger that keeps each call's event and fields, in the order they were given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, Any]]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.calls.append((event, list(fields.items())))


class _AsIs:
    """A gateway whose ``prepare`` leaves every request as it came."""

    def prepare(self, request: Request) -> Request:
        return request


def _line_of(request: Request) -> tuple[str, list[tuple[str, Any]]]:
    log = _Lines()
    dispatcher = Dispatcher(_AsIs(), log)  # type: ignore[arg-type]
    decoded = dispatcher.decode(msgspec.msgpack.encode(request))
    assert decoded == request
    [line] = log.calls
    return line


def test_a_submit_line_names_the_order_and_its_terms() -> None:
    order = OrderRequest(
        symbol="AAPL", side="buy", qty=Decimal("2.50"), broker="paper", client_order_id="c-1"
    )
    assert _line_of(Submit(id=7, order=order)) == (
        "request",
        [
            ("kind", "Submit"),
            ("request_id", 7),
            ("client_order_id", "c-1"),
            ("symbol", "AAPL"),
            ("side", "buy"),
            ("qty", "2.50"),
            ("type", "market"),
            ("broker", "paper"),
        ],
    )


@pytest.fixture
def _fresh_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.mark.usefixtures("_fresh_structlog")
def test_a_submit_line_read_from_the_request_on_the_writer_thread_is_structlogs_line() -> None:
    # The submit's fields are not handed over as a dict: the writer reads them from the
    # request. The line must still be the one ``log.info`` writes, byte for byte.
    out = io.StringIO()
    writer = configure_logging(json=True, stream=out, clock=lambda: 1_700_000_000.25)
    log = structlog.get_logger().bind(actor="ipc", peer_uid=1000, peer_pid=42)
    order = OrderRequest(
        symbol="MSFT", side="sell", qty=Decimal("0.10"), type="limit",
        limit_price=Decimal("410.5"), client_order_id="c-9",
    )  # fmt: skip
    Dispatcher(_AsIs(), log).decode(msgspec.msgpack.encode(Submit(id=3, order=order)))  # type: ignore[arg-type]
    log.info(
        "request", kind="Submit", request_id=3, client_order_id="c-9", symbol="MSFT",
        side="sell", qty="0.10", type="limit", broker=None,
    )  # fmt: skip
    assert writer.close()
    read_there, logged_here = out.getvalue().splitlines()
    assert read_there == logged_here
    assert '"qty": "0.10"' in read_there and '"broker": null' in read_there


def test_a_replace_line_names_the_order_and_the_new_terms_left_out_as_none() -> None:
    change = ReplaceRequest(order_id="c-1", qty=Decimal("3"), client_order_id="c-1-r")
    assert _line_of(Replace(id=8, change=change)) == (
        "request",
        [
            ("kind", "Replace"),
            ("request_id", 8),
            ("order_id", "c-1"),
            ("client_order_id", "c-1-r"),
            ("qty", "3"),
            ("limit_price", None),
            ("stop_price", None),
        ],
    )


def test_a_list_line_names_the_list_and_each_leg() -> None:
    legs = [
        OrderRequest(symbol="AAPL", side="buy", qty=Decimal(1), client_order_id=coid)
        for coid in ("l-1", "l-2")
    ]
    orders = OrderListRequest(contingency="oto", legs=legs, list_id="l")
    assert _line_of(SubmitList(id=9, orders=orders)) == (
        "request",
        [
            ("kind", "SubmitList"),
            ("request_id", 9),
            ("contingency", "oto"),
            ("list_id", "l"),
            ("legs", ["l-1", "l-2"]),
        ],
    )


def test_cancel_kill_switch_and_trading_state_lines() -> None:
    assert _line_of(Cancel(id=1, order_id="c-1"))[1] == [
        ("kind", "Cancel"),
        ("request_id", 1),
        ("order_id", "c-1"),
    ]
    assert _line_of(SetKillSwitch(id=2, on=True))[1] == [
        ("kind", "SetKillSwitch"),
        ("request_id", 2),
        ("on", True),
    ]
    assert _line_of(SetTradingState(id=3, state="halted", broker="paper"))[1] == [
        ("kind", "SetTradingState"),
        ("request_id", 3),
        ("state", "halted"),
        ("broker", "paper"),
    ]


def test_a_read_writes_no_request_line() -> None:
    log = _Lines()
    Dispatcher(_AsIs(), log).decode(msgspec.msgpack.encode(GetHealth(id=4)))  # type: ignore[arg-type]
    assert log.calls == []
