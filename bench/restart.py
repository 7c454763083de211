"""Restart: how long a broker connection is gone when it fails.

Measured here, each over several samples, on in-process services whose
paper connector is wrapped (``ult_actors.testing.connector``) so it can be
made to fail on demand:

- **crash**: an idle broker actor's update stream raises; measured from the
  crash to the supervisor reporting the actor ``running`` again, and to the
  answer of an order sent as soon as the actor is seen down (it waits in the
  mailbox for the next incarnation). Taken with the default supervision
  config (the backoff is a jittered draw from [0, 100 ms] on a first
  restart) and with zero backoff, which is what the restart machinery itself
  costs. Every sample uses a fresh service, so each crash is a first crash
  (no growing backoff, no restart intensity).
- **mid-submit**: the connector raises after the broker applied an order and
  before it answered; measured from the submit to its answer (``internal``:
  the request that crashed the actor is answered, not redelivered) and to the
  order settled in the journal (restart, reconciliation finding it at the
  broker by client order id).

The Alpaca simulator dropping its connections is measured by
``bench.peer.measure_drop`` (it runs the simulator and ``ult serve``).
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio

from bench.common import latency_summary, short_tempdir
from ult_actors.brokers.base import Connector
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.errors import Internal
from ult_actors.messages import (
    ActorHealthChanged,
    OrderReply,
    OrderRequest,
    OrderUpdate,
    Submit,
)
from ult_actors.service import Service, build_service
from ult_actors.testing.connector import FaultPlan, FaultyConnector


def _inner_factory(name: str, state_dir: Path) -> tuple[str, Callable[[], Connector]]:
    from ult_actors.brokers.registry import broker_kind

    kind = broker_kind("paper")
    settings = _zero_latency(kind.settings_type()(), state_dir / f"paper-{name}.db")
    return "paper", kind.factory(name, settings)


def _zero_latency(settings: Any, state_path: Path) -> Any:
    """Paper settings without simulated latency, with their own state file."""
    import msgspec

    fields = {f.name for f in msgspec.structs.fields(settings)}
    changes: dict[str, Any] = {}
    for name in ("latency_ms", "latency_jitter_ms"):
        if name in fields:
            changes[name] = 0
    if "state_path" in fields:
        changes["state_path"] = str(state_path)
    return msgspec.structs.replace(settings, **changes)


@asynccontextmanager
async def _service(
    state_dir: Path, seed: int, *, backoff_ms: int | None
) -> AsyncIterator[tuple[Service, FaultPlan, str]]:
    cfg = ServiceConfig(
        service=ServiceSection(default_broker="paper", state_dir=str(state_dir)),
        brokers=[BrokerEntry(name="paper", kind="paper", enabled=True, settings=None)],
    )
    if backoff_ms is not None:
        cfg.supervision.backoff_initial_ms = backoff_ms
    plan = FaultPlan()
    connector, make_inner = _inner_factory("paper", state_dir)
    factories = {"paper": lambda: FaultyConnector(make_inner(), plan)}
    service = build_service(
        cfg, env={}, rng=random.Random(seed), connector_factories=factories  # type: ignore[dict-item]
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(30):
            await nursery.start(service.run)
        yield service, plan, connector
        nursery.cancel_scope.cancel()


def _submit(n: int) -> Submit:
    return Submit(
        id=n,
        order=OrderRequest(
            symbol="AAPL", side="buy", qty=Decimal(1), client_order_id=f"restart-{n}"
        ),
    )


async def _one_crash(
    state_dir: Path, seed: int, backoff_ms: int | None, order_no: int
) -> tuple[int, int, str]:
    """An idle broker actor's connection fails: (ns to running again, ns to an order answered).

    The order is sent as soon as the actor is seen down, so it waits in the
    mailbox for the next incarnation: the time until orders flow again.
    """
    async with _service(state_dir, seed, backoff_ms=backoff_ms) as (service, plan, connector):
        health = service.bus.subscribe(
            lambda e: isinstance(e, ActorHealthChanged) and e.name == "broker.paper",
            capacity=64,
        )
        running_ns = order_ns = 0
        down = trio.Event()
        with trio.fail_after(30):
            t0 = time.perf_counter_ns()
            plan.pull.set()

            async def wait_running() -> None:
                nonlocal running_ns
                async for event in health:
                    assert isinstance(event, ActorHealthChanged)
                    if event.state != "running":
                        down.set()
                    elif down.is_set():
                        running_ns = time.perf_counter_ns() - t0
                        return

            async def next_order() -> None:
                nonlocal order_ns
                await down.wait()
                reply = await service.gateway.handle(_submit(order_no))
                assert isinstance(reply, OrderReply)
                order_ns = time.perf_counter_ns() - t0

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_running)
                nursery.start_soon(next_order)
        health.close()
    return running_ns, order_ns, connector


async def _one_mid_submit_crash(state_dir: Path, seed: int, order_no: int) -> tuple[int, int]:
    """The actor crashes after the broker applied an order and before it answered.

    Measured from the submit: to its answer (the crash, as ``internal``), and to the
    order filled in the journal (the restart's reconciliation found it at the broker).
    """
    async with _service(state_dir, seed, backoff_ms=None) as (service, plan, _connector):
        plan.crash_after_apply = 1
        coid = f"restart-{order_no}"
        filled = service.bus.subscribe(
            lambda e: isinstance(e, OrderUpdate)
            and e.order.client_order_id == coid
            and e.order.status == "filled",
            capacity=16,
        )
        with trio.fail_after(60):
            t0 = time.perf_counter_ns()
            try:
                await service.gateway.handle(_submit(order_no))
            except Internal:
                pass
            else:
                raise AssertionError("the submit that crashed its actor was answered as a success")
            answered_ns = time.perf_counter_ns() - t0
            await filled.receive()  # journaled, then published
            settled_ns = time.perf_counter_ns() - t0
        filled.close()
        return answered_ns, settled_ns


async def measure_crash(samples: int, seconds: float) -> dict[str, Any]:
    """Crash-to-running and crash-to-next-order, default and zero backoff; mid-submit crash."""
    out: dict[str, Any] = {}
    stop_at = time.perf_counter() + seconds
    connector = "?"
    for label, backoff_ms in (("default_backoff", None), ("zero_backoff", 0)):
        running: list[int] = []
        orders: list[int] = []
        with short_tempdir("br-") as tmp:
            for i in range(samples):
                sample_dir = tmp / str(i)
                sample_dir.mkdir()
                r, o, connector = await _one_crash(sample_dir, 1000 + i, backoff_ms, i + 1)
                running.append(r)
                orders.append(o)
                if time.perf_counter() > stop_at and len(running) >= 3:
                    break
        out[label] = {
            "to_running": latency_summary(running),
            "to_first_order": latency_summary(orders),
        }
    answered: list[int] = []
    settled: list[int] = []
    with short_tempdir("br-") as tmp:
        for i in range(max(1, samples // 5)):
            sample_dir = tmp / str(i)
            sample_dir.mkdir()
            a, b = await _one_mid_submit_crash(sample_dir, 2000 + i, i + 1)
            answered.append(a)
            settled.append(b)
    out["mid_submit"] = {
        "to_answer": latency_summary(answered),
        "to_settled": latency_summary(settled),
    }
    out["connector"] = connector
    return out
