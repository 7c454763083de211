"""A lone request's reading and timeout, the trio way (imported only once trio runs).

The client library speaks anyio and must not load trio for a user on asyncio;
when trio does run, its own primitives cost less per request than anyio's
layers around them (a cancel scope ~25k instructions less).
"""

from __future__ import annotations

import math
import socket

import anyio
import trio


def running() -> bool:
    """True inside ``trio.run``."""
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


class TrioSocket:
    """The connection's socket, read and waited on through trio itself."""

    __slots__ = ("_sock",)

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def deadline(self, timeout: float | None) -> trio.CancelScope:
        """A cancel scope ending the wait ``timeout`` seconds from now (never if ``None``)."""
        return trio.CancelScope(
            deadline=math.inf if timeout is None else trio.current_time() + timeout
        )

    async def receive(self, size: int, *, wait_first: bool) -> bytes:
        """Up to ``size`` bytes, once there are some; empty at the connection's end.

        ``wait_first``: wait for the socket to turn readable before reading (a
        reply cannot be there right after its request went out). A socket
        closed meanwhile raises anyio's ``ClosedResourceError``, as the anyio
        stream would.
        """
        try:
            if wait_first:
                await trio.lowlevel.wait_readable(self._sock)
            while True:
                try:
                    return self._sock.recv(size)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(self._sock)
        except trio.ClosedResourceError:
            raise anyio.ClosedResourceError from None
