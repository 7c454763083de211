"""Position sync: the service's book of positions, kept in step with every broker.

At start and every ``sync_interval_s`` it pulls each broker's positions and
account; between pulls it applies fills from order updates (cumulative
``filled_qty`` deltas, so repeats change nothing). A pull that disagrees with
the book may only be ahead of the fill events; a disagreement seen on two
pulls in a row with no fill of that symbol in between is drift: it publishes
``PositionDrift`` and warns, then takes the broker's report as the truth. A
broker that cannot report (after a few tries) is *not* flat: that is drift
too (``broker_qty=None``), its book is kept, and its trading is put in
``reducing`` (fail closed). That restriction is the service's: once a report
arrives and the book agrees with it, positions asks risk to lift it. A
broker that gave no report is pulled again every ``unreported_retry_s``
rather than at the next interval, and one whose connection comes back up is
pulled at once, so trading resumes as soon as the broker does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog
import trio

from ult_actors.errors import UltError
from ult_actors.messages import (
    TERMINAL_STATUSES,
    AccountReset,
    ActorHealthChanged,
    BrokerCommand,
    Event,
    GetPositions,
    LiftRestriction,
    OrderUpdate,
    Position,
    PositionDrift,
    QueryPositions,
    RestrictTrading,
    SeedPositions,
)
from ult_actors.runtime.actor import ActorContext
from ult_actors.runtime.mailbox import CallTimeout, Envelope, Mailbox, call
from ult_actors.runtime.pubsub import EventBus

#: How many finished orders the book remembers, so their repeats are no-ops.
_DONE_KEPT = 100_000


@dataclass
class PositionBook:
    """Net positions by (broker, symbol), plus the broker's last full report."""

    qty: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    avg: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    reported: dict[tuple[str, str], Position] = field(default_factory=dict)
    filled: dict[str, Decimal] = field(default_factory=dict)
    synced_at: dict[str, int] = field(default_factory=dict)
    drift: dict[str, int] = field(default_factory=dict)  # broker -> drift count
    #: Fills applied per (broker, symbol): tells a lagging book from real drift.
    fills_seen: dict[tuple[str, str], int] = field(default_factory=dict)
    #: A disagreement seen on the last pull: (book qty, broker qty, fills_seen then).
    suspect: dict[tuple[str, str], tuple[Decimal, Decimal, int]] = field(default_factory=dict)
    #: Finished orders whose ``filled`` entry is kept a while (oldest first).
    done: dict[str, None] = field(default_factory=dict)
    #: Brokers whose last pull gave no report (their outage is reported once).
    unreported: set[str] = field(default_factory=set)

    def reset(self, event: AccountReset) -> None:
        """Take ``event``'s positions as the broker's whole book (its history restarted)."""
        broker = event.broker
        for table in (self.qty, self.avg, self.reported, self.fills_seen, self.suspect):
            for key in [k for k in table if k[0] == broker]:
                del table[key]
        for position in event.positions:
            key = (broker, position.symbol)
            self.qty[key] = position.qty
            self.avg[key] = position.avg_entry_price
            self.reported[key] = position

    def apply(self, update: OrderUpdate) -> None:
        order = update.order
        before = self.filled.get(order.client_order_id, Decimal(0))
        delta = order.filled_qty - before
        if delta > 0:
            key = (order.broker, order.symbol)
            signed = delta if order.side == "buy" else -delta
            old = self.qty.get(key, Decimal(0))
            new = old + signed
            price = order.avg_fill_price or Decimal(0)
            if old == 0 or (old > 0) == (signed > 0):
                self.avg[key] = (
                    self.avg.get(key, Decimal(0)) * abs(old) + price * abs(signed)
                ) / abs(new)
            elif new != 0 and (new > 0) != (old > 0):
                self.avg[key] = price
            self.qty[key] = new
            self.filled[order.client_order_id] = order.filled_qty
            self.fills_seen[key] = self.fills_seen.get(key, 0) + 1
        if order.status in TERMINAL_STATUSES:
            # Kept a while, so a repeated final report (or its fill event) adds nothing.
            self.done[order.client_order_id] = None
            while len(self.done) > _DONE_KEPT:
                oldest = next(iter(self.done))
                del self.done[oldest]
                self.filled.pop(oldest, None)

    def positions(self, broker: str | None = None) -> list[Position]:
        rows = []
        for (b, symbol), qty in sorted(self.qty.items()):
            if qty == 0 or (broker is not None and b != broker):
                continue
            reported = self.reported.get((b, symbol))
            rows.append(
                Position(
                    broker=b,
                    symbol=symbol,
                    qty=qty,
                    avg_entry_price=self.avg.get((b, symbol), Decimal(0)),
                    market_value=reported.market_value if reported else None,
                    unrealized_pl=reported.unrealized_pl if reported else None,
                    realized_pl=reported.realized_pl if reported else None,
                )
            )
        return rows


