"""``ult serve`` with the journal on PostgreSQL: the service runs only while this instance
holds its cluster's lease.

The socket is served for the process's whole life through a ``RoleGateway``,
so ``ult health`` reaches a standby too. On winning the lease the whole
service is built and started with its journal fenced by the lease's epoch;
the broker actors reconcile with their brokers before the gate lets an
order through, and only once every actor is up does the socket hand
requests to it. On losing the lease it is cancelled at once.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import structlog
import trio

from ult_actors.cli.serve import STOP_SIGNALS, stop_on_signal
from ult_actors.cluster.gateway import RoleGateway
from ult_actors.cluster.member import ClusterMember, default_instance_name
from ult_actors.collector import release_frozen, settle_after_start
from ult_actors.config import ServiceConfig
from ult_actors.journal.postgres import Fence, postgres_store_opener
from ult_actors.nats import nats_children
from ult_actors.service import build_service


def member_for(cfg: ServiceConfig) -> ClusterMember:
    """This instance's membership in ``[cluster] name``, by ``journal.url``'s lease."""
    cluster = cfg.cluster
    return ClusterMember(
        cfg.journal.url,
        cluster.name,
        cluster.instance or default_instance_name(),
        lease_s=cluster.lease_s,
    )


async def run_cluster_instance(
    cfg: ServiceConfig,
    *,
    log_lines_dropped: Callable[[], int] = lambda: 0,
    task_status: trio.TaskStatus[ClusterMember] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the socket and run the service whenever this instance is active; until
    SIGTERM/SIGINT (then the lease is released, so a standby takes over at once)."""
    from ult_actors.ipc.server import claim_socket_path, serve_ipc, settings_from_config

    log: Any = structlog.get_logger().bind(actor="ult")
    member = member_for(cfg)
    gateway = RoleGateway(member.health)
    settings = settings_from_config(cfg)
    lock = claim_socket_path(settings)

    async def serve_active(fence: Fence) -> None:
        opener = postgres_store_opener(
            cfg.journal.url, fence=fence, sync_interval_s=cfg.journal.sync_interval_ms / 1000
        )
        # NATS is served by the active only: a standby's requests would find no service.
        service = build_service(
            cfg, store_opener=opener, extra_children=nats_children(cfg), lease=member.lease
        )
        service.cluster_health = member.health
        service.log_lines_dropped = log_lines_dropped
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            gateway.activate(service.gateway)
            log.info("service ready: active", cluster=member.name, epoch=fence.epoch)
            settle_after_start()
            try:
                await trio.sleep_forever()
            finally:
                gateway.deactivate()  # not one more request reaches it
                release_frozen()  # this service's objects become garbage now

    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_on_signal, signals, nursery.cancel_scope, log)
            await nursery.start(partial(serve_ipc, lock=lock, log=log), gateway, settings)
            log.info("ipc listening", socket=str(settings.socket_path), instance=member.instance)
            nursery.start_soon(_report_to_systemd, member, log)
            task_status.started(member)
            await member.run(serve_active)
            nursery.cancel_scope.cancel()


async def _report_to_systemd(member: ClusterMember, log: Any) -> None:
    """READY once the socket answers (a standby is a running instance too), STATUS with the
    role when it changes, watchdog pings from this loop; STOPPING when cancelled."""
    import os

    from ult_actors.systemd.notify import feed_watchdog, notifier_from_env, watchdog_interval

    notifier = notifier_from_env(os.environ, log=log)
    watchdog_s = watchdog_interval(os.environ, log=log)
    last = _status(member)
    notifier.ready(last)
    try:
        async with trio.open_nursery() as nursery:
            if watchdog_s is not None:
                notifier.watchdog()
                nursery.start_soon(partial(feed_watchdog, notifier, watchdog_s, lambda: True))
            while True:
                await trio.sleep(1.0)
                if (line := _status(member)) != last:
                    notifier.status(line)
                    last = line
    finally:
        notifier.stopping()
        notifier.close()


def _status(member: ClusterMember) -> str:
    cluster = member.health()
    if cluster.role == "active":
        return f"cluster {cluster.name}: active (epoch {cluster.epoch})"
    return f"cluster {cluster.name}: standby; active: {cluster.active or 'none known'}"
