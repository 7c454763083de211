"""Hostile numbers over the real socket: each is answered ``invalid_order`` naming its
field, and no actor crashes (the tree shows no restart afterwards)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.ipc.harness import ipc_service
from tests.ipc.rawconn import RawConnection
from ult_actors.messages import (
    Cancel,
    ErrorReply,
    GetHealth,
    GetOrder,
    HealthReply,
    ListOrders,
    OrderReply,
    OrderRequest,
    OrdersReply,
    Request,
    Submit,
)

# Decimal text the wire may carry (msgspec decodes any of it into a Decimal).
HOSTILE = ["1e999999999", "1E-999999999", "1e1", "0.0000000001", "NaN", "sNaN", "-0",
           "Infinity", "-Infinity", "1000000000000", "-5", "0E+5"]  # fmt: skip

FIELDS: dict[str, dict[str, Any]] = {
    "qty": {},
    "limit_price": {"type": "limit", "qty": Decimal(1)},
    "stop_price": {"type": "stop", "qty": Decimal(1)},
}


def _order(field: str, text: str) -> OrderRequest:
    fields: dict[str, Any] = {"qty": Decimal(1), **FIELDS[field], field: Decimal(text)}
    return OrderRequest(symbol="AAPL", side="buy", **fields)


async def _restarts(conn: RawConnection) -> dict[str, int]:
    await conn.send(GetHealth(id=999))
    reply = await conn.receive()
    assert isinstance(reply, HealthReply)
    return {a.name: a.restarts for a in reply.health.actors}


@pytest.mark.parametrize("field", sorted(FIELDS))
async def test_hostile_decimals_are_refused_naming_the_field(sock_dir: Path, field: str) -> None:
    async with ipc_service(sock_dir) as (_svc, path):
        conn = await RawConnection.open(path)
        with trio.fail_after(20):
            for i, text in enumerate(HOSTILE, start=1):
                # Twice each: the second would exceed the root's intensity if it crashed.
                for _ in range(2):
                    await conn.send(Submit(id=i, order=_order(field, text)))
                    reply = await conn.receive()
                    assert isinstance(reply, ErrorReply), (text, reply)
                    assert reply.error.code == "invalid_order", (text, reply.error)
                    assert reply.error.field == field, (text, reply.error)
            assert set((await _restarts(conn)).values()) == {0}
            await conn.send(Submit(id=100, order=_order(field, "1.5")))
            assert isinstance(await conn.receive(), OrderReply)
        await conn.aclose()


async def test_nine_decimal_places_are_accepted(sock_dir: Path) -> None:
    async with ipc_service(sock_dir) as (_svc, path):
        conn = await RawConnection.open(path)
        with trio.fail_after(10):
            order = OrderRequest(symbol="BTC/USD", side="buy", qty=Decimal("0.000000001"),
                                 type="limit", limit_price=Decimal("999999999999.123456789"))  # fmt: skip
            await conn.send(Submit(id=1, order=order))
            reply = await conn.receive()
            assert isinstance(reply, OrderReply), reply
            assert reply.order.qty == Decimal("0.000000001")
        await conn.aclose()


async def test_out_of_range_query_and_cancel_fields_are_refused_naming_them(
    sock_dir: Path,
) -> None:
    async with ipc_service(sock_dir) as (_svc, path):
        conn = await RawConnection.open(path)
        with trio.fail_after(20):
            await conn.send(Submit(id=1, order=_order("qty", "2")))
            assert isinstance(await conn.receive(), OrderReply)
            bad: list[tuple[Request, str]] = [
                (ListOrders(id=2, limit=-1), "$.limit"),  # SQLite reads LIMIT -1 as no limit
                (ListOrders(id=3, limit=0), "$.limit"),
                (ListOrders(id=4, limit=2**64 - 1), "$.limit"),
                (GetOrder(id=5, order_id=""), "$.order_id"),
                (GetOrder(id=6, order_id="x" * 100_000), "$.order_id"),
                (Cancel(id=7, order_id="y" * 100_000), "$.order_id"),
            ]
            for request, where in bad:
                await conn.send(request)
                reply = await conn.receive()
                assert isinstance(reply, ErrorReply), (request, reply)
                assert (reply.id, reply.error.code) == (request.id, "bad_request"), reply
                assert where in reply.error.message and len(reply.error.message) < 200
            await conn.send(ListOrders(id=8, limit=1))
            listed = await conn.receive()
            assert isinstance(listed, OrdersReply) and len(listed.orders) == 1
            assert set((await _restarts(conn)).values()) == {0}
        await conn.aclose()
