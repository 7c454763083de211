"""The connection's socket and its requests' deadlines, the trio way (imported only once
trio runs).

The client library speaks anyio and must not load trio for a user on asyncio;
when trio does run, its own primitives cost less per request than anyio's
layers around them. Above all, no cancel scope per request: one task keeps
the connection's deadlines (one scope, moved only to an earlier deadline),
and a request past its deadline is settled by that task, which wakes the
caller reading the socket for itself with ``notify_closing`` (trio has no
wait on a socket that also ends at a time). A scope entered and left per
request was ~30 % of a lone request's instructions.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Awaitable, Callable

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
    """The connection's socket, read, written and waited on through trio itself, and
    the clock its requests' deadlines are kept by (``keep_time``)."""

    __slots__ = ("_next", "_scope", "_sock", "_wakes")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        #: How many times ``wake`` ended a wait on the socket (a wait that ends with
        #: ``ClosedResourceError`` while this did not move saw the socket closed).
        self._wakes = 0
        #: The deadline ``keep_time`` sleeps until (its scope's), kept here as a float:
        #: a request compares against it, and moves the scope only to an earlier one.
        self._next = math.inf
        self._scope = trio.CancelScope()

    @staticmethod
    def deadline(timeout: float) -> float:
        """The clock's time ``timeout`` seconds from now."""
        return trio.current_time() + timeout

    def watch(self, deadline: float) -> None:
        """Have ``keep_time`` run its ``expire`` no later than ``deadline``."""
        if deadline < self._next:
            self._next = self._scope.deadline = deadline

    async def keep_time(self, expire: Callable[[float], float]) -> None:
        """Each time the clock reaches the earliest watched deadline, ``expire(now)``;
        it returns the next deadline to watch (``inf``: none)."""
        while True:
            with self._scope:
                await trio.sleep_forever()
            # No checkpoint from here to the next scope: no ``watch`` falls in between.
            self._next = expire(trio.current_time())
            self._scope = trio.CancelScope(deadline=self._next)

    def wake(self) -> None:
        """End the wait of whoever waits on the socket; it goes on as if it found nothing."""
        self._wakes += 1
        trio.lowlevel.notify_closing(self._sock)

    async def receive(self, size: int, *, wait_first: bool) -> bytes | None:
        """Up to ``size`` bytes, once there are some; empty at the connection's end;
        ``None`` if ``wake`` ended the wait first.

        ``wait_first``: wait for the socket to turn readable before reading (a
        reply cannot be there right after its request went out). A socket
        closed meanwhile raises anyio's ``ClosedResourceError``, as the anyio
        stream would.
        """
        if wait_first and not await self._wait(trio.lowlevel.wait_readable):
            return None
        while True:
            try:
                return self._sock.recv(size)
            except BlockingIOError:
                if not await self._wait(trio.lowlevel.wait_readable):
                    return None

    async def send_all(self, data: bytes) -> None:
        """Send all of ``data`` (a wait for room that ``wake`` ends is waited again)."""
        view = memoryview(data)
        while view:
            try:
                # Two statements: compiled by mypyc, ``view = view[send(view):]`` sent
                # some bytes twice and never ended (tests/client: the sendall test).
                sent = self._sock.send(view)
                view = view[sent:]
            except BlockingIOError:
                await self._wait(trio.lowlevel.wait_writable)

    async def _wait(self, wait: Callable[[socket.socket], Awaitable[None]]) -> bool:
        """``wait`` on the socket: True once it is ready, False if ``wake`` ended it."""
        wakes = self._wakes
        try:
            await wait(self._sock)
        except trio.ClosedResourceError:
            if self._wakes == wakes:
                raise anyio.ClosedResourceError from None
            return False
        return True
