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
pulled at once (when it starts resyncing, as queries are served from then on,
and again once its actor is running), so trading resumes as soon as the broker
does: a reconnect's reconciliation can take seconds, and waiting for it held
the restriction that long after the venue answered again.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import structlog
import trio

from ult_actors.actors.commands import (
    BrokerCommand,
    LiftRestriction,
    QueryPositions,
    RestrictTrading,
    SeedPositions,
)
from ult_actors.actors.journal import JournalSlot
from ult_actors.actors.risk import RiskCommand
from ult_actors.errors import UltError
from ult_actors.fills import FillLedger
from ult_actors.holding import ZERO, Holding, SharedBooking, same_figure
from ult_actors.messages import (
    AccountReset,
    ActorHealthChanged,
    ConnectionStateChanged,
    Event,
    GetPositions,
    OrderUpdate,
    Position,
    PositionDrift,
)
from ult_actors.recent import Recent
from ult_actors.runtime import (
    ActorContext,
    CallTimeout,
    Envelope,
    EventBus,
    Mailbox,
    call,
    serve_mailbox,
)


class BookLine:
    """What the book holds of one (broker, symbol) beside its ``Holding``: one object, so a
    fill moves it with one look-up rather than one per figure (a native class, compiled)."""

    def __init__(self, holding: Holding | None = None) -> None:
        #: The book's ``Holding`` of the same (broker, symbol), ``holdings``' entry (``None``:
        #: none there), kept here too so a fill finds both with one look-up. Every write of
        #: ``holdings`` where the key has a line writes it here as well.
        self.holding = holding
        #: Realized P&L: the broker's last figure plus fills since (``None``: none known).
        self.realized: Decimal | None = None
        #: Last known price: the last fill's, or implied by a report (``None``: none yet).
        self.mark: Decimal | None = None
        #: The broker's report, shown as it is until a fill moves that position.
        self.reported: Position | None = None
        #: Fills applied: tells a lagging book from real drift.
        self.fills_seen = 0


