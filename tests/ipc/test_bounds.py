"""Clients that ask and never read cost bounded memory; connections are capped.

Each test drives the real socket with a raw client that writes requests and
never reads, and watches the server's own accounting of unsent bytes
(``IpcLoad``: every byte queued for a client until the kernel takes it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from pathlib import Path

import pytest
import trio

from tests.actors.harness import paper_service
from tests.fakes import FakeVenue
from tests.ipc.harness import ipc_service, settings_for
from tests.ipc.rawconn import RawConnection
from ult_actors.client import AsyncClient, Client, ServiceBusy
from ult_actors.ipc.framing import ReplyCodec, RequestCodec
from ult_actors.ipc.server import IpcLoad, serve_ipc
from ult_actors.messages import (
    ErrorReply,
    EventMessage,
    ListOrders,
    OkReply,
    OrderReply,
    OrderRequest,
    OrdersReply,
    Ping,
    Request,
    Submit,
    Subscribe,
    SubscriptionDropped,
)

KIB = 1 << 10
MIB = 1 << 20


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait until ``condition()`` holds (the server's counters have no events to wait on)."""
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.005)


async def place_orders(path: Path, n: int) -> None:
    async with AsyncClient(path) as client:
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(client.submit, "AAPL", "buy", 1)
        assert len(await client.orders(limit=n)) == n


def frames(requests: list[Request]) -> bytes:
    codec = ReplyCodec()
    return b"".join(codec.encode(r) for r in requests)


