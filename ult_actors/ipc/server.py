"""The IPC server actor: the Unix socket every client and the ``ult`` CLI talk to.

``serve_ipc`` takes the instance lock (unless the caller already holds it),
prepares the private directory, replaces a stale socket, binds a fresh one
and accepts connections, one task each (see ``connection.py``). A peer whose
uid/gid the ``PeerPolicy`` does not allow gets one ``unauthorized`` reply and
is disconnected; so does, with ``busy``, a connection past
``max_connections``. All connections share one ``OutboxBudget`` of unsent
reply bytes. On the way out the socket file is removed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import trio

from ult_actors.config import ServiceConfig
from ult_actors.errors import ConfigError, ServiceBusy, UltError, Unauthorized
from ult_actors.ipc.connection import Connection
from ult_actors.ipc.framing import DEFAULT_MAX_FRAME_BYTES, RequestCodec
from ult_actors.ipc.gateway import Gateway
from ult_actors.ipc.outbox import OutboxBudget
from ult_actors.ipc.paths import SocketLocation, resolve_socket
from ult_actors.ipc.peercred import PeerCredentials, PeerPolicy, group_id, peer_credentials
from ult_actors.ipc.socketfile import (
    InstanceLock,
    bind_socket,
    prepare_directory,
    remove_stale_socket,
    socket_inode,
    unlink_if_ours,
)
from ult_actors.messages import ErrorReply
from ult_actors.runtime.intake import IntakeGate


@dataclass(frozen=True)
class IpcSettings:
    """Everything the server needs to know, resolved from ``[ipc]`` and the environment."""

    location: SocketLocation
    policy: PeerPolicy = field(default_factory=PeerPolicy.default)
    group_gid: int | None = None
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    subscriber_queue: int = 1024
    max_in_flight: int = 1024
    #: Unsent bytes of replies and events per connection above which the connection's
    #: requests are not read and event forwarding pauses.
    outbox_high_water: int = 1 << 20
    backlog: int = 128
    max_connections: int = 256
    #: Unsent bytes one connection may hold before it is closed for not reading.
    max_queued_bytes_per_connection: int = 16 << 20
    #: Unsent bytes of all connections together; above it no request is read.
    max_queued_bytes_total: int = 256 << 20
    #: Over the total, a connection over its high-water mark that has read nothing
    #: for this long is closed.
    stalled_s: float = 5.0

    @property
    def socket_path(self) -> Path:
        return self.location.path


def settings_from_config(config: ServiceConfig, env: dict[str, str] | None = None) -> IpcSettings:
    """The server settings of a configuration; ``ConfigError`` names a bad group or path."""
    ipc = config.ipc
    location = resolve_socket(ipc.socket or None, dict(os.environ) if env is None else env)
    gid: int | None = None
    if ipc.group:
        try:
            gid = group_id(ipc.group)
        except KeyError:
            raise ConfigError(f"{config.source}: ipc.group: no group named {ipc.group!r}") from None
    if ipc.max_frame_bytes < 1024:
        raise ConfigError(f"{config.source}: ipc.max_frame_bytes must be at least 1024")
    if ipc.subscriber_queue < 1:
        raise ConfigError(f"{config.source}: ipc.subscriber_queue must be at least 1")
    if ipc.max_queued_bytes_total < ipc.max_queued_bytes_per_connection:
        raise ConfigError(
            f"{config.source}: ipc.max_queued_bytes_total must be at least"
            " ipc.max_queued_bytes_per_connection"
        )
    gids = [*ipc.allowed_gids, *([gid] if gid is not None else [])]
    return IpcSettings(
        location=location,
        policy=PeerPolicy.default(ipc.allowed_uids, gids),
        group_gid=gid,
        max_frame_bytes=ipc.max_frame_bytes,
        subscriber_queue=ipc.subscriber_queue,
        max_connections=ipc.max_connections,
        max_queued_bytes_per_connection=ipc.max_queued_bytes_per_connection,
        max_queued_bytes_total=ipc.max_queued_bytes_total,
    )


def claim_socket_path(settings: IpcSettings) -> InstanceLock:
    """Prepare the directory and take the instance lock; ``AlreadyRunning`` if it is taken.

    ``ult serve`` calls this before starting the tree, so a second instance
    fails at once instead of after the journal and brokers are up.
    """
    location = settings.location
    prepare_directory(
        location.path.parent, dedicated=location.dedicated, group_gid=settings.group_gid
    )
    return InstanceLock.acquire(location.path)


class IpcLoad:
    """What the open connections hold together: their number and their unsent bytes.

    One per server; pass your own to ``serve_ipc`` to watch it (tests, health).
    """

    def __init__(
        self, *, max_connections: int = 256, max_queued_bytes_total: int = 256 << 20
    ) -> None:
        self.max_connections = max_connections
        self.connections = 0
        self.budget = OutboxBudget(max_queued_bytes_total)
        #: While closed, no connection reads requests: the service's journal (a gateway's
        #: ``intake``) closes it while its fold is too far behind (``runtime/intake.py``).
        self.intake = IntakeGate()
        #: Connections turned away at ``max_connections``, and closed for not reading.
        self.refused = 0
        self.dropped = 0


async def serve_ipc(
    gateway: Gateway,
    settings: IpcSettings,
    *,
    lock: InstanceLock | None = None,
    log: Any = None,
    load: IpcLoad | None = None,
    task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the socket until cancelled; ``task_status.started(path)`` once it accepts."""
    log = log if log is not None else structlog.get_logger().bind(actor="ipc")
    if load is None:
        load = IpcLoad(
            max_connections=settings.max_connections,
            max_queued_bytes_total=settings.max_queued_bytes_total,
        )
    intake = getattr(gateway, "intake", None)
    if isinstance(intake, IntakeGate):
        load.intake = intake
    own_lock = lock is None
    lock = claim_socket_path(settings) if lock is None else lock
    path = settings.socket_path
    try:
        if remove_stale_socket(path):
            log.info("replaced a stale socket", socket=str(path))
        sock = bind_socket(path, group_gid=settings.group_gid, backlog=settings.backlog)
        inode = socket_inode(path)
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        try:
            async with trio.open_nursery() as nursery:
                task_status.started(path)
                while True:
                    stream = await listener.accept()
                    nursery.start_soon(_serve_connection, stream, gateway, settings, load, log)
        finally:
            unlink_if_ours(path, inode)
            with trio.CancelScope(shield=True):
                await listener.aclose()
    finally:
        if own_lock:
            lock.release()