@dataclass
class PositionBook:
    """Net positions by (broker, symbol) with their value and P&L, moved by each fill once.

    Between broker reports, a fill moves the quantity, the average price, the
    realized P&L (of the part it closes) and the mark (its price), so value
    and P&L move with the quantity; a broker report then replaces them with
    the broker's own figures.
    """

    holdings: dict[tuple[str, str], Holding] = field(default_factory=dict)
    #: Per (broker, symbol), its realized P&L, mark, report and fills seen.
    lines: dict[tuple[str, str], BookLine] = field(default_factory=dict)
    applied: FillLedger = field(default_factory=FillLedger)
    synced_at: dict[str, int] = field(default_factory=dict)
    drift: dict[str, int] = field(default_factory=dict)  # broker -> drift count
    #: A disagreement seen on the last pull: (book qty, broker qty, fills seen then).
    suspect: dict[tuple[str, str], tuple[Decimal, Decimal, int]] = field(default_factory=dict)
    #: Positions whose last report was not taken: fills came while it was on its way, so
    #: it may not hold them. The next report without such fills is taken as it is.
    unsettled: set[tuple[str, str]] = field(default_factory=set)

    #: Brokers whose last pull gave no report (their outage is reported once).
    unreported: set[str] = field(default_factory=set)
    #: When this book began (UTC ns); set by the first positions incarnation.
    started_ns: int = 0
    #: Executions whose fees are in ``realized`` already (``(broker, fill_id)``), bounded.
    fees_paid: Recent[tuple[str, str], None] = field(default_factory=lambda: Recent(100_000))
    #: The last fill booked, shared with risk's books (``service.py`` hands both the same).
    booking: SharedBooking = field(default_factory=SharedBooking)

    def reset(self, event: AccountReset) -> None:
        """Take ``event``'s positions as the broker's whole book (its history restarted)."""
        broker = event.broker
        tables: tuple[dict[tuple[str, str], Any], ...] = (self.holdings, self.lines, self.suspect)
        for table in tables:
            for key in [k for k in table if k[0] == broker]:
                del table[key]
        self.unsettled -= {k for k in self.unsettled if k[0] == broker}
        for position in event.positions:
            self.adopt(broker, position, position.symbol)

    def line(self, key: Any) -> BookLine:
        """The line of ``key``, a (broker, symbol) (made if it has none)."""
        # ``Any``: the caller's tuple as it is (compiled, a typed one is built anew).
        line = self.lines.get(key)
        if line is None:
            line = self.lines[key] = BookLine(self.holdings.get(key))
        return line

    def fills_seen(self, broker: str) -> dict[tuple[str, str], int]:
        """Fills applied so far per (broker, symbol) of ``broker``, where any were."""
        return {k: line.fills_seen for k, line in self.lines.items() if k[0] == broker}

    def qty(self, broker: str) -> dict[str, Decimal]:
        """Non-zero quantities of one broker by symbol."""
        return {s: h.qty for (b, s), h in self.holdings.items() if b == broker and h.qty}

    def apply(self, update: OrderUpdate) -> None:
        """Fold one order update in: only what it adds to the order's fill moves the book."""
        order = update.order
        if update.fill_only and order.updated_at < self.started_ns:
            # A state journaled before this book began: the reports it began from hold it.
            # (Newer ones are folded as usual: a broker actor that crashed between
            # journaling a state and publishing it repeats that state as fill_only.)
            return
        broker = order.broker
        # ``Any``: the key is built once. Compiled, a ``tuple[str, str]`` is kept unboxed
        # and a tuple object is built anew for each of the dict operations below.
        key: Any = (broker, order.symbol)
        paid = update.fill
        fees = ZERO
        if paid is not None:
            commission, named = paid.commission, paid.fees  # each read once
            if (commission or named) and self.fees_paid.add(
                (broker, paid.fill_id)  # a tuple: no string built
            ):
                # Realized P&L is net of what trading cost; an execution's fees are paid
                # once, whether its quantity came with it or with an earlier state of the
                # order. (A free execution needs no remembering; a commission alone needs
                # no sum.)
                fees = paid.total_fees if named else commission
        new = self.applied.advance(order)
        if new is None:
            if fees:
                line = self.line(key)
                line.realized = (ZERO if line.realized is None else line.realized) - fees
            return
        line = self.line(key)
        holding = line.holding  # ``holdings``' entry, without a second look-up
        if holding is None:
            holding = line.holding = self.holdings[key] = Holding()
        qty, part_price = new
        price = part_price or line.mark or holding.avg_price
        # Through the booking shared with risk's books: see ``SharedBooking``.
        pnl = self.booking.book(holding, qty, order.side == "buy", price)
        # The fees first, then the fill's P&L, in one write of the figure.
        realized = ZERO if line.realized is None else line.realized
        if fees:
            realized -= fees
        line.realized = realized + pnl
        line.mark = price
        line.reported = None
        line.fills_seen += 1

    def adopt(self, broker: str, report: Position | None, symbol: str) -> None:
        """Take the broker's figures for one symbol (``None``: it holds none)."""
        key = (broker, symbol)
        if report is None:
            holding = self.holdings[key] = Holding()
            line = self.lines.get(key)
            if line is not None:
                line.holding = holding
                line.reported = None
            return
        line = self.line(key)
        line.reported = report
        held = self.holdings.get(key)
        qty, avg = report.qty, report.avg_entry_price
        if held is None or not (same_figure(held.qty, qty) and same_figure(held.avg_price, avg)):
            line.holding = self.holdings[key] = Holding(qty=qty, avg_price=avg)
        # Else the book holds the report's figures already, digit for digit: kept as they
        # are, the next fill's booking still matches the one risk shares (``SharedBooking``).
        if report.realized_pl is not None:
            line.realized = report.realized_pl
        if report.market_value is not None and report.qty:
            line.mark = report.market_value / report.qty

    def positions(self, broker: str | None = None) -> list[Position]:
        """Open positions, valued at the last known price."""
        rows = []
        for (b, symbol), holding in sorted(self.holdings.items()):
            if holding.qty == 0 or (broker is not None and b != broker):
                continue
            line = self.lines.get((b, symbol)) or BookLine()
            reported = line.reported
            if reported is not None:
                rows.append(reported)
                continue
            mark = line.mark
            rows.append(
                Position(
                    broker=b,
                    symbol=symbol,
                    qty=holding.qty,
                    avg_entry_price=holding.avg_price,
                    market_value=None if mark is None else mark * holding.qty,
                    unrealized_pl=None
                    if mark is None
                    else (mark - holding.avg_price) * holding.qty,
                    realized_pl=line.realized,
                )
            )
        return rows


async def baseline_from_journal(journal: JournalSlot, applied: FillLedger) -> None:
    """Count the fills the journal knows of open orders as applied: a book started after
    a restart begins from the brokers' reports, which hold them already.

    Finished orders need no baseline: a later report of one repeats its final state
    (``fill_only``, last updated before the book began), which the books skip.
    """
    store = await journal.get()
    for order in await store.non_terminal():
        applied.baseline(order)


