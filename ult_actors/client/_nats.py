"""The service over NATS, for ``Client(url="nats://...")`` and ``AsyncClient(url=...)``.

A request is one msgpack ``Request`` published on ``ult.<cluster>.cmd``
with a reply subject under this client's own inbox; the reply is one
msgpack ``Reply``, the same messages as on the socket. nats-py runs on the
transport's own asyncio thread (``ult_actors.nats.bridge``), so the blocking
client, trio and asyncio callers all use it the same way.

What the socket says by closing, NATS says otherwise, and each is turned
into the socket's error: no server at the URL → ``ServiceUnreachable``; no
service subscribed (none running, or no active instance) →
``ServiceUnreachable``; the NATS connection lost with requests waiting →
``ConnectionLost``; NATS refusing this user the command subject →
``Unauthorized``; a reply that does not come in time → ``Timeout`` (or
``OutcomeUnknown`` for a submit), as on the socket.

Events come from the cluster's event subjects (a plain NATS subscription,
so a client sees what is published from now on, like the socket's); a
client that does not keep up loses its subscription (``SubscriptionLost``)
once ``event_buffer`` events wait unread. To replay from where a consumer
left off, use a JetStream durable consumer on the stream (see the README).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, get_args

import anyio
import msgspec

from ult_actors.client._errors import ConnectionLost, ServiceUnreachable, SubscriptionLost
from ult_actors.client._requests import no_reply
from ult_actors.errors import ConfigError, Internal, Timeout, UltError, Unauthorized
from ult_actors.messages import Event, EventTopic, Reply, Request
from ult_actors.secrets import masked_url

try:
    from nats.aio.client import Client as NatsConnection
    from nats.aio.msg import Msg

    from ult_actors.nats.bridge import LoopStopped, LoopThread
    from ult_actors.nats.connection import NatsSettings, open_connection
    from ult_actors.nats.subjects import Subjects, wanted
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigError(
        f"nats:// URLs need the nats extra (pip install 'ult-actors[nats]'): {exc}"
    ) from None

ALL_TOPICS: tuple[EventTopic, ...] = get_args(EventTopic)
_NO_RESPONDERS = "503"


class NatsTransport:
    """One NATS connection carrying one client's requests and events."""

    def __init__(
        self,
        url: str,
        *,
        cluster: str = "default",
        creds: str | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        connect_timeout: float = 5.0,
        event_buffer: int = 10_000,
    ) -> None:
        if not url.startswith(("nats://", "tls://")):
            raise ConfigError(f"not a NATS URL: {url!r} (expected nats://HOST:PORT)")
        #: The URL without its password, for messages.
        self.address = masked_url(url)
        self.settings = NatsSettings(
            url=url,
            cluster=cluster,
            creds_file=creds or "",
            tls_ca=tls_ca or "",
            tls_cert=tls_cert or "",
            tls_key=tls_key or "",
            connect_timeout_s=connect_timeout,
            name="ult-client",
        )
        self.subjects = Subjects(cluster)
        self.event_buffer = event_buffer
        self._loop: LoopThread | None = None
        self._nc: NatsConnection | None = None
        self._inbox = ""
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._closed_error: UltError | None = None
        self._encoder = msgspec.msgpack.Encoder()
        self._replies: msgspec.msgpack.Decoder[Reply] = msgspec.msgpack.Decoder(Reply)
        self._events: msgspec.msgpack.Decoder[Event] = msgspec.msgpack.Decoder(Event)
        self._event_queue: asyncio.Queue[Event | UltError] | None = None
        self._events_ended = False

    # -- from the caller's thread -----------------------------------------------

    def open(self) -> None:
        """Connect (blocking); ``ServiceUnreachable`` if NATS does not answer."""
        loop = self._start_loop()
        try:
            self._wait(loop.submit(self._connect()), None)
        except BaseException:
            self.close()  # no thread outlives a failed connect
            raise

    async def aopen(self) -> None:
        """Connect (from trio or asyncio); ``ServiceUnreachable`` if NATS does not answer."""
        loop = self._start_loop()
        try:
            await loop.run(self._connect())
        except BaseException:
            with anyio.CancelScope(shield=True):  # even when cancelled: stop the thread
                await self.aclose()
            raise

    def close(self) -> None:
        """Close the connection and stop its thread (blocking)."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if self._nc is not None:
            with contextlib.suppress(concurrent.futures.TimeoutError, LoopStopped):
                loop.submit(self._close()).result(2.0)
        loop.stop()

    async def aclose(self) -> None:
        """Close the connection and stop its thread."""
        await anyio.to_thread.run_sync(self.close)

    def call(self, request: Request, timeout: float | None) -> Reply:
        """One request's reply (blocking); ``Timeout`` if none comes within ``timeout``."""
        future = self._running_loop().submit(self._request(request))
        return self._replies.decode(self._wait(future, timeout))

    def call_many(
        self, requests: Sequence[Request], window: int, timeout: float | None
    ) -> list[Reply | UltError]:
        """Replies to ``requests`` in their order, ``window`` in flight at most (blocking);
        a request not answered within ``timeout`` gets its ``Timeout``."""
        future = self._running_loop().submit(self._request_many(requests, window, timeout))
        result: list[Reply | UltError] = self._wait(future, None)
        return result

    async def acall(self, request: Request) -> Reply:
        """One request's reply; the caller bounds the wait (cancelling it cancels here)."""
        data = await self._running_loop().run(self._request(request))
        return self._replies.decode(data)

    def subscribe(self, topics: Iterable[EventTopic] | None, timeout: float | None) -> None:
        """Follow events of ``topics`` (all if None) from now on (blocking)."""
        wanted_topics = frozenset(topics or ALL_TOPICS)
        self._wait(self._running_loop().submit(self._subscribe(wanted_topics)), timeout)

    async def asubscribe(self, topics: Iterable[EventTopic] | None) -> None:
        """Follow events of ``topics`` (all if None) from now on."""
        await self._running_loop().run(self._subscribe(frozenset(topics or ALL_TOPICS)))

    def events(self, timeout: float | None) -> Iterator[Event]:
        """The followed events (blocking); ``Timeout`` if none comes within ``timeout``."""
        loop = self._running_loop()
        while True:
            yield self._event(self._wait(loop.submit(self._next_event()), timeout))

    async def aevents(self) -> AsyncIterator[Event]:
        """The followed events."""
        loop = self._running_loop()
        while True:
            yield self._event(await loop.run(self._next_event()))

    def _event(self, item: Event | UltError) -> Event:
        if isinstance(item, UltError):
            raise item
        return item

    def _start_loop(self) -> LoopThread:
        if self._loop is not None:
            raise Internal("this client is already connected")
        self._loop = LoopThread("ult-client-nats").start()
        return self._loop

    def _running_loop(self) -> LoopThread:
        if self._closed_error is not None:
            raise self._closed_error
        if self._loop is None or self._nc is None:
            raise ConnectionLost(self.address, "the client is not connected (use with)")
        return self._loop

    def _wait(self, future: concurrent.futures.Future[Any], timeout: float | None) -> Any:
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise Timeout(f"no reply from the service within {timeout} s") from None
        except concurrent.futures.CancelledError:
            raise self._closed_error or ConnectionLost(self.address, "closed") from None

    # -- on the loop thread -----------------------------------------------------

    async def _connect(self) -> None:
        try:
            nc = await open_connection(
                self.settings,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnect=False,
            )
        except Exception as exc:
            raise ServiceUnreachable(self.address, f"{type(exc).__name__}: {exc}") from None
        self._nc = nc
        self._inbox = nc.new_inbox()
        await nc.subscribe(self._inbox + ".*", cb=self._on_reply)

    async def _close(self) -> None:
        self._fail_all(ConnectionLost(self.address, "the client closed the connection"))
        if self._nc is not None:
            await self._nc.close()

    async def _request(self, request: Request) -> bytes:
        assert self._nc is not None
        token = str(request.id)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        try:
            await self._nc.publish(
                self.subjects.commands,
                self._encoder.encode(request),
                reply=f"{self._inbox}.{token}",
            )
            return await future
        finally:
            self._pending.pop(token, None)

    async def _request_many(
        self, requests: Sequence[Request], window: int, timeout: float | None
    ) -> list[Reply | UltError]:
        slots = asyncio.Semaphore(window)

        async def one(request: Request) -> Reply | UltError:
            async with slots:
                try:
                    data = await asyncio.wait_for(self._request(request), timeout)
                except TimeoutError:
                    return no_reply(request, timeout)
                except UltError as exc:
                    return exc
            return self._replies.decode(data)

        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def _on_reply(self, msg: Msg) -> None:
        future = self._pending.get(msg.subject.rsplit(".", 1)[-1])
        if future is None or future.done():
            return  # its caller gave up waiting
        if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
            future.set_exception(
                ServiceUnreachable(
                    self.address,
                    f"no ult service answers on {self.subjects.commands}"
                    " (none running for this cluster, or none active)",
                )
            )
        else:
            future.set_result(msg.data)

    async def _on_error(self, exc: Exception) -> None:
        text = str(exc).lower()  # nats-py lowercases the server's -ERR text
        if "permissions violation" not in text:
            return
        refused = Unauthorized(f"NATS refused this user: {text.removeprefix('nats: ')}")
        if "subscription" in text:
            self._put_event(refused)
        else:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(refused)

    async def _on_disconnected(self) -> None:
        self._fail_all(ConnectionLost(self.address, "the NATS connection was lost"))

    def _fail_all(self, error: UltError) -> None:
        """Fail every waiting request, every later one and the event reader with ``error``."""
        self._closed_error = self._closed_error or error
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._put_event(error)

    async def _subscribe(self, topics: frozenset[EventTopic]) -> None:
        assert self._nc is not None
        if self._event_queue is not None:
            raise Internal("this client already follows events; use one iterator per client")
        queue: asyncio.Queue[Event | UltError] = asyncio.Queue(self.event_buffer + 1)
        self._event_queue = queue

        async def on_event(msg: Msg) -> None:
            try:
                event = self._events.decode(msg.data)
            except msgspec.DecodeError:
                return  # not one of ours; nothing to tell the reader
            if wanted(event, topics):
                self._put_event(event)

        for subject in sorted(self.subjects.of_topics(topics)):
            await self._nc.subscribe(subject, cb=on_event)
        await self._nc.flush()  # the server has the subscriptions: nothing from now is missed

    def _put_event(self, item: Event | UltError) -> None:
        queue = self._event_queue
        if queue is None or self._events_ended:
            return
        if not isinstance(item, UltError) and queue.qsize() >= self.event_buffer:
            item = SubscriptionLost(
                f"subscriber fell behind: {self.event_buffer} events queued and unread"
            )
        if isinstance(item, UltError):
            self._events_ended = True  # the reader gets this error after what is queued
        queue.put_nowait(item)

    async def _next_event(self) -> Event | UltError:
        assert self._event_queue is not None
        return await self._event_queue.get()
