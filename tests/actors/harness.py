"""What the actor tests share: order requests and updates, and the service tree on real paper brokers.

No tests live here; the test modules import these helpers.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from ult_actors.actors.reconcile import ReconcilePolicy
from ult_actors.actors.risk import RiskState, apply_event
from ult_actors.brokers.base import Connector
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.config import (
    BrokerEntry,
    JournalSection,
    RiskSection,
    ServiceConfig,
    ServiceSection,
)
from ult_actors.errors import RiskRejected
from ult_actors.messages import (
    Order,
    OrderListRequest,
    OrderReply,
    OrderRequest,
    OrdersReply,
    OrderStatus,
    OrderUpdate,
    Submit,
    SubmitList,
)
from ult_actors.service import Service, build_service

DAY_NS = 86_400 * 10**9
NOW_NS = 20_000 * DAY_NS + 10 * 3_600 * 10**9
_coids = (f"r-{i}" for i in itertools.count(1))


def req(**fields: Any) -> OrderRequest:
    fields.setdefault("symbol", "AAPL")
    fields.setdefault("side", "buy")
    fields.setdefault("broker", "paper")
    fields.setdefault("client_order_id", next(_coids))
    fields["qty"] = Decimal(str(fields.get("qty", 10)))
    if "limit_price" in fields:
        fields["limit_price"] = Decimal(str(fields["limit_price"]))
        fields.setdefault("type", "limit")
    return OrderRequest(**fields)


def update(
    coid: str,
    status: OrderStatus,
    *,
    side: str = "buy",
    qty: int = 10,
    filled: int = 0,
    avg: str | None = None,
    symbol: str = "AAPL",
    broker: str = "paper",
) -> OrderUpdate:
    return OrderUpdate(
        order=Order(
            id=f"id-{coid}",
            client_order_id=coid,
            broker=broker,
            symbol=symbol,
            side=side,  # type: ignore[arg-type]
            qty=Decimal(qty),
            type="market",
            time_in_force="day",
            status=status,
            filled_qty=Decimal(filled),
            avg_fill_price=Decimal(avg) if avg else None,
        )
    )


def fill(state: RiskState, side: str, qty: int, price: str, now_ns: int = NOW_NS) -> None:
    """A whole market order filled at ``price``."""
    coid = next(_coids)
    apply_event(state, update(coid, "accepted", side=side, qty=qty), now_ns)
    apply_event(state, update(coid, "filled", side=side, qty=qty, filled=qty, avg=price), now_ns)


def exact_paper_settings(**overrides: Any) -> PaperSettings:
    """A paper broker with exact prices and no clock: AAPL at 100, no slippage,
    impact or commission, nothing moving unless an order does."""
    return PaperSettings(
        tick_interval_s=0,
        slippage_bps=Decimal(0),
        size_impact_bps_per_share=Decimal(0),
        commission_per_share=Decimal(0),
        start_prices={"AAPL": Decimal(100)},
        **overrides,
    )


class PatchablePaper(PaperConnector):
    """The real paper connector as an interpreted class, whose methods a test may replace
    (``monkeypatch.setattr``): the compiled build's ``PaperConnector`` refuses that."""


@asynccontextmanager
async def paper_service(
    tmp_path: Path,
    *names: str,
    now_ns: Callable[[], int] | None = None,
    paper: PaperSettings | None = None,
    journal: JournalSection | None = None,
    **risk: Any,
) -> AsyncIterator[tuple[Service, dict[str, list[PaperConnector]]]]:
    """The tree on real paper brokers (``paper``, by default exact prices and no clock)
    and a journal file (``journal``, by default the default one's); yields the connectors
    made."""
    names = names or ("paper",)
    settings = paper or exact_paper_settings()
    cfg = ServiceConfig(
        service=ServiceSection(default_broker=names[0], state_dir=str(tmp_path)),
        risk=RiskSection(**risk),
        brokers=[BrokerEntry(name=n, kind="paper", enabled=True, settings=settings) for n in names],
        journal=journal or JournalSection(),
    )
    made: dict[str, list[PaperConnector]] = {n: [] for n in names}

    def factory(name: str) -> Callable[[], Connector]:
        path = str(tmp_path / f"paper-{name}.db")

        def make() -> Connector:
            connector = PatchablePaper(
                name,
                settings.__class__(
                    **{
                        **{f: getattr(settings, f) for f in settings.__struct_fields__},
                        "state_path": path,
                    }
                ),
                now_ns=now_ns or (lambda: NOW_NS),
            )
            made[name].append(connector)
            return connector

        return make

    svc = build_service(
        cfg,
        env={},
        rng=random.Random(3),
        now_ns=now_ns or (lambda: NOW_NS),
        connector_factories={n: factory(n) for n in names},
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.run)
        yield svc, made
        nursery.cancel_scope.cancel()


_req_ids = itertools.count(1)


async def submit(svc: Service, **fields: Any) -> Order:
    fields.pop("client_order_id", None)
    request = req(broker=fields.pop("broker", None), **fields)
    request = OrderRequest(
        **{**{f: getattr(request, f) for f in request.__struct_fields__}, "client_order_id": None}
    )
    with trio.fail_after(10):
        reply = await svc.gateway.handle(Submit(id=next(_req_ids), order=request))
    assert isinstance(reply, OrderReply)
    return reply.order


async def refused(svc: Service, **fields: Any) -> RiskRejected:
    with pytest.raises(RiskRejected) as info:
        await submit(svc, **fields)
    return info.value


async def settle() -> None:
    """Let every actor take in what was published (events reach risk asynchronously)."""
    with trio.fail_after(10):
        await trio.testing.wait_all_tasks_blocked()


@asynccontextmanager
async def paper_lists_service(
    tmp_path: Path, connector: Callable[[PaperSettings], PaperConnector]
) -> AsyncIterator[Service]:
    """The tree on one paper broker, ``connector(settings)`` for each incarnation (the
    emulated-list tests' paper: without some native lists), its clock stopped."""
    settings = PaperSettings(tick_interval_s=0, state_path=str(tmp_path / "paper-paper.db"))
    cfg = ServiceConfig(
        service=ServiceSection(default_broker="paper", state_dir=str(tmp_path)),
        brokers=[BrokerEntry(name="paper", kind="paper", enabled=True, settings=settings)],
    )
    svc = build_service(
        cfg,
        env={},
        rng=random.Random(5),
        connector_factories={"paper": lambda: connector(settings)},
        reconcile=ReconcilePolicy(settle_grace_s=0.05, interval_s=0.05),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.run)
        yield svc
        nursery.cancel_scope.cancel()


async def submit_named_list(svc: Service, request: OrderListRequest, *coids: str) -> list[Order]:
    """Submit ``request`` with its legs named ``coids``; every leg as answered."""
    legs = [
        msgspec.structs.replace(leg, client_order_id=coid)
        for leg, coid in zip(request.legs, coids, strict=True)
    ]
    with trio.fail_after(10):
        reply = await svc.gateway.handle(
            SubmitList(id=next(_req_ids), orders=msgspec.structs.replace(request, legs=legs))
        )
    assert isinstance(reply, OrdersReply), reply
    return reply.orders


async def journaled(svc: Service, coid: str, *wanted: str) -> Order:
    """Wait (bounded) until the journal has ``coid`` in one of ``wanted``."""
    with trio.fail_after(10):
        while True:
            found = await (await svc.journal.get()).get(coid)
            if found is not None and found.status in wanted:
                return found
            await trio.sleep(0.01)
