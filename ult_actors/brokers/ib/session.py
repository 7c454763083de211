"""One TWS API socket: the handshake, paced sending, reading, and requests answered by lists.

``IbSession`` knows the socket and nothing of orders. ``open`` connects,
agrees a server version, starts the API and waits for the managed accounts
and the first next valid id. Every message read goes to the connector's
handler (``on_message``); what answers a request (open orders, executions,
positions...) the handler hands back with ``add_to`` / ``end``, and
``collect`` returns it to whoever asked.

Reading has one owner at a time: ``reading()`` while the connector streams
updates, else whichever request needs an answer reads the socket itself
(``wait``). When the socket dies, every pending answer fails at once
(``fail_waiters``) instead of at its timeout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from ult_actors.brokers.budget import RateBudget
from ult_actors.brokers.ib import errors as ib_errors
from ult_actors.brokers.ib import wire
from ult_actors.brokers.ib.decode import decode_message
from ult_actors.brokers.ib.encode import encode_request
from ult_actors.brokers.ib.fields import FieldError
from ult_actors.brokers.ib.pacing import MessagePacer
from ult_actors.brokers.ib.protocol import (
    API_PREFIX,
    MAX_SERVER_VERSION,
    MIN_SERVER_VERSION,
    ConnectionClosed,
    FrameStream,
    ProtocolError,
    encode_fields,
    encode_raw,
    version_range_text,
)
from ult_actors.brokers.ib.settings import IbSettings
from ult_actors.errors import BrokerUnavailable, ConfigError, UltError
from ult_actors.messages import OrderUpdate

#: Applies one server message; returns the order updates it causes.
MessageHandler = Callable[[wire.Incoming], list[OrderUpdate]]


class ClientIdInUse(Exception):
    """TWS answered START_API with error 326."""


@dataclass
class _Collector:
    """Messages answering one request, gathered by the reader."""

    items: list[Any] = field(default_factory=list)
    done: bool = False
    error: UltError | None = None


class IbSession:
    """The socket of one IB connection; see the module docstring."""

    def __init__(
        self, name: str, settings: IbSettings, on_message: MessageHandler, *, log: Any
    ) -> None:
        self.name = name
        self.settings = settings
        self._on_message = on_message
        self._log = log
        self._stream: FrameStream | None = None
        self.server_version = 0
        self.account_id = ""
        self._accounts: list[str] | None = None
        #: TWS sent nextValidId on the current socket (the handshake waits for it).
        self._told_next_id = False
        self._pacer = MessagePacer.within(settings.max_messages_per_second)
        #: Held by a message from its pacing until it is on the socket (``send``).
        self._send_turn = trio.Lock()
        #: The account's request budget, charged for every message sent (``send``).
        self.budget: RateBudget | None = None
        self._fatal: Exception | None = None
        self._collectors: dict[Hashable, _Collector] = {}
        self._request_locks: dict[str, trio.Lock] = {}
        self._changed = trio.Event()
        self._read_lock = trio.Lock()
        self._streaming = False
        self._closed = False
        #: Why the current socket is known dead (read side closed, or disconnect):
        #: every wait for an answer on it fails at once instead of timing out.
        self._dead: BrokerUnavailable | None = None

    @property
    def has_stream(self) -> bool:
        """A socket is there (it may be closing)."""
        return self._stream is not None

    @property
    def is_open(self) -> bool:
        """A socket is there and no one has closed it."""
        return self._stream is not None and not self._closed

    # -- opening and closing -----------------------------------------------------

    async def open(self) -> None:
        """Connect, agree the version, start the API, choose the account.

        Raises ``ClientIdInUse`` if TWS refuses the client id (the caller
        decides whether to retry), ``BrokerUnavailable`` if TWS cannot be
        reached or does not finish the handshake, ``ConfigError`` for what a
        retry cannot fix.
        """
        s = self.settings
        self._closed = False
        self._dead = None
        self._fatal = None
        self._accounts = None
        self._told_next_id = False
        try:
            with trio.fail_after(s.connect_timeout_s):
                raw = await trio.open_tcp_stream(s.host, s.port)
        except (OSError, trio.TooSlowError) as exc:
            raise BrokerUnavailable(
                f"cannot reach TWS / IB Gateway at {s.host}:{s.port}: {exc or 'timed out'}",
                broker=self.name,
            ) from None
        self._stream = stream = FrameStream(raw)
        try:
            with trio.fail_after(s.connect_timeout_s):
                await stream.send_frames(
                    [
                        API_PREFIX
                        + encode_raw(version_range_text(MIN_SERVER_VERSION, MAX_SERVER_VERSION))
                    ]
                )
                while len(fields := await stream.receive_fields()) != 2:
                    pass  # nothing else may precede the version answer
                self.server_version = int(fields[0])
                if not MIN_SERVER_VERSION <= self.server_version <= MAX_SERVER_VERSION:
                    raise ConfigError(
                        f"broker {self.name}: TWS at {s.host}:{s.port} speaks API version"
                        f" {self.server_version}; this connector supports"
                        f" {MIN_SERVER_VERSION}..{MAX_SERVER_VERSION} (upgrade TWS / IB Gateway)"
                    )
                await self.send(wire.StartApi(client_id=s.client_id))
                await self.read_until(lambda: self._accounts is not None and self._told_next_id)
        except trio.TooSlowError:
            raise BrokerUnavailable(
                f"TWS at {s.host}:{s.port} did not complete the API handshake in"
                f" {s.connect_timeout_s}s (is the API enabled in its settings?)",
                broker=self.name,
            ) from None
        except (ValueError, ProtocolError) as exc:
            raise BrokerUnavailable(f"TWS handshake failed: {exc}", broker=self.name) from None
        self.account_id = self._choose_account(self._accounts or [])

    def _choose_account(self, accounts: list[str]) -> str:
        wanted = self.settings.account
        if wanted:
            if wanted not in accounts:
                raise ConfigError(
                    f"broker {self.name}: account {wanted} is not managed by this TWS login"
                    f" (managed: {', '.join(accounts) or 'none'}); check IB_ACCOUNT"
                )
            return wanted
        if len(accounts) != 1:
            raise ConfigError(
                f"broker {self.name}: the TWS login manages {len(accounts)} accounts"
                f" ({', '.join(accounts)}); set IB_ACCOUNT to the one to trade"
            )
        return accounts[0]

    async def close(self) -> None:
        """Close the socket; safe to call twice or after a failed open."""
        self._closed = True
        self.fail_waiters(BrokerUnavailable(f"broker {self.name} disconnected", broker=self.name))
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()

    # -- sending and reading ----------------------------------------------------

    async def send(self, request: wire.Request) -> None:
        """Encode and send one request, within TWS's message rate and the account's budget.

        TWS counts every message, so the budget is charged for each
        (``RateBudget.charge``: a command's first message uses the token the
        broker actor prepaid, the others its class; background ones are queries).
        """
        stream = self._stream
        if stream is None or (self._closed and not isinstance(request, wire.StartApi)):
            raise BrokerUnavailable(f"broker {self.name} is not connected", broker=self.name)
        frame = encode_fields(encode_request(request, self.server_version))
        if self.budget is not None:
            await self.budget.charge()
        # One message at a time from the pacer's leave to the socket: the pacer
        # counts a message gone when it lets it go, so another let go meanwhile
        # must not wait in a queue for the socket (a slow loop, a full buffer)
        # and leave later in a burst with the ones behind it.
        async with self._send_turn:
            await self._pacer.wait()
            try:
                await stream.send_frames([frame])
            except ConnectionClosed as exc:
                raise BrokerUnavailable(
                    f"connection to TWS lost: {exc}", broker=self.name
                ) from None

    async def _receive(self) -> wire.Incoming | None:
        stream = self._stream
        if stream is None:
            raise BrokerUnavailable(f"broker {self.name} is not connected", broker=self.name)
        try:
            fields = await stream.receive_fields()
        except (ConnectionClosed, ProtocolError) as exc:
            raise BrokerUnavailable(
                f"connection to TWS at {self.settings.host}:{self.settings.port} closed: {exc}",
                broker=self.name,
            ) from None
        try:
            return decode_message(fields, self.server_version)
        except FieldError as exc:
            # One unreadable message must not take the connection down.
            self._log.error("unreadable TWS message skipped", msg_id=fields[0], error=str(exc))
            return None

    def _dispatch(self, msg: wire.Incoming) -> list[OrderUpdate]:
        """Note what the session needs, then let the handler apply the message."""
        updates: list[OrderUpdate] = []
        if isinstance(msg, wire.ManagedAccounts):
            self._accounts = msg.accounts
        elif isinstance(msg, wire.ErrorMessage) and msg.code == ib_errors.CLIENT_ID_IN_USE:
            self._fatal = ClientIdInUse(msg.message)
            self._log.error(
                "tws refused the client id", code=msg.code, client_id=self.settings.client_id
            )
        else:
            if isinstance(msg, wire.NextValidId):
                self._told_next_id = True
            updates = self._on_message(msg)
        self._notify()
        return updates

    async def read_one(self) -> list[OrderUpdate]:
        """Read the next message and apply it (only inside ``reading()``)."""
        msg = await self._receive()
        return [] if msg is None else self._dispatch(msg)

    async def read_until(self, done: Callable[[], bool]) -> None:
        """Read and handle messages ourselves until ``done()`` (only while not streaming)."""
        async with self._read_lock:
            while not done():
                try:
                    msg = await self._receive()
                except BrokerUnavailable as exc:
                    # Others may be parked waiting for this reader: the socket is dead
                    # for them too, now rather than at their timeouts.
                    self.fail_waiters(exc)
                    raise
                if msg is not None:
                    self._dispatch(msg)  # no sink yet: nothing to deliver
                if self._fatal is not None:
                    raise self._fatal

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[None]:
        """Own the read side: requests meanwhile wait for this reader to collect answers."""
        async with self._read_lock:
            self._streaming = True
            try:
                yield
            finally:
                self._streaming = False

    def fail_waiters(self, error: BrokerUnavailable) -> None:
        """The socket is gone: every pending answer (request, ack, cancel) fails now."""
        if self._dead is None:
            self._dead = error
        for collector in self._collectors.values():
            if not collector.done:
                collector.error = error
                collector.done = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait(self, done: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Until ``done()``: by the reader if streaming, else by reading ourselves."""
        try:
            with trio.fail_after(timeout_s):
                while not done():
                    if self._dead is not None:
                        # No answer can come on a dead socket: say so now, not at the timeout.
                        raise self._dead
                    if self._streaming or self._read_lock.locked():
                        await self._changed.wait()
                    else:
                        await self.read_until(done)
        except trio.TooSlowError:
            raise BrokerUnavailable(
                f"TWS did not answer {what} within {timeout_s}s", broker=self.name
            ) from None

    # -- requests answered by a list ---------------------------------------------

    async def collect(self, kind: str, key: Hashable, request: wire.Request) -> list[Any]:
        """Send a request and gather the answer until its end marker."""
        lock = self._request_locks.setdefault(kind, trio.Lock())
        async with lock:
            collector = self._collectors[key] = _Collector()
            try:
                await self.send(request)
                await self.wait(lambda: collector.done, self.settings.request_timeout_s, kind)
            finally:
                self._collectors.pop(key, None)
            if collector.error is not None:
                raise collector.error
            return collector.items

    def add_to(self, key: Hashable, msg: Any) -> None:
        """One more item of the answer awaited under ``key`` (if anyone awaits it)."""
        collector = self._collectors.get(key)
        if collector is not None and not collector.done:
            collector.items.append(msg)

    def end(self, key: Hashable) -> None:
        """The answer awaited under ``key`` is complete."""
        collector = self._collectors.get(key)
        if collector is not None:
            collector.done = True

    def fail_request(self, req_id: int, error: UltError) -> bool:
        """Fail the pending request numbered ``req_id``; False if there is none."""
        for key, collector in self._collectors.items():
            if isinstance(key, tuple) and key[1] == req_id and not collector.done:
                collector.error = error
                collector.done = True
                return True
        return False