@dataclass
class PositionsDeps:
    """What the positions actor is built from."""

    brokers: dict[str, Mailbox[BrokerCommand]]
    bus: EventBus[Event]
    book: PositionBook
    sync_interval_s: float = 30.0
    now_ns: Callable[[], int] = time.time_ns
    #: Where to fail closed (risk's mailbox); ``None``: only report.
    risk: Mailbox[Any] | None = None
    #: Position pulls tried before a broker counts as giving no report.
    report_attempts: int = 3
    retry_delay_s: float = 1.0
    #: After a pull that gave no report, the next one comes this soon.
    unreported_retry_s: float = 5.0
    #: Broker by the name of its actor: a ``running`` health event of one triggers a pull.
    actors: dict[str, str] = field(default_factory=dict)


#: Longest a position request waits for a broker's first pull after a start.
_FIRST_PULL_WAIT_S = 5.0


async def sync_broker(deps: PositionsDeps, name: str, log: Any) -> bool:
    """Pull one broker's positions, report drift, and adopt the broker's view.

    Returns whether the broker reported.
    """
    book = deps.book
    try:
        reported = await _pull(deps, name)
    except (UltError, CallTimeout) as exc:
        if deps.risk is not None:
            await deps.risk.send(
                RestrictTrading(broker=name, reason=f"no position report: {exc}"), timeout=10.0
            )
        if name in book.unreported:
            log.debug("broker still gives no position report", broker=name, error=str(exc))
            return False
        book.unreported.add(name)
        symbols = [s for (b, s), q in book.qty.items() if b == name and q != 0]
        for symbol in symbols:
            deps.bus.publish(
                PositionDrift(
                    broker=name,
                    symbol=symbol,
                    book_qty=book.qty[(name, symbol)],
                    broker_qty=None,
                    ts=deps.now_ns(),
                )
            )
        book.drift[name] = book.drift.get(name, 0) + 1
        log.warning("broker gave no position report", broker=name, error=str(exc))
        return False
    book.unreported.discard(name)
    if name not in book.synced_at and deps.risk is not None:
        await deps.risk.send(SeedPositions(broker=name, positions=reported), timeout=10.0)
    theirs = {p.symbol: p for p in reported}
    ours = {s: q for (b, s), q in book.qty.items() if b == name and q != 0}
    for symbol in sorted(set(theirs) | set(ours)):
        broker_qty = theirs[symbol].qty if symbol in theirs else Decimal(0)
        book_qty = ours.get(symbol, Decimal(0))
        key = (name, symbol)
        if name in book.synced_at and broker_qty != book_qty:
            seen = book.fills_seen.get(key, 0)
            if book.suspect.get(key) != (book_qty, broker_qty, seen):
                # Maybe only fills on their way to us: look again next pull.
                book.suspect[key] = (book_qty, broker_qty, seen)
                continue
            deps.bus.publish(
                PositionDrift(
                    broker=name,
                    symbol=symbol,
                    book_qty=book_qty,
                    broker_qty=broker_qty,
                    ts=deps.now_ns(),
                )
            )
            book.drift[name] = book.drift.get(name, 0) + 1
            log.warning(
                "position drift",
                broker=name,
                symbol=symbol,
                book_qty=str(book_qty),
                broker_qty=str(broker_qty),
            )
        book.suspect.pop(key, None)
        book.qty[(name, symbol)] = broker_qty
        if symbol in theirs:
            book.avg[(name, symbol)] = theirs[symbol].avg_entry_price
            book.reported[(name, symbol)] = theirs[symbol]
        else:
            book.reported.pop((name, symbol), None)
    book.synced_at[name] = deps.now_ns()
    agrees = not any(broker == name for broker, _ in book.suspect)
    if agrees and deps.risk is not None:
        # Risk lifts a restriction only if the service set it; otherwise a no-op.
        await deps.risk.send(
            LiftRestriction(broker=name, reason="position report received and reconciled"),
            timeout=10.0,
        )
    return True


