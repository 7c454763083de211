"""The NATS side of the service as one child of the actor tree, after the socket.

``serve_nats`` connects (again and again until NATS answers: a NATS that is
down never stops the service, whose socket serves meanwhile), makes sure the
events stream exists, then answers commands and publishes events until
cancelled; nats-py reconnects by itself after that. Everything nats-py does
runs on the child's own ``LoopThread``, stopped with the child. What the
connection is doing is kept in a ``NatsStatus`` for the service's health.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
import trio
from nats.aio.client import Client as NatsConnection

from ult_actors.config import NatsSection
from ult_actors.ipc.dispatch import Dispatcher
from ult_actors.ipc.gateway import Gateway
from ult_actors.nats.bridge import LoopThread
from ult_actors.nats.commands import CommandServer
from ult_actors.nats.connection import NatsSettings, open_connection
from ult_actors.nats.events import EventPublisher, ensure_stream
from ult_actors.nats.status import NatsStatus
from ult_actors.nats.subjects import Subjects
from ult_actors.runtime.actor import ActorContext
from ult_actors.runtime.supervisor import ChildSpec

if TYPE_CHECKING:
    from ult_actors.service import ExtraChild, Service

T = TypeVar("T")

#: How long the tree's start waits for NATS before it goes on without it.
_FIRST_CONNECT_WAIT_S = 2.0
#: The longest wait between two attempts to reach NATS.
_MAX_RETRY_S = 5.0


def nats_child(settings: NatsSettings, section: NatsSection) -> ExtraChild:
    """The tree's ``nats`` child for these settings (see ``build_service``'s extra children)."""

    def make(service: Service) -> ChildSpec:
        status = NatsStatus(settings.url)
        service.nats_health = status.health

        async def start(ctx: ActorContext[Any]) -> None:
            serving = trio.Event()

            async def serve() -> None:
                async with trio.open_nursery() as inner:
                    await inner.start(
                        partial(serve_nats, log=ctx.log, status=status),
                        service.gateway,
                        settings,
                        section,
                    )
                    serving.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve)
                # A reachable NATS answers well within this; past it the service is
                # ready without NATS (the socket serves) and this child keeps trying.
                with trio.move_on_after(_FIRST_CONNECT_WAIT_S):
                    await serving.wait()
                ctx.started()

        return ChildSpec(id="nats", start=start)

    return make


async def serve_nats(
    gateway: Gateway,
    settings: NatsSettings,
    section: NatsSection,
    *,
    log: Any = None,
    status: NatsStatus | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``gateway`` over NATS until cancelled; ``started`` once commands are answered.
    ``status`` follows the connection and the publisher, for health."""
    log = (log if log is not None else structlog.get_logger()).bind(actor="nats")
    status = status if status is not None else NatsStatus(settings.url)
    status.entered("connecting")
    subjects = Subjects(settings.cluster)
    loop = LoopThread(f"ult-nats-{settings.cluster}").start()
    nc: NatsConnection | None = None
    try:
        nc = await _connect(loop, settings, log, status)
        status.entered("connected")
        js = nc.jetstream()
        await _until_done(
            loop,
            lambda: ensure_stream(
                js,
                subjects,
                max_age_s=section.events_max_age_s,
                max_bytes=section.events_max_bytes,
            ),
            log,
            "cannot create the events stream",
            status,
        )
        commands = CommandServer(
            nc,
            loop,
            Dispatcher(gateway, log),
            subjects,
            max_in_flight=section.max_in_flight,
            log=log,
        )
        publisher = EventPublisher(gateway, js, loop, subjects, queue=section.event_queue, log=log)
        status.publisher = publisher
        async with trio.open_nursery() as nursery:
            await nursery.start(commands.run)
            nursery.start_soon(publisher.run)
            log.info(
                "nats serving",
                url=status.url,
                commands=subjects.commands,
                events=subjects.all_events,
                stream=subjects.stream,
            )
            task_status.started()
    finally:
        with trio.CancelScope(shield=True):
            if nc is not None:
                with trio.move_on_after(2.0), contextlib.suppress(Exception):
                    await loop.run(nc.close())  # best effort: the thread stops next
            await trio.to_thread.run_sync(loop.stop)


async def _connect(
    loop: LoopThread, settings: NatsSettings, log: Any, status: NatsStatus
) -> NatsConnection:
    async def error_cb(exc: Exception) -> None:
        log.warning("nats error", error=status.failed(exc))

    async def disconnected() -> None:
        status.entered("reconnecting")
        log.warning("nats disconnected; reconnecting", url=status.url)

    async def reconnected() -> None:
        status.entered("connected")
        log.info("nats reconnected", url=status.url)

    return await _until_done(
        loop,
        lambda: open_connection(
            settings,
            error_cb=error_cb,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
        ),
        log,
        f"cannot reach NATS at {status.url}",
        status,
    )


async def _until_done(
    loop: LoopThread,
    make: Callable[[], Coroutine[Any, Any, T]],
    log: Any,
    what: str,
    status: NatsStatus,
) -> T:
    """Run ``make()`` on the loop thread until it succeeds, waiting longer each time."""
    wait = 0.25
    while True:
        try:
            return await loop.run(make())
        except Exception as exc:
            log.warning(what + "; trying again", error=status.failed(exc), in_s=wait)
        await trio.sleep(wait)
        wait = min(wait * 2, _MAX_RETRY_S)
