"""Publish every event of the service to the cluster's JetStream stream.

The stream (``ULT_<cluster>_EVENTS``, subjects ``ult.<cluster>.events.>``)
is created, or updated to the configured retention, at start. The
publisher reads the event bus like any subscriber, in batches, and sends
each batch with JetStream's asynchronous publish, waiting for all the
batch's acknowledgements before it takes the next: the stream holds every
event once acknowledged, and consumers on any host replay from where they
left off with durable consumers.

A slow or absent NATS never slows the order path: the publisher's bus
queue (``nats.event_queue``) fills, the bus drops it (as it drops a slow
socket subscriber), and the publisher logs how it fell behind and
subscribes again. Events of that gap are not in the stream. A batch that
failed is sent again with the same message ids, so JetStream's duplicate
window keeps a resent event from being stored twice: at once when nothing
answered within the ack wait (that wait paced the try, and the next one is
answered as soon as NATS is back), after a doubling wait when JetStream
refused it.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, get_args

import msgspec
import trio
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from ult_actors.ipc.gateway import Gateway
from ult_actors.messages import Event, EventTopic
from ult_actors.nats.bridge import LoopThread
from ult_actors.nats.subjects import Subjects
from ult_actors.runtime.pubsub import Subscription

_ALL_TOPICS: frozenset[EventTopic] = frozenset(get_args(EventTopic))
#: How long a refused batch waits before it is sent again: doubling up to the most.
_RETRY_S = 1.0
_MAX_RETRY_S = 30.0
#: JetStream's wait for one batch's acknowledgements.
_ACK_TIMEOUT_S = 10.0


async def ensure_stream(
    js: JetStreamContext, subjects: Subjects, *, max_age_s: float, max_bytes: int
) -> None:
    """(loop thread) Create the events stream, or bring its limits to the configured ones."""
    config = StreamConfig(
        name=subjects.stream,
        subjects=[subjects.all_events],
        max_age=max_age_s,
        max_bytes=max_bytes,
        duplicate_window=120.0,
    )
    try:
        await js.stream_info(subjects.stream)
    except NotFoundError:
        await js.add_stream(config)
    else:
        await js.update_stream(config)


class EventPublisher:
    """Forwards the bus's events to JetStream until cancelled."""

    def __init__(
        self,
        gateway: Gateway,
        js: JetStreamContext,
        loop: LoopThread,
        subjects: Subjects,
        *,
        queue: int,
        log: Any,
        ack_timeout_s: float = _ACK_TIMEOUT_S,
    ) -> None:
        self.gateway = gateway
        self.js = js
        self.loop = loop
        self.subjects = subjects
        self.queue = queue
        self.log = log
        self.ack_timeout_s = ack_timeout_s
        self._encoder = msgspec.msgpack.Encoder()
        # Message ids unique across restarts: the duplicate window outlives a process.
        self._id_prefix = f"{os.getpid():x}-{os.urandom(4).hex()}-"
        self._seq = 0
        #: Events acknowledged by JetStream; times the bus dropped the publisher.
        self.published = 0
        self.fell_behind = 0
        self._sub: Subscription[Event] | None = None
        self._in_hand = 0

    async def run(self) -> None:
        """Publish until cancelled; a drop by the bus is followed by a new subscription,
        then logged (so the line means events flow again)."""
        dropped_reason: str | None = None
        while True:
            sub = self._sub = self.gateway.subscribe(_ALL_TOPICS, self.queue)
            if self.fell_behind:
                self.log.warning(
                    "nats event publisher fell behind; events of the gap are not in the stream",
                    reason=dropped_reason,
                    stream=self.subjects.stream,
                )
            try:
                while True:
                    try:
                        events = await sub.receive_batch()
                    except trio.EndOfChannel:
                        break
                    await self._send(events)
            finally:
                sub.close()
            self.fell_behind += 1
            dropped_reason = sub.dropped_reason

    def backlog(self) -> int:
        """Events taken from the bus and not yet acknowledged by JetStream."""
        sub = self._sub
        return self._in_hand + (sub.queued if sub is not None else 0)

    async def _send(self, events: list[Event]) -> None:
        """Send one batch until JetStream has acknowledged all of it."""
        self._in_hand = len(events)
        batch = []
        for event in events:
            self._seq += 1
            batch.append(
                (
                    self.subjects.of_event(event),
                    self._encoder.encode(event),
                    f"{self._id_prefix}{self._seq}",
                )
            )
        wait = _RETRY_S
        while True:
            try:
                await self.loop.run(self._publish(batch))
            except Exception as exc:
                # No answer within the ack wait (NATS stalled or away): that wait paced
                # this try, and sleeping on top would hold events back long after NATS is
                # back. A refusal comes back at once: wait longer each time.
                unanswered = isinstance(exc, TimeoutError)
                self.log.warning(
                    "nats event batch not acknowledged; sending it again",
                    events=len(batch),
                    in_s=0.0 if unanswered else wait,
                    error=f"{type(exc).__name__}: {exc}",
                )
                if not unanswered:
                    await trio.sleep(wait)
                    wait = min(wait * 2, _MAX_RETRY_S)
                continue
            self.published += len(batch)
            self._in_hand = 0
            return

    async def _publish(self, batch: list[tuple[str, bytes, str]]) -> None:
        """(loop thread) Publish a batch without waiting in between, then await every ack."""
        acks = []
        for subject, payload, msg_id in batch:
            acks.append(
                await self.js.publish_async(
                    subject,
                    payload,
                    stream=self.subjects.stream,
                    headers={"Nats-Msg-Id": msg_id},
                )
            )
        await asyncio.wait_for(asyncio.gather(*acks), self.ack_timeout_s)
