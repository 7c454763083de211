"""The pooled HTTP client of a REST broker connection, and the check made before opening it.

Every REST connector (Alpaca, OANDA) holds one ``HttpPool``: keep-alive
connections opened on connect and closed on disconnect, with every timeout
explicit (``PoolSettings``), no redirects (a redirect means a misconfigured
URL: fail fast) and nothing taken from the environment (no proxy or netrc
surprises). The requests go through ``http1_client.Http1Client`` (kept-alive trio
streams; why, in its docstring), which answers with httpx's types; a test
that plugs in an httpx transport gets an ``httpx.AsyncClient`` on it instead.
A connector ``charge``s the account's request budget before each request.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import httpx

from ult_actors import __version__
from ult_actors.brokers.budget import RateBudget
from ult_actors.brokers.http.http1_client import Http1Client
from ult_actors.brokers.http.pacing import ConnectionPacer
from ult_actors.errors import BrokerUnavailable, ConfigError


class PoolSettings(Protocol):
    """The settings fields a connection's HTTP pool is built from."""

    connect_timeout_s: float
    read_timeout_s: float
    write_timeout_s: float
    pool_timeout_s: float
    max_connections: int


def http_timeouts(settings: PoolSettings, *, streaming: bool = False) -> httpx.Timeout:
    """Every timeout explicit; ``streaming`` drops the read timeout (a heartbeat watchdog judges silence)."""
    return httpx.Timeout(
        connect=settings.connect_timeout_s,
        read=None if streaming else settings.read_timeout_s,
        write=settings.write_timeout_s,
        pool=settings.pool_timeout_s,
    )


def require_live_confirmed(broker: str, *, live: bool, confirmed: bool, switch: str) -> None:
    """Refuse real-money trading unless the config file confirms it (``switch`` chose live)."""
    if live and not confirmed:
        raise ConfigError(
            f"broker {broker}: live trading ({switch}) refuses to start"
            f" until [brokers.{broker}] sets live_trading_confirmed = true"
        )


class HttpClient(Protocol):
    """What a connector asks of its pool's client (``Http1Client`` and ``httpx.AsyncClient`` both)."""

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request and read its whole reply."""

    def stream(
        self, method: str, url: str, *, timeout: httpx.Timeout
    ) -> AbstractAsyncContextManager[httpx.Response]:
        """A request whose reply's body is read as it arrives."""

    async def aclose(self) -> None:
        """Close every connection."""


class HttpPool:
    """One connection's pooled client: absent until ``open``, gone again after ``close``."""

    def __init__(
        self,
        broker: str,
        settings: PoolSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        pacer: ConnectionPacer | None = None,
    ) -> None:
        self.broker = broker
        self.settings = settings
        self._transport = transport  # tests and simulators plug in here
        self._client: HttpClient | None = None
        #: Paces the new connections of the account's every pool (OANDA: 2/s); ``None``: unpaced.
        self.pacer = pacer
        #: The account's request budget (the broker actor's); ``None``: unlimited.
        self.budget: RateBudget | None = None

    async def charge(self) -> None:
        """Pay the account's budget for one request about to be sent (``RateBudget.charge``)."""
        if self.budget is not None:
            await self.budget.charge()

    @property
    def is_open(self) -> bool:
        """Whether the pool is open (``close`` was not called since ``open``)."""
        return self._client is not None

    def open(self, *, headers: Mapping[str, str], base_url: str = "") -> None:
        """Open the pool; ``headers`` (credentials among them) go with every request."""
        s = self.settings
        every = {**headers, "Accept": "application/json", "User-Agent": f"ult-actors/{__version__}"}
        if self._transport is None:
            self._client = Http1Client(
                base_url=base_url,
                headers=every,
                timeout=http_timeouts(s),
                max_connections=s.max_connections,
                pacer=self.pacer,
            )
            return
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=every,
            timeout=http_timeouts(s),  # limits belong to the plugged-in transport
            follow_redirects=False,
            trust_env=False,
            transport=self._transport,
        )

    def client(self) -> HttpClient:
        """The open client (``BrokerUnavailable`` when the connection is not up)."""
        if self._client is None:
            raise BrokerUnavailable(f"broker {self.broker} is not connected", broker=self.broker)
        return self._client

    async def close(self) -> None:
        """Close the pool; safe to repeat."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
