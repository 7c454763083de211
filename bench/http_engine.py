"""http: which HTTP/1.1 engine a REST broker connection sends its orders with.

One ``ult sim alpaca`` on 127.0.0.1; one order at a time, a 1-share AAPL
market buy, kept-alive connection, three engines:

- **httpx**: ``httpx.AsyncClient`` as ``brokers.http.client.HttpPool`` opened
  it until issue 16 (and still does when a test plugs in an httpx transport);
- **httpcore**: httpx's own engine, ``httpcore.AsyncConnectionPool``, called
  directly (no client layer: no URL merging, cookies, hooks);
- **httptools**: ``brokers.http.http1_client.Http1Client``, what ``HttpPool`` opens
  now: kept-alive trio streams, requests written by it, replies parsed by
  httptools (until issue 16's peer work, h11 did both).

Each is measured at two levels: the engine alone (``POST /v2/orders`` ->
status and body) and through ``AlpacaConnector.submit`` (body built, reply
decoded and mapped to an ``Order``); for httpcore the connector's pool is
swapped for the engine after ``connect``. Figures: p50/p99 and this process's CPU per order
(the client side; the simulator runs in its own process). Engines take
turns in each of several rounds, so the machine's drift hits all alike;
each figure is the median over the rounds.

    python -m bench.http_engine --orders 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpcore
import httpx
import msgspec
import trio

from bench.common import Budget, latency_summary
from bench.peer import KEY, SECRET, running_sim
from ult_actors.brokers.alpaca.connector import AlpacaConnector
from ult_actors.brokers.alpaca.mapping import order_body
from ult_actors.brokers.alpaca.settings import AlpacaSettings
from ult_actors.brokers.http.client import HttpPool
from ult_actors.messages import OrderRequest
from ult_actors.secrets import Secret

ENGINES = ("httpx", "httpcore", "httptools")
HEADERS = {
    "APCA-API-KEY-ID": KEY,
    "APCA-API-SECRET-KEY": SECRET,
    "Accept": "application/json",
    "User-Agent": "ult-actors-bench",
}


class HttpcoreEngine:
    """``httpcore.AsyncConnectionPool`` with the base URL and fixed headers applied here."""

    def __init__(self, base_url: str) -> None:
        self._base = base_url
        self._pool = httpcore.AsyncConnectionPool(max_connections=8)
        host = urlsplit(base_url).netloc
        self._headers = [(b"Host", host.encode())] + [
            (k.encode(), v.encode()) for k, v in HEADERS.items()
        ]
        self._timeouts = {"connect": 5.0, "read": 10.0, "write": 10.0, "pool": 5.0}

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
        """The ``HttpClient.request`` the connectors call, on httpcore's pool."""
        if json is not None:
            content = msgspec.json.encode(json)
        target = self._base + url + ("?" + urlencode(params) if params else "")
        extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        response = await self._pool.request(
            method,
            target,
            headers=self._headers + extra,
            content=content,
            extensions={"timeout": self._timeouts},
        )
        return httpx.Response(response.status, headers=response.headers, content=response.content)

    async def aclose(self) -> None:
        await self._pool.aclose()


class _EnginePool:
    """Stands in for the connector's ``HttpPool``: hands out httpcore's engine instead."""

    def __init__(self, engine: HttpcoreEngine) -> None:
        self.engine = engine

    def client(self) -> HttpcoreEngine:
        return self.engine

    async def charge(self) -> None:
        """No request budget here (``HttpPool.charge`` with none)."""

    async def close(self) -> None:
        await self.engine.aclose()


def _order(i: int) -> OrderRequest:
    return OrderRequest(
        symbol="AAPL", side="buy", qty=Decimal(1), client_order_id=f"http-{time.time_ns()}-{i}"
    )


async def _timed(
    budget: Budget, send: Callable[[int], Awaitable[None]]
) -> dict[str, Any]:
    samples: list[int] = []
    clock = time.perf_counter_ns
    stop_at = clock() + int(budget.seconds * 1e9)
    cpu0 = time.process_time_ns()
    for i in range(budget.count):
        t0 = clock()
        await send(i)
        t1 = clock()
        samples.append(t1 - t0)
        if t1 > stop_at:
            break
    cpu = time.process_time_ns() - cpu0
    return {**latency_summary(samples), "cpu_us": round(cpu / len(samples) / 1e3, 1)}


