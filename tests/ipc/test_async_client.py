"""``AsyncClient`` over a real socket: a lone request read by its own caller, handed over,
given up on, timed out or cut off, a reply in pieces, and a reply no client could hold."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.fakes import FakeVenue
from tests.ipc.harness import ipc_service
from ult_actors.client import AsyncClient, Client, ConnectionLost, OutcomeUnknown
from ult_actors.ipc.framing import FrameReader, RequestCodec
from ult_actors.messages import OkReply, Order, OrderReply, Request, Submit

#: How a scripted server answers one request: the reply frame's bytes go to ``send``
#: (in as many pieces as it likes), or nothing at all.
Answer = Callable[[Request, bytes, Callable[[bytes], Awaitable[None]]], Awaitable[None]]


@asynccontextmanager
async def scripted_server(path: Path, answer: Answer) -> AsyncIterator[None]:
    """A server on ``path`` that hands every request, with its encoded reply (an
    ``OrderReply`` for a submit, else ``OkReply``), to ``answer``."""
    codec = RequestCodec()

    def reply_to(request: Request) -> bytes:
        if isinstance(request, Submit):
            order = Order(
                id="o-1", client_order_id=request.order.client_order_id, broker="paper",
                symbol=request.order.symbol, side=request.order.side, qty=request.order.qty,
                type="market", time_in_force="day", status="accepted",
                created_at=1, updated_at=1,
            )  # fmt: skip
            return codec.encode(OrderReply(id=request.id, order=order))
        return codec.encode(OkReply(id=request.id))

    async def serve(stream: trio.SocketStream) -> None:
        frames = FrameReader()
        async with stream:
            while data := await stream.receive_some(1 << 16):
                for payload in frames.feed(data):
                    request = codec.decode(payload)
                    await answer(request, reply_to(request), stream.send_all)

    sock = trio.socket.socket(trio.socket.AF_UNIX)
    await sock.bind(str(path))
    sock.listen()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, serve, [trio.SocketListener(sock)])
        yield
        nursery.cancel_scope.cancel()


async def test_a_lone_request_given_up_on_leaves_the_connection_usable(sock_dir: Path) -> None:
    venue = FakeVenue()
    venue.submit_gate = trio.Event()  # the broker holds the submit
    async with ipc_service(sock_dir, venue) as (_svc, path), AsyncClient(path) as client:
        with trio.fail_after(10):
            with trio.CancelScope() as given_up:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(client.submit, "AAPL", "buy", 1)
                    await trio.testing.wait_all_tasks_blocked()  # reading its own reply
                    given_up.cancel()
            await client.ping()
            venue.submit_gate.set()
            # The service still answers the abandoned submit: the next requests read
            # that reply (matched to no one) and their own.
            while client.unmatched_replies == 0:
                await client.ping()
            assert client.unmatched_replies == 1
            placed = await client.orders()
    assert [o.status for o in placed] == ["filled"]


async def test_others_waiting_get_their_replies_when_the_request_reading_for_them_is_given_up(
    sock_dir: Path,
) -> None:
    venue = FakeVenue()
    venue.submit_gate = trio.Event()
    async with ipc_service(sock_dir, venue) as (_svc, path), AsyncClient(path) as client:
        answered: list[Order] = []
        first, second = trio.CancelScope(), trio.CancelScope()

        async def submit(coid: str, scope: trio.CancelScope) -> None:
            with scope:
                answered.append(await client.submit("AAPL", "buy", 1, client_order_id=coid))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(submit, "first", first)  # alone: it reads the socket
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(submit, "second", second)  # waits for the first to read
                await trio.testing.wait_all_tasks_blocked()
                first.cancel()
                await trio.testing.wait_all_tasks_blocked()
                venue.submit_gate.set()
        assert [o.client_order_id for o in answered] == ["second"]
        assert answered[0].status == "filled"


async def test_a_reply_larger_than_the_client_takes_ends_the_connection_with_connection_lost(
    sock_dir: Path,
) -> None:
    path = sock_dir / "huge.sock"

    async def answer_hugely(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(1 << 16)
            await stream.send_all((1 << 31).to_bytes(4, "big"))  # a 2 GiB reply follows
            await trio.sleep_forever()

    sock = trio.socket.socket(trio.socket.AF_UNIX)
    await sock.bind(str(path))
    sock.listen()
    listener = trio.SocketListener(sock)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, answer_hugely, [listener])
        with trio.fail_after(10):
            async with AsyncClient(path) as client:
                with pytest.raises(ConnectionLost, match="exceeds the limit") as info:
                    await client.ping()
                with pytest.raises(ConnectionLost) as again:
                    await client.ping()
                assert again.value is info.value
            await trio.to_thread.run_sync(blocking_ping_refused, path)
        nursery.cancel_scope.cancel()


def blocking_ping_refused(path: Path) -> None:
    with Client(path, timeout=10) as client, pytest.raises(ConnectionLost, match="exceeds"):
        client.ping()


async def test_a_lone_submit_unanswered_in_time_raises_outcome_unknown_and_the_connection_goes_on(
    sock_dir: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def hold_submits(
        request: Request, reply: bytes, send: Callable[[bytes], Awaitable[None]]
    ) -> None:
        if not isinstance(request, Submit):
            await send(reply)

    path = sock_dir / "slow.sock"
    async with scripted_server(path, hold_submits), AsyncClient(path, timeout=5) as client:
        with trio.fail_after(60):
            started = trio.current_time()
            with pytest.raises(OutcomeUnknown) as info:
                await client.submit("AAPL", "buy", 1, client_order_id="held-1")
            assert trio.current_time() - started == pytest.approx(5)
            assert info.value.client_order_id == "held-1"
            await client.ping()  # the connection is still good


async def test_a_reply_arriving_in_pieces_is_read_whole_by_a_lone_request(sock_dir: Path) -> None:
    async def in_three_pieces(
        request: Request, reply: bytes, send: Callable[[bytes], Awaitable[None]]
    ) -> None:
        for piece in (reply[:3], reply[3:40], reply[40:]):  # the header itself split
            await send(piece)
            await trio.testing.wait_all_tasks_blocked()  # the client waits for the rest

    path = sock_dir / "pieces.sock"
    async with scripted_server(path, in_three_pieces), AsyncClient(path) as client:
        with trio.fail_after(10):
            order = await client.submit("AAPL", "buy", "2.5", client_order_id="in-pieces")
            await client.ping()
    assert (order.client_order_id, order.qty) == ("in-pieces", Decimal("2.5"))