async def _pull(deps: PositionsDeps, name: str) -> list[Position]:
    """One broker's positions, tried ``report_attempts`` times."""
    for _ in range(max(1, deps.report_attempts) - 1):
        try:
            reported: list[Position] = await call(
                deps.brokers[name], QueryPositions(), timeout=10.0
            )
            return reported
        except (UltError, CallTimeout):
            await trio.sleep(deps.retry_delay_s)
    last: list[Position] = await call(deps.brokers[name], QueryPositions(), timeout=10.0)
    return last


def positions_actor(deps: PositionsDeps) -> Callable[[ActorContext[GetPositions]], Any]:
    """The positions actor's body."""

    async def start(ctx: ActorContext[GetPositions]) -> None:
        log: Any = structlog.get_logger().bind(actor=ctx.name)
        # One subscription, in publication order: a reset lands after the updates before it.
        events = deps.bus.subscribe(
            lambda e: isinstance(e, OrderUpdate | AccountReset), capacity=1 << 16
        )
        reconnects = deps.bus.subscribe(
            lambda e: isinstance(e, ActorHealthChanged)
            and e.state == "running"
            and e.name in deps.actors,
            capacity=1024,
        )

        async def follow_events() -> None:
            async for event in events:
                if isinstance(event, AccountReset):
                    deps.book.reset(event)
                else:
                    assert isinstance(event, OrderUpdate)
                    deps.book.apply(event)
            raise RuntimeError(f"positions fell behind the event stream: {events.dropped_reason}")

        # One pull of a broker at a time: a pull on reconnect may meet the periodic one.
        locks = {name: trio.Lock() for name in deps.brokers}

        # Set once a broker's first pull is over: an answer before it would show an empty
        # book as if it were the broker's (right after a start, say).
        first_pull = {name: trio.Event() for name in deps.brokers}

        async def sync(name: str) -> bool:
            async with locks[name]:
                reported = await sync_broker(deps, name, log)
            first_pull[name].set()
            return reported

        async def sync_forever(name: str) -> None:
            while True:
                reported = await sync(name)
                await trio.sleep(deps.sync_interval_s if reported else deps.unreported_retry_s)

        async def sync_on_reconnect(nursery: trio.Nursery) -> None:
            async for event in reconnects:
                assert isinstance(event, ActorHealthChanged)
                nursery.start_soon(sync, deps.actors[event.name])

        async def handle(env: Envelope[GetPositions]) -> None:
            asked = [env.msg.broker] if env.msg.broker in first_pull else list(first_pull)
            with trio.move_on_after(_FIRST_PULL_WAIT_S):
                for name in asked:
                    await first_pull[name].wait()
            ctx.reply(env, deps.book.positions(env.msg.broker))

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow_events)
                for name in deps.brokers:
                    nursery.start_soon(sync_forever, name)
                nursery.start_soon(sync_on_reconnect, nursery)
                ctx.started()
                mailbox = ctx.mailbox
                while True:
                    env = await mailbox.receive()
                    with ctx.handling(env):
                        await handle(env)
        finally:
            events.close()
            reconnects.close()

    return start
