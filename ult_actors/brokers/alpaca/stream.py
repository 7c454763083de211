"""The ``trade_updates`` WebSocket: connect, authenticate, listen, read.

One session is one WebSocket connection. ``open_trade_updates`` yields a
session only once Alpaca has acknowledged both the authentication and the
subscription, so the caller's REST sweep made after it cannot miss an
update.

Liveness: the stream has no heartbeats of its own, and a connection can stay
open while nothing arrives (half-open, or a server that went quiet). The
session pings whenever the line has been quiet for ``ping_interval``, and a
stream with no frame and no pong for ``stale_after`` is lost: a silence is
found at most ``stale_after`` after it began. The pinging task also keeps
that watch (it hangs up a silent line, and the reader reports the silence),
so reading a message costs no deadline of its own. Every way the connection can fail surfaces as ``BrokerUnavailable``
(reconnect) or ``AuthFailed`` (fatal); the credentials go out in the
authenticate frame only and appear in no error.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import msgspec
import trio

from ult_actors.brokers.alpaca.wire import WireAuthorization, WireStreamMessage, WireTradeUpdate
from ult_actors.brokers.http import websocket
from ult_actors.brokers.http.websocket import WebSocket, WebSocketClosed, WebSocketRejected
from ult_actors.errors import AuthFailed, BrokerUnavailable
from ult_actors.secrets import Secret

_STREAM_ERRORS = (WebSocketClosed, OSError, trio.TooSlowError)


@dataclass(frozen=True)
class StreamTimeouts:
    """How long each step of a session may take, in seconds."""

    connect: float = 5.0
    handshake: float = 5.0
    #: Ping when nothing has arrived for this long (at most half ``stale_after``).
    ping_interval: float = 10.0
    #: No frame and no pong for this long: the stream is lost.
    stale_after: float = 30.0


class TradeUpdatesSession:
    """An authenticated, listening stream; ``next_update`` yields trade updates."""

    def __init__(self, ws: WebSocket, broker: str, timeouts: StreamTimeouts):
        self._ws = ws
        self._broker = broker
        self._timeouts = timeouts
        #: ``keep_alive`` hung up: nothing (no update, no pong) for ``stale_after``.
        self._silent = False

    @property
    def last_message_at(self) -> float:
        """``trio.current_time()`` when the last frame or pong arrived."""
        return self._ws.last_received_at

    async def keep_alive(self) -> None:
        """Ping whenever the line has been quiet; hang up one silent for ``stale_after``.

        A pong counts as a message. Runs until cancelled or it hangs up.
        """
        quiet = min(self._timeouts.ping_interval, self._timeouts.stale_after / 2)
        stale_after = self._timeouts.stale_after
        pinged_at = -math.inf
        while True:
            silent_at = self.last_message_at + stale_after
            await trio.sleep_until(min(max(self.last_message_at, pinged_at) + quiet, silent_at))
            now = trio.current_time()
            if now >= self.last_message_at + stale_after:
                self._silent = True
                await self._ws.aclose()  # the reader's wait ends: it reports the silence
                return
            if now < max(self.last_message_at, pinged_at) + quiet:
                continue  # something arrived meanwhile
            try:
                await self._ws.ping()  # its pong moves last_message_at; none on a silent line
            except _STREAM_ERRORS:
                return  # the reader finds the connection gone
            pinged_at = trio.current_time()

    async def next_update(self) -> WireTradeUpdate:
        """The next trade update.

        Raises ``BrokerUnavailable`` when the connection is lost or has been
        silent (no frame, no pong) for ``stale_after``, ``AuthFailed`` if
        Alpaca revokes the session.
        """
        while True:
            try:
                raw = await self._ws.get_message()
            except _STREAM_ERRORS as exc:
                if self._silent:
                    raise BrokerUnavailable(
                        f"Alpaca trade_updates stream silent for {self._timeouts.stale_after:g} s"
                        " (no update, no pong)",
                        broker=self._broker,
                    ) from None
                raise _lost(exc, self._broker) from None
            message = _decode(raw)
            if message is None:
                continue
            if message.stream == "trade_updates":
                try:
                    return msgspec.json.decode(message.data, type=WireTradeUpdate)
                except msgspec.DecodeError:
                    continue  # one unreadable update must not end the stream
            if message.stream == "authorization" and _status(message) == "unauthorized":
                raise AuthFailed("Alpaca revoked the trade_updates session", broker=self._broker)


@asynccontextmanager
async def open_trade_updates(
    url: str,
    key: Secret,
    secret: Secret,
    *,
    broker: str,
    timeouts: StreamTimeouts,
) -> AsyncIterator[TradeUpdatesSession]:
    """Connect to ``url``, authenticate and listen to ``trade_updates``."""
    try:
        with trio.fail_after(timeouts.connect):
            ws = await websocket.connect(url)
        try:
            with trio.fail_after(timeouts.handshake):
                await _authenticate(ws, key, secret, broker)
                await _listen(ws)
            session = TradeUpdatesSession(ws, broker, timeouts)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(session.keep_alive)  # never raises
                    yield session
                    nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # The caller's own exception, as it raised it, not in a group.
                if len(group.exceptions) == 1:
                    raise group.exceptions[0] from None
                raise
        finally:
            with trio.CancelScope(shield=True):
                await ws.aclose()
    except WebSocketRejected as exc:
        if exc.status_code in (401, 403):
            raise AuthFailed(
                f"Alpaca refused the trade_updates connection (HTTP {exc.status_code})",
                broker=broker,
            ) from None
        raise BrokerUnavailable(
            f"Alpaca refused the trade_updates connection (HTTP {exc.status_code})",
            broker=broker,
        ) from None
    except _STREAM_ERRORS as exc:
        raise _lost(exc, broker) from None


async def _authenticate(ws: WebSocket, key: Secret, secret: Secret, broker: str) -> None:
    frame = {
        "action": "authenticate",
        "data": {"key_id": key.reveal(), "secret_key": secret.reveal()},
    }
    await ws.send_message(msgspec.json.encode(frame).decode())
    while True:
        message = _decode(await ws.get_message())
        if message is None or message.stream != "authorization":
            continue
        if _status(message) == "authorized":
            return
        raise AuthFailed(
            "Alpaca refused the trade_updates credentials; check ALPACA_API_KEY /"
            " ALPACA_API_SECRET",
            broker=broker,
        )


async def _listen(ws: WebSocket) -> None:
    frame = {"action": "listen", "data": {"streams": ["trade_updates"]}}
    await ws.send_message(msgspec.json.encode(frame).decode())
    while True:
        message = _decode(await ws.get_message())
        if message is not None and message.stream == "listening":
            return


def _decode(raw: str | bytes) -> WireStreamMessage | None:
    # Alpaca's paper stream sends JSON in binary frames; live sends text.
    try:
        return msgspec.json.decode(raw, type=WireStreamMessage)
    except msgspec.DecodeError:
        return None


def _status(message: WireStreamMessage) -> str:
    try:
        return msgspec.json.decode(message.data, type=WireAuthorization).status
    except msgspec.DecodeError:
        return ""


def _lost(exc: BaseException, broker: str) -> BrokerUnavailable:
    if isinstance(exc, trio.TooSlowError):
        what = "timed out"
    elif isinstance(exc, WebSocketClosed):
        what = str(exc)
    else:
        what = type(exc).__name__
    return BrokerUnavailable(f"Alpaca trade_updates stream lost: {what}", broker=broker)