async def test_a_client_asking_for_order_lists_and_never_reading_is_closed_at_its_cap(
    sock_dir: Path,
) -> None:
    load = IpcLoad()
    cap = 4 * MIB
    async with ipc_service(
        sock_dir, load=load, outbox_high_water=256 * KIB, max_queued_bytes_per_connection=cap
    ) as (_svc, path):
        await place_orders(path, 300)
        async with AsyncClient(path) as client:
            listed = OrdersReply(id=1, orders=await client.orders(limit=1000))
        reply_size = len(RequestCodec().encode(listed))
        assert reply_size > 50 * KIB
        # The probe: 207 KiB of list_orders requests, written without reading.
        one = len(frames([ListOrders(id=1, limit=1000)]))
        attack = frames([ListOrders(id=i, limit=1000) for i in range(1, 207 * KIB // one)])
        hostile = await trio.open_unix_socket(str(path))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_send_ignoring_reset, hostile, attack)
            await until(lambda: load.dropped == 1)
            await until(lambda: load.connections == 0 and load.budget.queued == 0)
        # At most the cap plus the reply that crossed it was ever held for it.
        assert load.budget.peak <= cap + reply_size
        async with AsyncClient(path) as client:
            await client.ping()  # everyone else is still served
        await hostile.aclose()


async def _send_ignoring_reset(stream: trio.SocketStream, data: bytes) -> None:
    with contextlib.suppress(trio.BrokenResourceError):  # the server closed us: expected
        await stream.send_all(data)


async def test_submits_never_read_stop_the_reading_at_the_high_water_mark(
    sock_dir: Path,
) -> None:
    load = IpcLoad()
    venue = FakeVenue()
    n = 5_000
    async with ipc_service(
        sock_dir, venue, load=load, outbox_high_water=64 * KIB, max_in_flight=64
    ) as (_svc, path):
        raw = await RawConnection.open(path)
        orders = [
            Submit(
                id=i,
                order=OrderRequest(
                    symbol="AAPL", side="buy", qty=Decimal(1), client_order_id=f"quiet-{i}"
                ),
            )
            for i in range(1, n + 1)
        ]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(raw.send, *orders)
            # The server stops reading once the unread replies pass 64 KiB: far fewer
            # orders are placed than were sent, until the client reads.
            await until(lambda: load.budget.paused_readers == 1)
            assert venue.submits < n
            replies = [await raw.receive() for _ in range(n)]  # now read them all
        assert {r.id for r in replies} == set(range(1, n + 1)) and venue.submits == n
        largest = max(len(RequestCodec().encode(r)) for r in replies)
        # The high-water mark, plus the replies of the 64 requests in flight when it was
        # crossed, is all it ever held.
        assert load.budget.peak <= 64 * KIB + 65 * largest
        assert load.dropped == 0
        await raw.aclose()


async def test_one_connection_past_the_limit_is_refused_with_busy(sock_dir: Path) -> None:
    load = IpcLoad(max_connections=3)
    async with ipc_service(sock_dir, load=load) as (_svc, path):
        held = [await RawConnection.open(path) for _ in range(3)]
        for i, conn in enumerate(held, 1):
            await conn.send(Ping(id=i))
            assert isinstance(await conn.receive(), OkReply)
        extra = await RawConnection.open(path)
        refused = await extra.receive()
        assert isinstance(refused, ErrorReply) and refused.id == 0
        assert refused.error.code == "busy" and "ipc.max_connections" in refused.error.message
        assert await extra.at_eof()
        async with AsyncClient(path) as client:
            with pytest.raises(ServiceBusy):
                await client.ping()
        with pytest.raises(ServiceBusy):
            await trio.to_thread.run_sync(blocking_ping, path)
        assert load.refused == 3
        await held[0].aclose()
        await until(lambda: load.connections == 2)
        async with AsyncClient(path) as client:
            await client.ping()  # a place came free
        for conn in held[1:]:
            await conn.aclose()


def blocking_ping(path: Path) -> None:
    with Client(path) as client:
        client.ping()


async def test_a_subscriber_that_never_reads_is_bounded_then_closed(sock_dir: Path) -> None:
    load = IpcLoad()
    async with ipc_service(
        sock_dir, load=load, outbox_high_water=16 * KIB, subscriber_queue=512, stalled_s=0.5
    ) as (_svc, path):
        silent = await RawConnection.open(path)
        await silent.send(Subscribe(id=1, topics=["orders"]))
        assert isinstance(await silent.receive(), OkReply)
        # ~3,000 order updates for a subscriber that never reads: more than the kernel's
        # socket buffer, its high-water mark and its queue together.
        await place_orders(path, 1_000)
        # Its events stop at the high-water mark; it reads nothing for 0.5 s, so the
        # connection is closed and what it held is let go.
        await until(lambda: load.dropped == 1)
        await until(lambda: load.connections == 0 and load.budget.queued == 0)
        received = []
        with contextlib.suppress(AssertionError):  # the server closed: stop at EOF
            while True:
                received.append(type(await silent.receive()))
        assert set(received) <= {EventMessage, SubscriptionDropped} and len(received) < 3_000
        await silent.aclose()


async def test_silent_subscribers_over_the_total_budget_are_closed(sock_dir: Path) -> None:
    # Each silent subscriber stays under its own high-water mark's worth, but together
    # they pass the total: the ones holding over their mark are closed, logged.
    load = IpcLoad(max_queued_bytes_total=64 * KIB)
    async with ipc_service(
        sock_dir, load=load, outbox_high_water=16 * KIB, subscriber_queue=10_000, stalled_s=0.5
    ) as (_svc, path):
        silent = [await RawConnection.open(path) for _ in range(8)]
        for conn in silent:
            await conn.send(Subscribe(id=1, topics=["orders"]))
            assert isinstance(await conn.receive(), OkReply)
        # ~3,000 order updates each: more than the kernel's socket buffer and the
        # high-water mark (events reach a subscriber in batches, so few large writes).
        await place_orders(path, 1_000)
        await until(lambda: load.dropped >= 1)
        async with AsyncClient(path) as client:
            await client.ping()  # reading resumed for the others
        assert load.budget.queued <= 64 * KIB
        for conn in silent:
            await conn.aclose()


async def test_the_refusal_is_the_error_raised_even_when_the_first_send_fails(
    sock_dir: Path,
) -> None:
    # The server refuses and hangs up before the client sends anything, so the
    # client's send fails (EPIPE); the error it raises must still be the refusal.
    path = sock_dir / "refusing.sock"
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen(8)
    listener = trio.SocketListener(sock)
    refusal = RequestCodec().encode(ErrorReply(id=0, error=ServiceBusy("too many").to_info()))

    async def refuse_one(hung_up: trio.Event) -> None:
        stream = await listener.accept()
        await stream.send_all(refusal)
        await stream.aclose()
        hung_up.set()

    def blocking_ping_after(hung_up: trio.Event) -> None:
        with Client(path) as client:
            trio.from_thread.run(hung_up.wait)
            client.ping()

    async with trio.open_nursery() as nursery:
        hung_up = trio.Event()
        nursery.start_soon(refuse_one, hung_up)
        with pytest.raises(ServiceBusy):
            await trio.to_thread.run_sync(blocking_ping_after, hung_up)
    async with trio.open_nursery() as nursery:
        hung_up = trio.Event()
        nursery.start_soon(refuse_one, hung_up)
        async with AsyncClient(path) as client:
            await hung_up.wait()
            with pytest.raises(ServiceBusy):
                await client.ping()
    await listener.aclose()


async def test_a_connection_closed_for_not_reading_places_none_of_the_orders_read_after(
    tmp_path: Path,
) -> None:
    # The paper venue: each order is answered without a wait, so a whole read of them is
    # answered in one step, with no checkpoint between two orders to be cancelled at.
    load = IpcLoad()
    cap = 4 * KIB
    n = 200
    coids = [f"unread-{i}" for i in range(n)]
    orders = [
        Submit(
            id=i + 1,
            order=OrderRequest(symbol="AAPL", side="buy", qty=Decimal(1), client_order_id=coid),
        )
        for i, coid in enumerate(coids)
    ]
    settings = settings_for(
        tmp_path / "s", max_queued_bytes_per_connection=cap, outbox_high_water=cap
    )
    async with paper_service(tmp_path) as (svc, _made), trio.open_nursery() as nursery:
        path = await nursery.start(partial(serve_ipc, load=load), svc.gateway, settings)
        hostile = await trio.open_unix_socket(str(path))
        await hostile.send_all(frames(list(orders)))  # one write: one read of 200 orders
        await until(lambda: load.dropped == 1)
        await until(lambda: load.connections == 0)
        store = await svc.journal.get()
        placed = [coid for coid in coids if await store.get(coid) is not None]
        # Placed: the orders answered until their unread replies crossed the cap, in the
        # order sent; none of those read with them and not begun before the close.
        assert placed == coids[: len(placed)]
        first = await store.get(coids[0])
        assert first is not None
        reply_size = len(RequestCodec().encode(OrderReply(id=1, order=first)))
        assert 0 < len(placed) <= cap // reply_size + 1 < n
        await hostile.aclose()
        nursery.cancel_scope.cancel()
