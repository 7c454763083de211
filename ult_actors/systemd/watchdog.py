"""What a running service tells systemd: READY, a one-line STATUS, watchdog pings, STOPPING.

``report_to_systemd`` is started by ``ult serve`` once ``Service.run`` has
reported started, which is after every actor is up and each broker actor has
reconciled its unfinished orders; so ``READY=1`` means "orders can flow". It
then keeps ``STATUS=`` current (sent only when the line changes) and feeds
the watchdog while the root supervisor is running. Cancelling it (SIGTERM,
or the tree failing) sends ``STOPPING=1``.
"""

from __future__ import annotations

from typing import Any

import structlog
import trio

from ult_actors.service import Service
from ult_actors.systemd.notify import Notifier, feed_watchdog

#: How often the STATUS line is recomputed (it is sent only when it changes).
STATUS_EVERY_S = 2.0


def status_line(service: Service) -> str:
    """One line for ``systemctl status``: brokers up/down, open orders, trading state."""
    brokers = [h for h in service.root.snapshot() if h.parent == "brokers"]
    up = sum(1 for h in brokers if h.state == "running")
    down = [h.name.removeprefix("broker.") for h in brokers if h.state != "running"]
    text = f"brokers {up}/{len(brokers)} up"
    if down:
        text += f" (down: {', '.join(down)})"
    opened = len(service.risk_state.open_orders)
    text += f"; {opened} open order{'' if opened == 1 else 's'}; trading {service.trading_state}"
    # A broker's own state may be stricter than the global one (a missed position report).
    stricter = [
        f"{name} {setting.state}"
        for name, setting in service.broker_trading().items()
        if setting.state != service.trading_state
    ]
    if stricter:
        text += f" ({', '.join(stricter)})"
    if service.journal.unavailable is not None:
        text += f"; journal unavailable ({service.journal.unavailable}): new orders refused"
    degraded = service.degraded()
    if degraded:
        text += f"; DEGRADED: {'; '.join(degraded)}"
    return text


def root_healthy(service: Service) -> bool:
    """Whether the root supervisor says the tree is running (the watchdog's condition)."""
    return service.root.health.state == "running"


async def report_to_systemd(
    service: Service,
    notifier: Notifier,
    watchdog_s: float | None,
    *,
    status_every_s: float = STATUS_EVERY_S,
) -> None:
    """Send READY, then STATUS on change and watchdog pings, until cancelled; STOPPING at the end."""
    log: Any = structlog.get_logger().bind(actor="sdnotify")
    last = status_line(service)
    notifier.ready(last)
    if watchdog_s is not None:
        notifier.watchdog()
    try:
        async with trio.open_nursery() as nursery:
            if watchdog_s is not None:
                nursery.start_soon(
                    lambda: feed_watchdog(notifier, watchdog_s, lambda: root_healthy(service), log=log)
                )
            while True:
                await trio.sleep(status_every_s)
                line = status_line(service)
                if line != last:
                    notifier.status(line)
                    last = line
    finally:
        notifier.stopping("stopping")
        notifier.close()
