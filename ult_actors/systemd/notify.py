"""The sd_notify protocol, spoken directly: one datagram per message to ``$NOTIFY_SOCKET``.

systemd starts a ``Type=notify`` service with ``NOTIFY_SOCKET`` set to an
``AF_UNIX`` datagram address: a path (``/run/systemd/notify``) or, with a
leading ``@``, an abstract name. A message is newline-separated
``KEY=VALUE`` lines (``READY=1``, ``STATUS=...``, ``WATCHDOG=1``,
``STOPPING=1``). Without the variable every call does nothing, so the same
code runs under systemd, in a terminal and in tests.

Watchdog: systemd sets ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``) when the unit
has ``WatchdogSec=``; the service must send ``WATCHDOG=1`` more often than
that. ``feed_watchdog`` pings at half the interval *from the trio loop*, and
only while a health check says yes, so a wedged loop or an unhealthy tree
lets systemd kill and restart the process. It sleeps on trio's clock, so
tests drive it with ``trio.testing.MockClock``.

This module knows nothing of trading; ``ult_actors.systemd.watchdog`` says what the
service reports.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog
import trio

#: The variables systemd hands us for notification; removed from our own
#: environment once read, so no child process inherits them and speaks for us.
NOTIFY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def notify_address(value: str) -> str | bytes | None:
    """The socket address in ``$NOTIFY_SOCKET``: a path, or abstract (``@`` -> NUL); None if unusable."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        # Linux abstract namespace: a leading NUL byte instead of the "@".
        return b"\0" + os.fsencode(value[1:])
    return None  # e.g. systemd's newer "vsock:" addresses; not for a local service


class Notifier:
    """Sends sd_notify messages; a no-op when there is no notify socket.

    Failures never propagate: a missing or refusing socket is logged once per
    outage and the service carries on (a supervisor that cannot reach systemd
    is still a working gateway).
    """

    def __init__(self, address: str | bytes | None, *, log: Any | None = None) -> None:
        self.address = address
        self._log: Any = log if log is not None else structlog.get_logger().bind(actor="sdnotify")
        self._sock: socket.socket | None = None
        self._failing = False
        #: Messages handed to the socket (tests and health views).
        self.sent = 0
        #: The last STATUS= text sent, for health views.
        self.last_status: str | None = None

    @property
    def enabled(self) -> bool:
        """Whether there is a notify socket to talk to."""
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send one message made of ``KEY=VALUE`` lines; True if it left."""
        if self.address is None:
            return False
        data = "\n".join(lines).encode() + b"\n"
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                # Never block the event loop on systemd: a full queue drops the message.
                self._sock.setblocking(False)
            self._sock.sendto(data, self.address)
        except OSError as exc:
            if not self._failing:
                self._failing = True
                self._log.warning(
                    "cannot notify systemd; carrying on without it",
                    error=f"{type(exc).__name__}: {exc.strerror or exc}",
                )
            return False
        if self._failing:
            self._failing = False
            self._log.info("systemd notify socket reachable again")
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: startup finished (with an optional first ``STATUS=``)."""
        return self.send("READY=1", *self._status_lines(status))

    def status(self, text: str) -> bool:
        """``STATUS=``: one line for ``systemctl status``."""
        return self.send(*self._status_lines(text))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: still alive."""
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: shutdown has begun."""
        return self.send("STOPPING=1", *self._status_lines(status))

    def _status_lines(self, text: str | None) -> list[str]:
        if text is None:
            return []
        line = " ".join(text.split())  # one line, whatever the caller passed
        self.last_status = line
        return [f"STATUS={line}"]

    def close(self) -> None:
        """Close the socket (a later send reopens it)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def notifier_from_env(env: MutableMapping[str, str], *, log: Any | None = None) -> Notifier:
    """A notifier for ``$NOTIFY_SOCKET``; removes it from ``env`` so children do not inherit it.

    Pass ``os.environ`` in the service (``subprocess`` copies it). The
    watchdog variables are left for ``watchdog_interval`` to read and remove.
    """
    raw = env.pop("NOTIFY_SOCKET", "")
    address = notify_address(raw) if raw else None
    notifier = Notifier(address, log=log)
    if raw and address is None:
        notifier._log.warning("NOTIFY_SOCKET has an unsupported address; not notifying", value=raw)
    return notifier


def watchdog_interval(
    env: MutableMapping[str, str], *, pid: int | None = None, log: Any | None = None
) -> float | None:
    """Seconds between watchdog pings (half of ``WATCHDOG_USEC``), or None when not asked for.

    Honours ``WATCHDOG_PID``: a watchdog meant for another process (our
    parent, say) is not ours to feed. Removes both variables from ``env``.
    """
    usec = env.pop("WATCHDOG_USEC", "")
    target = env.pop("WATCHDOG_PID", "")
    if not usec:
        return None
    pid = os.getpid() if pid is None else pid
    if target and target != str(pid):
        return None
    try:
        value = int(usec)
    except ValueError:
        value = 0
    if value <= 0:
        if log is not None:
            log.warning("WATCHDOG_USEC is not a positive integer; no watchdog pings", value=usec)
        return None
    return value / 2_000_000


async def feed_watchdog(
    notifier: Notifier,
    interval_s: float,
    healthy: Callable[[], bool],
    *,
    log: Any | None = None,
) -> None:
    """Send ``WATCHDOG=1`` every ``interval_s`` while ``healthy()``; runs until cancelled.

    The pings come from this task, on the trio loop: if anything blocks the
    loop, they stop and systemd's watchdog fires, which is the point. A
    wake-up far later than planned is logged, so the journal says why.
    """
    log = log if log is not None else structlog.get_logger().bind(actor="sdnotify")
    was_healthy = True
    while True:
        due = trio.current_time() + interval_s
        await trio.sleep(interval_s)
        late = trio.current_time() - due
        if late > interval_s:
            log.warning("event loop was blocked", blocked_s=round(late, 3))
        if healthy():
            notifier.watchdog()
            if not was_healthy:
                log.info("healthy again; watchdog pings resumed")
            was_healthy = True
        elif was_healthy:
            log.error("not healthy; watchdog pings withheld so systemd can restart us")
            was_healthy = False
