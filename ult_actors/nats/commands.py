"""Serve requests arriving on ``ult.<cluster>.cmd`` like requests on the Unix socket.

A request's payload is one msgpack ``Request`` (the socket's frame without
its length header); the reply, sent to the request's reply subject, is one
msgpack ``Reply``. Each request is decoded and answered by the IPC layer's
``Dispatcher`` in its own trio task, at most ``max_in_flight`` at once: one
more is answered ``busy`` on the NATS side at once, never queued. What
nats-py buffers before that is bounded by the subscription's pending limits
(past them NATS drops, and the requester times out).
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
import trio
from nats.aio.client import Client as NatsConnection
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from ult_actors.errors import BadRequest, ServiceBusy
from ult_actors.ipc.dispatch import Dispatcher
from ult_actors.messages import ErrorReply, Reply, Subscribe
from ult_actors.nats.bridge import LoopThread, Slot, TrioPort
from ult_actors.nats.subjects import Subjects

#: Every instance of a cluster subscribes in one queue group: a request reaches one.
QUEUE_GROUP = "ult"
_PENDING_BYTES = 64 << 20


class CommandServer:
    """Answers the cluster's command subject until cancelled."""

    def __init__(
        self,
        nc: NatsConnection,
        loop: LoopThread,
        dispatcher: Dispatcher,
        subjects: Subjects,
        *,
        max_in_flight: int,
        log: Any,
    ) -> None:
        self.nc = nc
        self.loop = loop
        self.dispatcher = dispatcher
        self.subjects = subjects
        self.max_in_flight = max_in_flight
        self.log = log
        self._encoder = msgspec.msgpack.Encoder()
        self._busy = self._encoder.encode(
            ErrorReply(
                id=0,
                error=ServiceBusy(
                    f"the service is answering {max_in_flight} NATS requests, its limit"
                    " (nats.max_in_flight); try again later"
                ).to_info(),
            )
        )
        #: Requests answered ``busy`` because all slots were taken.
        self.refused = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Subscribe, report started, answer requests until cancelled, unsubscribe."""
        async with trio.open_nursery() as nursery:
            port = TrioPort(nursery, self._answer, self.max_in_flight)
            sub = await self.loop.run(self._subscribe(port))
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                # Best effort: closing the connection right after drops it anyway.
                with trio.move_on_after(2.0, shield=True), contextlib.suppress(Exception):
                    await self.loop.run(sub.unsubscribe())

    async def _subscribe(self, port: TrioPort) -> NatsSubscription:
        """(loop thread) The command subscription, handing each request to ``port``."""

        async def on_request(msg: Msg) -> None:
            if not msg.reply:
                return  # a publish, not a request: nobody to answer
            if not port.try_send(msg):
                self.refused += 1
                await msg.respond(self._busy)

        return await self.nc.subscribe(
            self.subjects.commands,
            queue=QUEUE_GROUP,
            cb=on_request,
            pending_msgs_limit=max(4 * self.max_in_flight, 1024),
            pending_bytes_limit=_PENDING_BYTES,
        )

    async def _reply(self, subject: str, data: bytes, slot: Slot) -> None:
        """(loop thread) Publish a reply and free its slot before it can reach the client:
        ``publish`` only buffers it, so its requester cannot send its next request (and
        find every slot taken) before the slot is free."""
        await self.nc.publish(subject, data)
        slot.release()

    async def _answer(self, msg: Msg, slot: Slot) -> None:
        """(trio) One request's reply, published to its reply subject."""
        request = self.dispatcher.decode(msg.data)
        reply: Reply
        if isinstance(request, ErrorReply):
            reply = request
        elif isinstance(request, Subscribe):
            reply = ErrorReply(
                id=request.id,
                error=BadRequest(
                    "over NATS, events are not subscribed by request: follow the subjects"
                    f" {self.subjects.all_events} (JetStream stream {self.subjects.stream})"
                ).to_info(),
            )
        else:
            reply = await self.dispatcher.answer(request)
        try:
            await self.loop.run(self._reply(msg.reply, self._encoder.encode(reply), slot))
        except Exception as exc:
            # NATS is down or reconnecting past its buffer: the requester will time out
            # (a submit's outcome is then unknown to it, and it looks the order up).
            self.log.warning("nats reply not sent", error=f"{type(exc).__name__}: {exc}")