@dataclass
class PositionsDeps:
    """What the positions actor is built from."""

    brokers: dict[str, Mailbox[BrokerCommand]]
    bus: EventBus[Event]
    book: PositionBook
    sync_interval_s: float = 30.0
    now_ns: Callable[[], int] = time.time_ns
    #: Where to fail closed (risk's mailbox); ``None``: only report.
    risk: Mailbox[RiskCommand] | None = None
    #: Position pulls tried before a broker counts as giving no report.
    report_attempts: int = 3
    retry_delay_s: float = 1.0
    #: After a pull that gave no report, the next one comes this soon.
    unreported_retry_s: float = 5.0
    #: Broker by the name of its actor: a ``running`` health event of one triggers a pull
    #: (as does its connection entering ``resyncing``).
    actors: dict[str, str] = field(default_factory=dict)
    #: Where the fills known before a restart are read (``None``: start from nothing).
    journal: JournalSlot | None = None


#: Longest a position request waits for a broker's first pull after a start.
_FIRST_PULL_WAIT_S: Final = 5.0
#: The events folded into the book (``Final``s: C statics once compiled).
_FOLDED: Final[tuple[type[Event], ...]] = (OrderUpdate, AccountReset)
#: Asked of every event folded: a C static, not a look-up in the module's dict per event.
_UPDATE: Final = OrderUpdate


