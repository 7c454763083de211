"""Instructions per order of risk's and positions' part of a paper order, counted by valgrind.

What the books cost an order on the service's path, without the service:
risk's check and count of a new order (``admit``, as the router's gate runs
it), then the order's filled ``OrderUpdate`` published on an ``EventBus``
that risk and positions fold inline, as their actors subscribe to it (with
the bench's five limits, market buys of 1 AAPL at a walking price with the
paper venue's commission). ``--warmup`` orders first, then ``--orders``
more; each figure is two runs under ``valgrind --tool=cachegrind``, one with
``--orders`` more orders than the other, over ``--orders``. Both runs build
the same orders and updates, so only the books' work differs.

Parts: ``cycle`` (the whole: check, publish, both folds), ``full`` (the
same with the books' memories of finished orders and paid fees full, so
that each order makes them forget one: a service past 100,000 orders),
``admit`` (risk's check alone), ``bus`` (the publish with folds that do
nothing: the bus's own share).

    python -m bench.books --orders 4000               # all four parts
    python -m bench.books --drive cycle 200 1000      # one run, no valgrind
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
from decimal import Decimal

import trio

from bench.instructions import instructions_of
from bench.ult import RISK_LIMITS
from ult_actors.actors.positions import PositionBook, PositionsDeps, _Positions
from ult_actors.actors.risk import RiskDeps, RiskLimits, RiskState, _Risk
from ult_actors.collector import settle_after_start
from ult_actors.fills import DONE_KEPT, FillLedger, SharedAdvance
from ult_actors.messages import Event, Fill, Order, OrderRequest, OrderUpdate
from ult_actors.recent import Recent
from ult_actors.runtime import ActorContext, EventBus

PARTS = ("cycle", "full", "admit", "bus")
#: How many finished orders and paid fees the books remember in ``full``.
_FULL_KEPT = 100
#: The clock both books read: one fixed instant (``updated_at`` of every order).
_NOW_NS = 1_700_000_000 * 10**9


def _orders(count: int) -> list[tuple[OrderRequest, OrderUpdate]]:
    """``count`` requests and their filled updates, prices walking by cents from 187.12."""
    rng = random.Random(16)
    price = Decimal("187.12")
    built = []
    for i in range(count):
        price += Decimal(rng.randint(-5, 5)) / 100
        coid = f"bench-{i}"
        request = OrderRequest(
            symbol="AAPL", side="buy", qty=Decimal(1), client_order_id=coid, broker="paper"
        )
        order = Order(
            id=f"p-{i}", client_order_id=coid, broker="paper", symbol="AAPL", side="buy",
            qty=Decimal(1), type="market", time_in_force="day", status="filled",
            filled_qty=Decimal(1), avg_fill_price=price, created_at=_NOW_NS, updated_at=_NOW_NS,
        )  # fmt: skip
        fill = Fill(
            fill_id=f"f-{i}", order_id=order.id, client_order_id=coid, broker="paper",
            symbol="AAPL", side="buy", qty=Decimal(1), price=price, commission=Decimal("0.005"),
        )  # fmt: skip
        built.append((request, OrderUpdate(order=order, fill=fill)))
    return built


def _context(name: str) -> ActorContext[object]:
    return ActorContext(name, None, incarnation=1, on_started=lambda: None, on_failed=print)


async def drive(part: str, warmup: int, orders: int, built: int) -> None:
    """Build ``built`` orders, then run ``warmup`` and ``orders`` of them through ``part``."""
    if warmup + orders > built:
        raise SystemExit(f"at most {built} orders in all")
    bus: EventBus[Event] = EventBus()
    limits = RiskLimits(
        max_order_qty=Decimal(RISK_LIMITS["max_order_qty"]),
        max_position_per_symbol=Decimal(RISK_LIMITS["max_position_per_symbol"]),
        max_open_orders=RISK_LIMITS["max_open_orders"],
        max_orders_per_second=float(RISK_LIMITS["max_orders_per_second"]),
        daily_loss_limit=Decimal(RISK_LIMITS["daily_loss_limit"]),
    )

    def now_ns() -> int:
        return _NOW_NS

    kept = _FULL_KEPT if part == "full" else DONE_KEPT
    advance = SharedAdvance()  # as the service shares it
    state = RiskState(applied=FillLedger(kept, advance))
    book = PositionBook(
        applied=FillLedger(kept, advance),
        fees_paid=Recent(kept),
        started_ns=_NOW_NS - 1,
        booking=state.booking,  # as the service shares it
    )
    risk = _Risk(
        RiskDeps(limits=limits, brokers={}, bus=bus, state=state, now_ns=now_ns),
        _context("risk"),  # type: ignore[arg-type]
    )
    positions = _Positions(
        PositionsDeps(brokers={}, bus=bus, book=book),
        _context("positions"),  # type: ignore[arg-type]
    )
    risk.clock = trio.lowlevel.current_clock()  # as its ``run`` does
    positions.events.fold_inline(positions.apply)  # as its ``follow_events`` does
    if part == "bus":
        risk.events.fold_inline(lambda event: None)
        positions.events.fold_inline(lambda event: None)
    settle_after_start()  # the collector as the service runs it once ready
    deadline = trio.current_time() + 60.0
    for request, update in _orders(built)[: warmup + orders]:
        if part != "bus":
            risk.admit(request, deadline)
        if part != "admit":
            bus.publish(update)
    assert not risk.events.queued and not positions.events.queued


def measure(part: str, warmup: int, orders: int) -> int:
    """Instructions per order of ``part`` (two runs under valgrind)."""
    built = ["--built", str(warmup + orders)]
    runs = [
        instructions_of(["-m", "bench.books", *built, "--drive", part, str(warmup), str(n)])
        for n in (0, orders)
    ]
    return round((runs[1] - runs[0]) / orders)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=4000, help="orders per measured run")
    parser.add_argument("--warmup", type=int, default=200, help="orders first, in both runs")
    parser.add_argument("--part", choices=PARTS, action="append", help="(all four)")
    parser.add_argument("--built", type=int, help="orders built (default: all driven)")
    parser.add_argument(
        "--drive", nargs=3, metavar=("PART", "WARMUP", "ORDERS"),
        help="run once without valgrind; what each measurement runs",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.drive:
        warmup, orders = int(args.drive[1]), int(args.drive[2])
        trio.run(drive, args.drive[0], warmup, orders, args.built or warmup + orders)
        return 0
    if shutil.which("valgrind") is None:
        print("unavailable: valgrind is not installed")
        return 1
    # The same string hashes in every run, so dicts' collisions cost the runs alike.
    os.environ.setdefault("PYTHONHASHSEED", "0")
    print(f"instructions per order, risk and positions ({args.orders} orders after {args.warmup})")
    for part in args.part or PARTS:
        print(f"  {part:8s} {measure(part, args.warmup, args.orders):>9,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