async def _serve_connection(
    stream: trio.SocketStream,
    gateway: Gateway,
    settings: IpcSettings,
    load: IpcLoad,
    log: Any,
) -> None:
    try:
        peer = peer_credentials(stream.socket)
    except OSError as exc:
        log.warning("cannot read peer credentials; closing", error=str(exc))
        await stream.aclose()
        return
    if not settings.policy.allows(peer):
        error: UltError = Unauthorized(
            f"uid {peer.uid} is not allowed to use this service"
            f" (allowed: {settings.policy.describe()})"
        )
        await _refuse(stream, peer, error, "refused connection", log)
        return
    if load.connections >= load.max_connections:
        load.refused += 1
        error = ServiceBusy(
            f"the service already serves {load.connections} connections, its limit"
            " (ipc.max_connections); try again later"
        )
        await _refuse(stream, peer, error, "refused connection: too many connections", log)
        return
    conn = Connection(
        stream,
        gateway,
        peer,
        log=log,
        max_frame_bytes=settings.max_frame_bytes,
        subscriber_queue=settings.subscriber_queue,
        max_in_flight=settings.max_in_flight,
        outbox_high_water=settings.outbox_high_water,
        max_queued_bytes=settings.max_queued_bytes_per_connection,
        budget=load.budget,
        stalled_s=settings.stalled_s,
        intake=load.intake,
    )
    load.connections += 1
    try:
        await conn.run()
    except Exception:
        # One connection's failure must never take the server down.
        log.exception("connection failed", peer_uid=peer.uid, peer_pid=peer.pid)
    finally:
        load.connections -= 1
        load.dropped += conn.dropped is not None


async def _refuse(
    stream: trio.SocketStream, peer: PeerCredentials, error: UltError, why: str, log: Any
) -> None:
    """Send ``error`` as the connection's only frame, log ``why``, and hang up."""
    log.warning(why, peer_uid=peer.uid, peer_gid=peer.gid, peer_pid=peer.pid, error=error.code)
    try:
        with trio.move_on_after(1.0):
            await stream.send_all(RequestCodec().encode(ErrorReply(id=0, error=error.to_info())))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await stream.aclose()
