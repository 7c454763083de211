"""actors: the actor path alone, in one process, with nothing durable and no socket.

``build_service`` with the paper broker keeping its account in memory and the
journal in memory (``memory_store_opener``); orders go straight into
``ServiceGateway.handle`` as the IPC server would hand them over:
gateway -> router -> risk -> broker actor -> paper -> reply, plus the events
every order publishes (risk, positions). This is the part the actor runtime
and the core actors own, so it is where their fixes show; the ``ult``
section adds the socket, the client, the journal and the paper account file.

Reports sequential p50/p99 and orders/s with ``window`` orders in flight,
each with this process's CPU time per order; once with the paper broker and
once with ``InstantConnector`` (fills at once, stores nothing), so the
paper broker's own share and the actor machinery's share can be told apart.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio

from bench.common import Budget, latency_summary, short_tempdir
from ult_actors.brokers.base import UpdateSink
from ult_actors.errors import NotFound
from ult_actors.messages import (
    Account,
    Order,
    OrderReply,
    OrderRequest,
    OrderUpdate,
    Position,
    Submit,
)


def _config(state_dir: Path) -> Any:
    from bench.ult import RISK_LIMITS
    from ult_actors.config import load_config

    risk = "\n".join(f"{k} = {v}" for k, v in RISK_LIMITS.items())
    path = state_dir / "ult.toml"
    path.write_text(
        f'[service]\nstate_dir = "{state_dir}"\n\n[risk]\n{risk}\n\n'
        '[brokers.paper]\nkind = "paper"\nlatency_ms = 0\nstate_path = ":memory:"\n'
        "starting_cash = 1000000000000\n"
    )
    return load_config(path, env={})


class InstantConnector:
    """A broker that fills every order at once and keeps nothing: the actor path's floor."""

    #: Filled here, at once (``brokers.base.AnswersInProcess``).
    answers_in_process = True

    def __init__(self, name: str) -> None:
        self.name = name
        self.ids = itertools.count(1)
        self.send, self.receive = trio.open_memory_channel[OrderUpdate](math.inf)

    async def connect(self) -> None:
        await trio.lowlevel.checkpoint()

    async def disconnect(self) -> None:
        await trio.lowlevel.checkpoint()

    async def submit(self, request: OrderRequest) -> Order:
        await trio.lowlevel.checkpoint_if_cancelled()
        assert request.client_order_id is not None
        order = Order(
            id=str(next(self.ids)), client_order_id=request.client_order_id, broker=self.name,
            symbol=request.symbol, side=request.side, qty=request.qty, type=request.type,
            time_in_force=request.time_in_force, status="filled", filled_qty=request.qty,
            avg_fill_price=Decimal(100),
        )  # fmt: skip
        self.send.send_nowait(OrderUpdate(order=order))
        return order

    async def cancel(self, order_id: str) -> Order:
        raise NotFound(order_id)

    async def get_order(self, order_id: str) -> Order:
        raise NotFound(order_id)

    async def get_order_by_client_id(self, client_order_id: str) -> Order:
        raise NotFound(client_order_id)

    async def open_orders(self) -> list[Order]:
        return []

    async def positions(self) -> list[Position]:
        return []

    async def account(self) -> Account:
        big = Decimal(10**12)
        return Account(broker=self.name, cash=big, buying_power=big, equity=big)

    async def stream_updates(
        self, sink: UpdateSink, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        async for update in self.receive:
            await sink(update)


def _submit(i: int) -> Submit:
    return Submit(
        id=i,
        order=OrderRequest(symbol="AAPL", side="buy", qty=Decimal(1), client_order_id=f"a-{i}"),
    )


async def measure(sequential: Budget, pipelined: Budget, *, window: int) -> dict[str, Any]:
    """The paper broker, then the instant broker."""
    paper = await measure_one(sequential, pipelined, window=window, instant=False)
    instant = await measure_one(sequential, pipelined, window=window, instant=True)
    return {
        **paper,
        "instant_broker": instant,
        "setup": "in-process build_service, paper state_path=:memory:, memory journal,"
        " risk limits on; ServiceGateway.handle as the IPC server calls it",
    }


async def measure_one(
    sequential: Budget, pipelined: Budget, *, window: int, instant: bool
) -> dict[str, Any]:
    """Sequential and windowed submits straight into the gateway."""
    from ult_actors.journal import memory_store_opener
    from ult_actors.service import build_service

    factories: Any = {"paper": lambda: InstantConnector("paper")} if instant else None
    with short_tempdir("ba-") as tmp:
        service = build_service(
            _config(tmp),
            env={},
            rng=random.Random(7),
            store_opener=memory_store_opener(),
            connector_factories=factories,
        )
        async with trio.open_nursery() as nursery:
            with trio.fail_after(30):
                await nursery.start(service.run)
            gateway = service.gateway
            ids = iter(range(1, 10**9))
            clock = time.perf_counter_ns

            async def one() -> int:
                t0 = clock()
                reply = await gateway.handle(_submit(next(ids)))
                assert isinstance(reply, OrderReply)
                return clock() - t0

            for _ in range(min(300, sequential.count)):  # warm up
                await one()

            samples: list[int] = []
            stop_at = clock() + int(sequential.seconds * 1e9)
            cpu0 = time.process_time()
            for _ in range(sequential.count):
                samples.append(await one())
                if clock() > stop_at:
                    break
            seq = latency_summary(samples)
            seq["cpu_us"] = round((time.process_time() - cpu0) / len(samples) * 1e6, 1)

            piped: list[int] = []
            left = pipelined.count
            stop_at = clock() + int(pipelined.seconds * 1e9)

            async def worker() -> None:
                nonlocal left
                while left > 0 and clock() < stop_at:
                    left -= 1
                    piped.append(await one())

            cpu0 = time.process_time()
            t0 = clock()
            with trio.fail_after(pipelined.seconds + 60):
                async with trio.open_nursery() as workers:
                    for _ in range(window):
                        workers.start_soon(worker)
            elapsed = (clock() - t0) / 1e9
            pipe = latency_summary(piped)
            nursery.cancel_scope.cancel()
    return {
        "sequential": seq,
        "pipelined": {
            "window": window,
            "n": len(piped),
            "per_s": round(len(piped) / elapsed, 1),
            "p50_us": pipe["p50_us"],
            "p99_us": pipe["p99_us"],
            "cpu_us": round((time.process_time() - cpu0) / max(1, len(piped)) * 1e6, 1),
        },
    }
