"""An order's fan-out (risk's and positions' folds, the subscribers' queues) runs once
its reply is written, and nothing sees the state without it.

A new order's step runs in the task of the connection that asked, which writes
the reply; the events it publishes wait for that write (``AfterReply``), so the
client reads its reply while the service folds them. They are out before the
task takes another request or yields: a positions query or a risk check after
the reply, on any connection, sees the order as before.
"""

from __future__ import annotations

import itertools
import select
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio

from tests.actors.harness import paper_service, req
from tests.ipc.rawconn import RawConnection
from ult_actors.ipc.paths import SocketLocation
from ult_actors.ipc.server import IpcSettings, serve_ipc
from ult_actors.messages import (
    ErrorReply,
    Event,
    GetPositions,
    OrderReply,
    OrderUpdate,
    PositionsReply,
    Reply,
    Submit,
)
from ult_actors.service import Service

_ids = itertools.count(1)


def _submit(qty: int) -> Submit:
    return Submit(id=next(_ids), order=req(qty=qty))


@asynccontextmanager
async def _served(
    tmp_path: Path, **risk: Any
) -> AsyncIterator[tuple[Service, list[RawConnection]]]:
    """The paper service behind its socket, with two raw connections to it."""
    async with paper_service(tmp_path, **risk) as (svc, _made):
        ipc = IpcSettings(location=SocketLocation(tmp_path / "s", dedicated=False, source="test"))
        async with trio.open_nursery() as nursery:
            path = await nursery.start(serve_ipc, svc.gateway, ipc)
            conns = [await RawConnection.open(path), await RawConnection.open(path)]
            try:
                yield svc, conns
            finally:
                for conn in conns:
                    await conn.aclose()
                nursery.cancel_scope.cancel()


async def _ask(conn: RawConnection, request: Any) -> Reply:
    with trio.fail_after(10):
        await conn.send(request)
        return await conn.receive()


async def test_an_order_s_events_are_folded_once_its_reply_is_on_the_client_s_socket(
    tmp_path: Path,
) -> None:
    async with _served(tmp_path) as (svc, (client, _other)):
        fd = client.stream.socket.fileno()
        reply_waiting: list[bool] = []

        def fold(event: Event) -> None:
            # What risk and positions do with it, seen from the client's side of the socket.
            if isinstance(event, OrderUpdate):
                reply_waiting.append(bool(select.select([fd], [], [], 0)[0]))

        svc.bus.subscribe(kinds=(OrderUpdate,)).fold_inline(fold)
        for _ in range(4):
            reply = await _ask(client, _submit(1))
            assert isinstance(reply, OrderReply) and reply.order.status == "filled"
        # The first order's task had written no reply before (a connection's task holds
        # its step's events only from its first reply on); the next ones all wait.
        assert reply_waiting[1:] == [True, True, True]
        assert svc.book.holdings[("paper", "AAPL")].qty == 4
        assert svc.risk_state.books[("paper", "AAPL")].qty == 4


async def test_a_positions_query_right_after_the_reply_sees_the_fill(tmp_path: Path) -> None:
    async with _served(tmp_path) as (_svc, (client, other)):
        for n in range(1, 4):
            assert isinstance(await _ask(client, _submit(2)), OrderReply)
            # At once, on another connection: the fill is in the book.
            positions = await _ask(other, GetPositions(id=next(_ids), broker="paper"))
            assert isinstance(positions, PositionsReply)
            assert [(p.symbol, p.qty) for p in positions.positions] == [("AAPL", Decimal(2 * n))]
        # Asked in the same read as the order, behind it: answered after it, with it.
        with trio.fail_after(10):
            await client.send(_submit(2), GetPositions(id=next(_ids), broker="paper"))
            placed, positions = await client.receive(), await client.receive()
        assert isinstance(placed, OrderReply) and placed.order.status == "filled"
        assert isinstance(positions, PositionsReply)
        assert [(p.symbol, p.qty) for p in positions.positions] == [("AAPL", Decimal(8))]


async def test_an_order_checked_right_after_another_s_reply_counts_its_fill(
    tmp_path: Path,
) -> None:
    # One open order at most: the next passes only if the last one's fill (which closed
    # it) is in risk's view when it is checked.
    async with _served(tmp_path, max_open_orders=1) as (_svc, (client, other)):
        for conn in (client, other, client, other):
            reply = await _ask(conn, _submit(1))
            assert isinstance(reply, OrderReply) and reply.order.status == "filled"
        with trio.fail_after(10):
            await client.send(_submit(1), _submit(1))
            first, second = await client.receive(), await client.receive()
        assert isinstance(first, OrderReply) and first.order.status == "filled"
        assert isinstance(second, OrderReply) and second.order.status == "filled"
        # The limit itself still holds: a resting order keeps the next one out.
        resting = await _ask(client, Submit(id=next(_ids), order=req(qty=1, limit_price="1")))
        assert isinstance(resting, OrderReply) and resting.order.status == "accepted"
        refused = await _ask(other, _submit(1))
        assert isinstance(refused, ErrorReply) and refused.error.code == "risk_rejected"
