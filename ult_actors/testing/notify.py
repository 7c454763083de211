"""A stand-in for systemd's notify socket: a datagram socket the test owns.

Bound in a short directory under /tmp (``sun_path`` holds 108 bytes). Each
datagram is one sd_notify message, parsed into a dict of ``KEY=VALUE`` lines.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path
from types import TracebackType

import trio


def parse(datagram: bytes) -> dict[str, str]:
    """``b"READY=1\\nSTATUS=x\\n"`` -> ``{"READY": "1", "STATUS": "x"}``."""
    fields: dict[str, str] = {}
    for line in datagram.decode().splitlines():
        key, _, value = line.partition("=")
        fields[key] = value
    return fields


class NotifyListener:
    """Receives what a service sends to ``$NOTIFY_SOCKET``."""

    def __init__(self, abstract: bool = False) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="ultn", dir="/tmp"))
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        if abstract:
            name = f"ult-test-notify-{self._dir.name}"
            self.sock.bind(b"\0" + name.encode())
            #: The value for ``NOTIFY_SOCKET``.
            self.address = "@" + name
        else:
            path = self._dir / "notify"
            self.sock.bind(str(path))
            self.address = str(path)
        #: Every message received so far, in order.
        self.messages: list[dict[str, str]] = []
        self._unread: list[dict[str, str]] = []

    def drain(self) -> list[dict[str, str]]:
        """Messages already queued, without waiting (and without yielding to trio)."""
        got: list[dict[str, str]] = []
        while True:
            try:
                got.append(parse(self.sock.recv(4096)))
            except BlockingIOError:
                break
        self.messages.extend(got)
        self._unread.extend(got)
        return got

    async def next(self) -> dict[str, str]:
        """The next message; wrap in ``trio.fail_after``."""
        while True:
            self.drain()
            if self._unread:
                return self._unread.pop(0)
            await trio.lowlevel.wait_readable(self.sock)

    async def wait_for(self, key: str, value: str | None = None) -> dict[str, str]:
        """Skip messages until one carries ``key`` (with ``value`` if given)."""
        while True:
            msg = await self.next()
            if key in msg and (value is None or msg[key] == value):
                return msg

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> NotifyListener:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
