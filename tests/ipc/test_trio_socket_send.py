"""The async client's trio socket sends every byte once, in order, through a full socket."""

from __future__ import annotations

import socket

import trio

from ult_actors.client._trio_socket import TrioSocket


async def test_send_all_through_a_socket_that_fills_sends_each_byte_once_in_order() -> None:
    sender, receiver = socket.socketpair()
    with sender, receiver:
        sender.setblocking(False)
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        data = bytes(range(256)) * 1200  # far more than the send buffer: partial sends
        received = bytearray()

        async def read_all() -> None:
            stream = trio.socket.from_stdlib_socket(receiver)
            while len(received) < len(data):
                chunk = await stream.recv(1000)
                if not chunk:
                    return
                received.extend(chunk)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_all)
                await TrioSocket(sender).send_all(data)
                sender.shutdown(socket.SHUT_WR)
        assert bytes(received) == data
