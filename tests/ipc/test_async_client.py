"""``AsyncClient`` over a real socket: a lone request read by its own caller, handed over,
given up on or cut off, and a reply no client could hold."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from tests.fakes import FakeVenue
from tests.ipc.harness import ipc_service
from ult_actors.client import AsyncClient, Client, ConnectionLost
from ult_actors.messages import Order


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