async def sync_broker(
    deps: PositionsDeps,
    name: str,
    log: Any,
    catch_up: Callable[[], None] | None = None,
) -> bool:
    """Pull one broker's positions, report drift, and adopt the broker's view.

    ``catch_up`` applies the order updates already published when the report
    arrives. A position with fills folded while the report was on its way is
    neither compared nor adopted this time: the broker may have answered
    before them (taking that report would undo them; a slow first report at
    start did so), or after them; the next report without such fills is taken
    as it is (``PositionBook.unsettled``), and comes after ``unreported_retry_s``.
    Returns whether the broker reported.
    """
    book = deps.book
    fills_before = book.fills_seen(name)
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
        for symbol, book_qty in sorted(book.qty(name).items()):
            deps.bus.publish(
                PositionDrift(
                    broker=name,
                    symbol=symbol,
                    book_qty=book_qty,
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
    if catch_up is not None:
        catch_up()
    theirs = {p.symbol: p for p in reported}
    ours = book.qty(name)
    for symbol in sorted(set(theirs) | set(ours)):
        broker_qty = theirs[symbol].qty if symbol in theirs else Decimal(0)
        book_qty = ours.get(symbol, Decimal(0))
        key = (name, symbol)
        line = book.lines.get(key)
        seen = 0 if line is None else line.fills_seen
        if seen != fills_before.get(key, 0):
            # Fills of it came while the report was on its way (folded as published):
            # the broker may have answered before them. Keep the book's figure for now.
            book.unsettled.add(key)
            continue
        if name in book.synced_at and key not in book.unsettled and broker_qty != book_qty:
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
        book.unsettled.discard(key)
        book.adopt(name, theirs.get(symbol), symbol)
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
                deps.brokers[name], QueryPositions(), timeout=10.0, answer=list
            )
            return reported
        except (UltError, CallTimeout):
            await trio.sleep(deps.retry_delay_s)
    last: list[Position] = await call(
        deps.brokers[name], QueryPositions(), timeout=10.0, answer=list
    )
    return last


def positions_actor(deps: PositionsDeps) -> Callable[[ActorContext[GetPositions]], Awaitable[None]]:
    """The positions actor's body."""

    async def start(ctx: ActorContext[GetPositions]) -> None:
        await _Positions(deps, ctx).run()

    return start


class _Positions:
    """One incarnation of the positions actor: it folds the order events into the book,
    pulls every broker's report on a timer and on reconnect, and answers position queries."""

    def __init__(self, deps: PositionsDeps, ctx: ActorContext[GetPositions]) -> None:
        self.deps = deps
        self.ctx = ctx
        self.book = deps.book
        self.log: Any = structlog.get_logger().bind(actor=ctx.name)
        # One subscription, in publication order: a reset lands after the updates before it.
        self.events = deps.bus.subscribe(kinds=_FOLDED, capacity=1 << 16)
        self.reconnects = deps.bus.subscribe(
            lambda e: (
                isinstance(e, ActorHealthChanged) and e.state == "running" and e.name in deps.actors
            )
            or (
                isinstance(e, ConnectionStateChanged)
                and e.state == "resyncing"
                and e.broker in deps.brokers
            ),
            capacity=1024,
            kinds=(ActorHealthChanged, ConnectionStateChanged),
        )
        # One pull of a broker at a time: a pull on reconnect may meet the periodic one.
        self.locks = {name: trio.Lock() for name in deps.brokers}
        # Set once a broker's first pull is over: an answer before it would show an empty
        # book as if it were the broker's (right after a start, say).
        self.first_pull = {name: trio.Event() for name in deps.brokers}
        #: Each broker's next periodic pull, (trio time, broker), earliest first: waited for
        #: by ``sync_forever``'s one task, not a sleeping task a broker.
        self.due: list[tuple[float, str]] = []
        #: Set to wake ``sync_forever`` when a pull comes due before the one it waits for.
        self.sooner = trio.Event()
        #: The trio time ``sync_forever`` waits until now.
        self.waiting_until = math.inf

    async def run(self) -> None:
        deps = self.deps
        if not self.book.started_ns:
            self.book.started_ns = deps.now_ns()
        try:
            if deps.journal is not None:
                # Before any update is applied: those the journal has are in the reports.
                await baseline_from_journal(deps.journal, self.book.applied)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.follow_events)
                for name in deps.brokers:  # each pulled now, then when due (``sync_forever``)
                    nursery.start_soon(self.sync_then_plan, name)
                nursery.start_soon(self.sync_forever, nursery)
                nursery.start_soon(self.sync_on_reconnect, nursery)
                await serve_mailbox(self.ctx, self.handle)
        finally:
            self.events.close()
            self.reconnects.close()

    def apply(self, event: Event) -> None:
        if isinstance(event, _UPDATE):  # the usual event first: no match per update
            self.book.apply(event)
        elif isinstance(event, AccountReset):
            self.book.reset(event)

    async def follow_events(self) -> None:
        # Folded as published (no wake-up per order); this loop takes what that could
        # not: events queued before it, and one whose fold raised (then this crashes here).
        self.events.fold_inline(self.apply)
        async for event in self.events:
            self.apply(event)
        raise RuntimeError(f"positions fell behind the event stream: {self.events.dropped_reason}")

    def catch_up(self) -> None:
        for event in self.events.drain():
            self.apply(event)

    async def sync(self, name: str) -> bool:
        async with self.locks[name]:
            reported = await sync_broker(self.deps, name, self.log, self.catch_up)
        self.first_pull[name].set()
        return reported

    async def sync_forever(self, nursery: trio.Nursery) -> None:
        """Pull each broker again when its next pull is due: every pull in a task of its
        own (``sync_then_plan``), so a slow or failing broker holds up no other's; this one
        task waits for whichever comes due first (1,000 connections: one waiting task, not
        a thousand; ready6)."""
        due = self.due
        while True:
            if due and due[0][0] <= trio.current_time():
                name = heapq.heappop(due)[1]
                nursery.start_soon(self.sync_then_plan, name)
                continue
            self.waiting_until = due[0][0] if due else math.inf
            self.sooner = trio.Event()
            with trio.move_on_at(self.waiting_until):
                await self.sooner.wait()

    async def sync_then_plan(self, name: str) -> None:
        """Pull ``name``, then plan its next pull: after ``sync_interval_s``, or after
        ``unreported_retry_s`` when it gave no report or the book is unsettled."""
        reported = await self.sync(name)
        settled = not any(broker == name for broker, _ in self.book.unsettled)
        wait = self.deps.sync_interval_s if reported and settled else self.deps.unreported_retry_s
        at = trio.current_time() + wait
        heapq.heappush(self.due, (at, name))
        if at < self.waiting_until:
            self.sooner.set()

    async def sync_on_reconnect(self, nursery: trio.Nursery) -> None:
        async for event in self.reconnects:
            match event:
                case ActorHealthChanged(name=actor):
                    nursery.start_soon(self.sync, self.deps.actors[actor])
                case ConnectionStateChanged(broker=name):
                    nursery.start_soon(self.sync, name)

    async def handle(self, env: Envelope[GetPositions]) -> None:
        # An order's events held for its reply (``AfterReply``): the book takes them first.
        self.deps.bus.release_held()
        broker = env.msg.broker
        asked = [broker] if broker in self.first_pull else list(self.first_pull)
        with trio.move_on_after(_FIRST_PULL_WAIT_S):
            for name in asked:
                await self.first_pull[name].wait()
        self.ctx.reply(env, self.book.positions(broker))