async def _engine_alone(name: str, base_url: str, budget: Budget) -> dict[str, Any]:
    """``POST /v2/orders`` straight through the engine, the body built once per order."""
    engine = _open(name, base_url)
    json_type = {"Content-Type": "application/json"}

    async def send(i: int) -> None:
        body = msgspec.json.encode(order_body(_order(i)))
        client = engine if isinstance(engine, HttpcoreEngine) else engine.client()
        reply = await client.request("POST", "/v2/orders", content=body, headers=json_type)
        if reply.status_code != 200:
            raise RuntimeError(f"{name}: HTTP {reply.status_code} {reply.content[:200]!r}")

    try:
        await send(-1)  # connect outside the measurement
        return await _timed(budget, send)
    finally:
        await (engine.aclose() if isinstance(engine, HttpcoreEngine) else engine.close())


async def _through_connector(name: str, base_url: str, budget: Budget) -> dict[str, Any]:
    """``AlpacaConnector.submit`` on the engine (for httpcore, swapped in after ``connect``)."""
    settings = AlpacaSettings(api_key=Secret(KEY), api_secret=Secret(SECRET), base_url=base_url)
    # An httpx transport plugged in makes the pool an httpx.AsyncClient, as it was.
    transport = httpx.AsyncHTTPTransport() if name == "httpx" else None
    connector = AlpacaConnector("alpaca", settings, transport=transport)
    await connector.connect()
    if name == "httpcore":
        await connector._http.close()  # the bench swaps its engine in
        connector._http = _EnginePool(HttpcoreEngine(base_url))  # type: ignore[assignment]

    async def send(i: int) -> None:
        await connector.submit(_order(i))

    try:
        await send(-1)
        return await _timed(budget, send)
    finally:
        await connector.disconnect()


def _open(name: str, base_url: str) -> HttpcoreEngine | HttpPool:
    """The engine alone: httpcore's, or ``HttpPool`` as a connector opens it (on httpx or httptools)."""
    if name == "httpcore":
        return HttpcoreEngine(base_url)
    transport = httpx.AsyncHTTPTransport() if name == "httpx" else None
    pool = HttpPool("alpaca", AlpacaSettings(), transport=transport)
    pool.open(headers=HEADERS, base_url=base_url)
    return pool


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if isinstance(r.get(key), int | float)]
    return round(statistics.median(values), 1) if values else None


async def measure(budget: Budget, rounds: int) -> dict[str, Any]:
    """Every engine at both levels, taking turns ``rounds`` times; medians over the rounds."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        e: {"engine": [], "connector": []} for e in ENGINES
    }
    async with running_sim(fill_delay_s=0.05, fill_slices=1) as base_url:
        for _ in range(rounds):
            for name in ENGINES:
                runs[name]["engine"].append(await _engine_alone(name, base_url, budget))
                runs[name]["connector"].append(await _through_connector(name, base_url, budget))
    out: dict[str, Any] = {"rounds": rounds}
    for name, levels in runs.items():
        out[name] = {
            level: {
                "n": sum(r["n"] for r in rows),
                "p50_us": _median(rows, "p50_us"),
                "p99_us": _median(rows, "p99_us"),
                "cpu_us": _median(rows, "cpu_us"),
            }
            for level, rows in levels.items()
        }
    out["setup"] = (
        "ult sim alpaca child process; one 1-share market order at a time over one kept-alive"
        " connection; engines take turns each round; cpu = this process per order"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--orders", type=int, default=2_000, help="orders per engine, level and round")
    p.add_argument("--seconds", type=float, default=5.0, help="time bound of each of those runs")
    p.add_argument("--rounds", type=int, default=3, help="turns each engine takes (default 3)")
    args = p.parse_args(argv)
    from ult_actors.logsetup import configure_logging

    configure_logging(json=True, level="error")
    result = trio.run(measure, Budget(args.orders, args.seconds), args.rounds)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
