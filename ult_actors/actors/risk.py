"""Pre-trade risk: limits, trading state and the kill switch.

Every order passes here between the router and its broker. The checks use
the risk actor's own view of open orders and net positions, kept from the
order-update events (cumulative ``filled_qty`` deltas, so a repeated update
changes nothing). Trading states: ``active`` (all orders), ``reducing``
(only orders that shrink an existing position), ``halted`` (none; cancels
still go through). The kill switch halts and cancels every open order.

Each state records who set it (a person, the service, the configuration),
why and when. The service restricts a broker for a cause (no position
report) and lifts that restriction itself once the cause is gone; a state a
person set waits for a person, and a person's word replaces the service's.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import takewhile
from pathlib import Path
from typing import Any, Final

import msgspec
import structlog
import trio

from ult_actors.actors.commands import (
    BrokerCommand,
    CancelAll,
    CloseOut,
    LiftRestriction,
    PlaceList,
    PlaceOrder,
    ReplaceOrder,
    RestrictTrading,
    SeedPositions,
)
from ult_actors.actors.journal import JournalSlot
from ult_actors.actors.lookup import known_broker
from ult_actors.actors.trading_state import SavedTradingState, save_trading_state
from ult_actors.errors import RiskRejected, UltError
from ult_actors.fills import FillLedger
from ult_actors.holding import ZERO, Holding, SharedBooking
from ult_actors.messages import (
    OPEN_STATUSES,
    AccountReset,
    Event,
    OkReply,
    Order,
    OrderRequest,
    OrderUpdate,
    SetBy,
    SetKillSwitch,
    SetTradingState,
    TradingSetting,
    TradingState,
    TradingStateChanged,
)
from ult_actors.runtime import ActorContext, Envelope, EventBus, Mailbox, call, serve_mailbox

RiskCommand = (
    PlaceOrder
    | PlaceList
    | ReplaceOrder
    | CloseOut
    | SetKillSwitch
    | SetTradingState
    | RestrictTrading
    | LiftRestriction
    | SeedPositions
)

# ``Final``: compiled, these are C statics, not a look-up in the module's dict per use
# (``OPEN_STATUSES`` comes from a module that is not compiled).
_DAY_NS: Final = 86_400 * 1_000_000_000
#: How long past its deadline an order may go unreported before risk stops counting it.
_REPORT_GRACE_S: Final = 30.0
_STRICTNESS: Final = {"active": 0, "reducing": 1, "halted": 2}
_OPEN: Final = OPEN_STATUSES
#: The events folded into the books.
_FOLDED: Final[tuple[type[Event], ...]] = (OrderUpdate, AccountReset)
#: Asked of every event folded: a C static, not a look-up in the module's dict per event.
_UPDATE: Final = OrderUpdate


@dataclass(frozen=True)
class RiskLimits:
    """Pre-trade limits; ``None`` means not checked."""

    max_order_qty: Decimal | None = None
    max_order_notional: Decimal | None = None
    max_position_per_symbol: Decimal | None = None
    max_open_orders: int | None = None
    max_orders_per_second: float | None = None
    daily_loss_limit: Decimal | None = None
    allowed_symbols: frozenset[str] = frozenset()


class OpenOrder:
    """An open order as risk counts it: its unfilled ``qty``, and the (broker, symbol, side)
    ``key`` that counts under in ``RiskState.open_qty``. Not its request: a native class
    (compiled), so dropping the order reads no Struct field."""

    def __init__(self, key: Any, qty: Decimal) -> None:
        # ``Any``: the (broker, symbol, side) tuple kept as it was built (compiled, a typed
        # tuple is unboxed and built anew for each dict operation).
        self.key = key
        self.qty = qty


@dataclass
class RiskState:
    """Everything the risk checks look at; rebuilt from events on restart."""

    trading: TradingState = "active"
    broker_trading: dict[str, TradingState] = field(default_factory=dict)
    #: Who set each state and why: ``""`` for the global one, else the broker's name.
    settings: dict[str, TradingSetting] = field(default_factory=dict)
    #: Open orders by client order id, as risk counts them.
    open_orders: dict[str, OpenOrder] = field(default_factory=dict)
    #: Unfilled qty of open orders by (broker, symbol, side): the checks read it per order.
    open_qty: dict[tuple[str, str, str], Decimal] = field(default_factory=dict)
    #: What each order's fill has added to ``books`` (each fill counted once).
    applied: FillLedger = field(default_factory=FillLedger)
    books: dict[tuple[str, str], Holding] = field(default_factory=dict)
    #: The last fill booked, shared with the positions book (``service.py`` hands both
    #: the same one): what it worked out, the other takes.
    booking: SharedBooking = field(default_factory=SharedBooking)
    last_price: dict[str, Decimal] = field(default_factory=dict)
    realized_today: Decimal = Decimal(0)
    day: int = 0
    #: ``day``'s span in UTC ns, [start, end): a reading inside it needs no ``roll_day``
    #: (two comparisons per order instead of a division of the clock).
    day_starts_ns: int = 0
    day_ends_ns: int = _DAY_NS
    tokens: float = 0.0
    #: When the rate bucket was last filled; ``None``: not yet, it starts full.
    tokens_at: float | None = None

    #: Orders sent on with no report from their broker yet: client order id -> when to
    #: give up on one (its deadline plus a grace). One that never reached its broker
    #: (its deadline passed in the broker's mailbox) must not hold a slot forever.
    unconfirmed: dict[str, float] = field(default_factory=dict)
    #: When risk's books began (UTC ns); set by the first risk incarnation.
    started_ns: int = 0
    #: Brokers whose first position report has been offered (``seed_books``).
    seeded: set[str] = field(default_factory=set)

    def forget_unreported(self, now: float) -> None:
        """Drop open orders whose broker never reported them, oldest first."""
        if not self.unconfirmed or next(iter(self.unconfirmed.values())) > now:
            return  # nothing due: the common case, on every new order
        # Oldest sent first; the first one not yet due ends the pass (the rest came later).
        due = takewhile(lambda entry: entry[1] <= now, self.unconfirmed.items())
        for coid in [coid for coid, _ in due]:
            del self.unconfirmed[coid]
            self.drop_open(coid)

    def set_open(self, request: OrderRequest) -> None:
        """Track ``request`` (its unfilled qty) as an open order, replacing an earlier view."""
        coid = request.client_order_id
        assert coid is not None
        if coid in self.open_orders:  # a new order is not: no call for it
            self.drop_open(coid)
        # ``Any``: the key is built once (compiled, a typed tuple is built anew per use).
        key: Any = (request.broker or "", request.symbol, request.side)
        qty = request.qty
        self.open_orders[coid] = OpenOrder(key, qty)
        pending = self.open_qty.get(key)
        # Nothing else open on its side (the usual case): the order's own quantity object,
        # which its drop then finds as it is (``0 + qty`` is ``qty``: no positive exponent).
        self.open_qty[key] = qty if pending is None else pending + qty

    def drop_open(self, client_order_id: str) -> None:
        """Forget an open order (finished, or about to be replaced)."""
        open_orders = self.open_orders
        old = open_orders.get(client_order_id)
        if old is not None:
            del open_orders[client_order_id]  # not ``pop``: compiled, a method call by name
            key = old.key
            open_qty = self.open_qty
            pending = open_qty[key]
            qty = old.qty
            # The only order open on its side (``set_open`` kept its quantity): none left.
            left = None if pending is qty else pending - qty
            if left:
                open_qty[key] = left
            else:
                del open_qty[key]


class RiskGate:
    """Risk's check of a new order, run by the router in its own step when that is the
    same as a trip through risk's mailbox, saving the hop (a task step, a scheduler round).

    It is the same while a risk incarnation serves its mailbox and nothing waits in
    it: risk would take that order next, so nothing queued there (a kill switch, an
    earlier order) is overtaken. Otherwise the router sends the order through the
    mailbox as before. The check is risk's own code on risk's own state; a bug in it
    (any error but a refusal) shuts the gate, and the order goes through the mailbox,
    where the same check crashes risk and its supervisor restarts it, as before.
    """

    def __init__(self, mailbox: Mailbox[RiskCommand]) -> None:
        self._mailbox = mailbox
        #: The serving incarnation's check (``None``: none serves now).
        self._admit: Callable[[OrderRequest, float, float | None], None] | None = None

    def open(self, admit: Callable[[OrderRequest, float, float | None], None]) -> None:
        """A risk incarnation serves now; ``admit`` is its check (``_Risk.admit``)."""
        self._admit = admit

    def close(self) -> None:
        """The incarnation stopped: orders go through the mailbox to the next one."""
        self._admit = None

    def admit(self, request: OrderRequest, deadline: float, now: float | None = None) -> bool:
        """Check and count ``request`` (sent within ``deadline``, trio time) as risk would;
        ``RiskRejected`` if refused; ``False`` if it must go through risk's mailbox.
        ``now``: the trio time, when the caller knows it (``None``: risk reads its clock)."""
        admit = self._admit
        if admit is None or self._mailbox.depth:
            return False
        try:
            admit(request, deadline, now)
        except UltError:
            raise
        except Exception:
            self._admit = None  # risk's own step hits it again and crashes risk
            return False
        return True


@dataclass
class RiskDeps:
    """What the risk actor is built from."""

    limits: RiskLimits
    brokers: dict[str, Mailbox[BrokerCommand]]
    bus: EventBus[Event]
    state: RiskState
    now_ns: Callable[[], int] = time.time_ns
    #: Where every change of trading state is saved (``None``: not kept across restarts).
    state_path: Path | None = None
    #: The journal, whose open orders risk counts at start (``None``: only from events).
    journal: JournalSlot | None = None
    #: Where the router finds risk's check while an incarnation serves (``None``: none).
    gate: RiskGate | None = None
    #: A new order's check and an update's fold: ``check_order`` and ``apply_event``,
    #: injected so a test can make them fail (a compiled module calls its own
    #: functions directly, past any patch of the module).
    check: Callable[[RiskState, RiskLimits, OrderRequest, float], None] = field(
        default_factory=lambda: check_order
    )
    fold: Callable[[RiskState, OrderUpdate, int], None] = field(
        default_factory=lambda: apply_event
    )


def setting_of(state: RiskState, broker: str | None = None) -> TradingSetting:
    """The global state (``broker`` None) or a broker's own, with who set it and why."""
    held = state.trading if broker is None else state.broker_trading.get(broker, "active")
    known = state.settings.get(broker or "")
    if known is not None and known.state == held:
        return known
    return TradingSetting(state=held)


def in_force(state: RiskState, broker: str) -> TradingSetting:
    """What applies to ``broker``'s orders: the stricter of the global state and its own.

    On a tie the broker's own, when it has one: it tells the latest word about it.
    """
    glob, own = setting_of(state), setting_of(state, broker)
    stricter, same = _STRICTNESS[own.state] - _STRICTNESS[glob.state], own.state == glob.state
    return own if stricter > 0 or (same and broker in state.settings) else glob


def position_after(
    state: RiskState, broker: str, request: OrderRequest, adds: Decimal | None = None
) -> tuple[Decimal, Decimal]:
    """(position now, worst-case position if this and all open same-side orders fill).

    ``adds`` is what the order adds to the open quantity (``request.qty`` for a
    new order; for a replace, how much more its new terms ask than its old).
    """
    symbol, side = request.symbol, request.side  # each read once (a Struct's field: a look-up)
    more = request.qty if adds is None else adds
    now, worst, _ = _position_after(state, broker, symbol, side, more, (broker, symbol, side))
    return now, worst


def _position_after(
    state: RiskState, broker: str, symbol: str, side: str, more: Decimal, key: Any
) -> tuple[Decimal, Decimal, Decimal]:
    """``position_after`` of the fields read, and the quantity open on the order's side
    with ``more`` counted (``more`` itself when none was: ``set_open``'s sum, made once).
    ``key`` is ``(broker, symbol, side)``, built by the caller (once for both its uses)."""
    book = state.books.get((broker, symbol))
    now = book.qty if book else ZERO
    pending = state.open_qty.get(key)
    if pending is not None:  # else none open on its side (the usual case): no sum
        more += pending
    # Added or taken away, not multiplied by a sign: an int times a Decimal converts the int.
    return now, (now + more if side == "buy" else now - more), more


def replace_adds(order: Order, terms: OrderRequest) -> Decimal:
    """How much a replace adds to what may still fill: the larger of old and new counts
    until the broker answers, so only a grown quantity adds."""
    return max(Decimal(0), terms.qty - order.qty)


def check_order(
    state: RiskState,
    limits: RiskLimits,
    request: OrderRequest,
    now: float,
    *,
    adds: Decimal | None = None,
    new_order: bool = True,
) -> None:
    """Raise ``RiskRejected`` naming the limit the order breaks; consumes a rate token.

    ``adds`` is what the order adds to the open quantity when not all of its
    ``qty`` (a replace: only what its new terms grow; the second exit of an OCO:
    nothing, as only one of the two can fill); ``new_order`` False: it takes no
    open-order slot (a replace).
    """
    broker = request.broker or ""
    symbol, side, qty = request.symbol, request.side, request.qty
    key: Any = (broker, symbol, side)
    _check(
        state, limits, request, broker, symbol, side, qty, qty if adds is None else adds, key,
        now, new_order,
    )  # fmt: skip


def _check(
    state: RiskState,
    limits: RiskLimits,
    request: OrderRequest,
    broker: str,
    symbol: str,
    side: str,
    qty: Decimal,
    more: Decimal,
    key: Any,
    now: float,
    new_order: bool,
) -> Decimal | None:
    """``check_order`` of ``request``'s fields, read once by the caller (each a Struct's
    field: a look-up); ``key`` is ``(broker, symbol, side)``. Returns the quantity open
    on the order's side with ``more`` counted when a check worked it out, else ``None``
    (``_Risk.admit`` counts the order open with it, the sum made once)."""
    # ``in_force(state, broker).state``, without building the settings it also names.
    glob, own = state.trading, state.broker_trading.get(broker, "active")
    # ``active``, the least strict, as the broker's own (the usual case) leaves the global.
    trading = glob if own == "active" or _STRICTNESS[own] <= _STRICTNESS[glob] else own
    # The position (two look-ups, two sums) only for the checks that read it, once: without
    # ``max_position_per_symbol``, and unless reducing, an order needs none.
    worst: Decimal | None = None
    open_after: Decimal | None = None
    if trading == "halted":
        raise RiskRejected("trading is halted (kill switch or operator)", limit="trading_state")
    if trading == "reducing":
        # It must shrink the position even if the open orders on its side fill too.
        current, worst, open_after = _position_after(state, broker, symbol, side, more, key)
        reduces = 0 <= worst < current if current > 0 else current < worst <= 0
        if not reduces:
            raise RiskRejected(
                "trading is in reducing mode: only orders that shrink a position are allowed",
                limit="trading_state",
            )
    if limits.allowed_symbols and symbol not in limits.allowed_symbols:
        raise RiskRejected(f"{symbol} is not in allowed_symbols", limit="allowed_symbols")
    if limits.max_order_qty is not None and qty > limits.max_order_qty:
        raise RiskRejected(
            f"qty {qty} exceeds max_order_qty {limits.max_order_qty}", limit="max_order_qty"
        )
    if limits.max_order_notional is not None:
        price = request.limit_price or request.stop_price or state.last_price.get(symbol)
        if price is None:
            raise RiskRejected(
                f"max_order_notional: no reference price for {symbol} yet;"
                " send a limit order",
                limit="max_order_notional",
            )
        notional = price * qty
        if notional > limits.max_order_notional:
            raise RiskRejected(
                f"notional {notional} exceeds max_order_notional {limits.max_order_notional}",
                limit="max_order_notional",
            )
    if limits.max_position_per_symbol is not None:
        if worst is None:
            _, worst, open_after = _position_after(state, broker, symbol, side, more, key)
        # ``abs(worst)`` without building it: a buy's worst case is rarely short.
        if (worst if worst >= ZERO else -worst) > limits.max_position_per_symbol:
            raise RiskRejected(
                f"position in {symbol} could reach {worst}, beyond"
                f" max_position_per_symbol {limits.max_position_per_symbol}",
                limit="max_position_per_symbol",
            )
    if (
        new_order
        and limits.max_open_orders is not None
        and len(state.open_orders) >= limits.max_open_orders
    ):
        raise RiskRejected(
            f"{len(state.open_orders)} open orders already (max_open_orders"
            f" {limits.max_open_orders})",
            limit="max_open_orders",
        )
    loss_limit = limits.daily_loss_limit
    if loss_limit is not None:
        realized = state.realized_today
        # ``-realized >= loss_limit``; with nothing realized (falsy: zero) that is
        # ``loss_limit <= 0``, told without negating the zero (~0.3k instructions).
        if (-realized >= loss_limit) if realized else (loss_limit <= ZERO):
            raise RiskRejected(
                f"daily loss {-realized} reached daily_loss_limit {loss_limit}",
                limit="daily_loss_limit",
            )
    if limits.max_orders_per_second is not None:
        rate = limits.max_orders_per_second
        # A burst of ``rate`` orders, but at least one: below 1/s it means one per 1/rate s.
        # (Compared, not ``max``/``min``: those parse keyword arguments on every call.)
        burst = rate if rate > 1.0 else 1.0
        if state.tokens_at is None:
            state.tokens = burst
        else:
            tokens = state.tokens + (now - state.tokens_at) * rate
            state.tokens = tokens if tokens < burst else burst
        state.tokens_at = now
        if state.tokens < 1.0:
            raise RiskRejected(
                f"more than {rate:g} orders per second", limit="max_orders_per_second"
            )
        state.tokens -= 1.0
    return open_after


def reset_books(state: RiskState, event: AccountReset) -> None:
    """A broker's account history restarted: its books are its report now."""
    for key in [k for k in state.books if k[0] == event.broker]:
        del state.books[key]
    for position in event.positions:
        state.books[(event.broker, position.symbol)] = Holding(
            qty=position.qty, avg_price=position.avg_entry_price
        )


def seed_books(state: RiskState, seed: SeedPositions) -> None:
    """Start a broker's books from its report, unless fills have built them already.

    After a restart risk knows no positions, so ``reducing`` would refuse
    even the orders that shrink one; the broker's first report fixes that.
    """
    if seed.broker in state.seeded:
        return
    state.seeded.add(seed.broker)
    if any(broker == seed.broker for broker, _ in state.books):
        return  # fills came first; they are newer than any report
    for position in seed.positions:
        state.books[(seed.broker, position.symbol)] = Holding(
            qty=position.qty, avg_price=position.avg_entry_price
        )


def apply_event(state: RiskState, update: OrderUpdate, now_ns: int) -> None:
    """Fold an order update into the risk view (idempotent)."""
    if update.fill_only and update.order.updated_at < state.started_ns:
        return  # journaled before risk began: the reports that seed its books hold it
    order = update.order
    coid = order.client_order_id
    if not state.day_starts_ns <= now_ns < state.day_ends_ns:
        roll_day(state, now_ns)
    unconfirmed = state.unconfirmed
    if coid in unconfirmed:  # not ``pop(coid, None)``: compiled, a method call by name
        del unconfirmed[coid]
    is_open = order.status in _OPEN
    if is_open and state.applied.is_done(coid):
        return  # a stale report: a finished order never reopens (the status asked first: cheaper)
    new = state.applied.advance(order)
    if new is not None:
        qty, part_price = new
        symbol = order.symbol  # read once (a Struct's field: a look-up each time)
        key = (order.broker, symbol)
        book = state.books.get(key)
        if book is None:  # not setdefault: it would build a Holding for every fill
            book = state.books[key] = Holding()
        price = part_price or state.last_price.get(symbol) or book.avg_price
        state.last_price[symbol] = price
        # Through the booking risk shares with the positions book: the same fill on the
        # same figures is worked out once for both.
        pnl = state.booking.book(book, qty, order.side == "buy", price)
        if pnl:  # most fills realize nothing (they open or add): no sum then
            state.realized_today += pnl
    if is_open:
        state.set_open(unfilled_rest(order))
    else:
        # Also for the service's own conclusion (``is_local_verdict``): the broker's record
        # may still come and reopen the order, which then counts again (the ledger did
        # not mark it done).
        state.drop_open(coid)


#: ``apply_event`` as an object, which ``_Risk.apply`` compares the injected fold with:
#: compiled, a C static, not a look-up in the module's dict per event.
_APPLY_EVENT: Final = apply_event


def unfilled_rest(order: Order) -> OrderRequest:
    """What of an open order may still fill, as risk tracks it."""
    return OrderRequest(
        symbol=order.symbol,
        side=order.side,
        qty=order.qty - order.filled_qty,
        type=order.type,
        broker=order.broker,
        client_order_id=order.client_order_id,
    )


def seed_open_orders(state: RiskState, orders: list[Order]) -> None:
    """Count the journal's open orders risk has not heard of (at start, before any event).

    Orders settled or adopted by the brokers' start reconciliation were
    published before risk subscribed; the journal has them. Their fills so
    far are in the brokers' position reports (``seed_books``), so only the
    unfilled rest counts, and later fills count from here.
    """
    for order in orders:
        coid = order.client_order_id
        if coid in state.open_orders or state.applied.is_done(coid):
            continue
        if order.status not in _OPEN:
            continue
        state.applied.baseline(order)
        state.set_open(unfilled_rest(order))


def roll_day(state: RiskState, now_ns: int) -> None:
    """Start a new trading day (UTC) with no realized loss when the date has changed."""
    day = now_ns // _DAY_NS
    state.day_starts_ns, state.day_ends_ns = day * _DAY_NS, (day + 1) * _DAY_NS
    if day != state.day:
        state.day = day
        state.realized_today = Decimal(0)


def risk_actor(deps: RiskDeps) -> Callable[[ActorContext[RiskCommand]], Awaitable[None]]:
    """The risk actor's body."""

    async def start(ctx: ActorContext[RiskCommand]) -> None:
        await _Risk(deps, ctx).run()

    return start


class _Risk:
    """One incarnation of the risk actor: it follows the order events and serves its mailbox."""

    def __init__(self, deps: RiskDeps, ctx: ActorContext[RiskCommand]) -> None:
        self.deps = deps
        self.ctx = ctx
        self.state = deps.state
        self.log: Any = structlog.get_logger().bind(actor=ctx.name)
        self.events = deps.bus.subscribe(kinds=_FOLDED, capacity=1 << 16)
        # Folded as published from the moment it subscribes (no wake-up per order), not
        # from its reader's first step: an order checked before that step would meet a
        # view without the fills published in between.
        self.events.fold_inline(self.apply)
        #: Trio's clock (set by ``run``), read per order without ``trio.current_time``'s
        #: two calls.
        self.clock: trio.abc.Clock
        if not self.state.started_ns:
            self.state.started_ns = deps.now_ns()

    async def run(self) -> None:
        self.clock = trio.lowlevel.current_clock()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.follow_events)
            if self.deps.journal is not None:
                store = await self.deps.journal.get()
                seed_open_orders(self.state, await store.non_terminal())
            gate = self.deps.gate
            if gate is not None:
                gate.open(self.admit)
            try:
                await serve_mailbox(self.ctx, self.handle)
            finally:
                if gate is not None:
                    gate.close()
                self.events.close()
                nursery.cancel_scope.cancel()

    def apply(self, event: Event) -> None:
        if isinstance(event, _UPDATE):  # the usual event first: no match per update
            fold = self.deps.fold
            if fold is _APPLY_EVENT:  # not replaced (the service): a native call, no wrapper
                apply_event(self.state, event, self.deps.now_ns())
            else:
                fold(self.state, event, self.deps.now_ns())
        elif isinstance(event, AccountReset):
            reset_books(self.state, event)

    async def follow_events(self) -> None:
        # What the inline fold could not take: an event whose fold raised and those
        # published after it (then risk crashes here, in its own step).
        async for event in self.events:
            self.apply(event)
        raise RuntimeError(f"risk fell behind the event stream: {self.events.dropped_reason}")

    async def handle(self, env: Envelope[RiskCommand]) -> None:
        self.deps.bus.release_held()  # an order held for its reply (``AfterReply``) counts
        state = self.state
        try:
            match env.msg:
                case PlaceOrder(request=request) as msg:
                    await self.place(env, msg, request)
                case ReplaceOrder() as msg:
                    await self.replace(env, msg)
                case PlaceList() as msg:
                    await self.place_list(env, msg)
                case CloseOut() as msg:
                    # Closing only shrinks exposure, so it passes in every trading state:
                    # a flatten is what a person does in an emergency, often once halted.
                    self.log.warning(
                        "closing positions",
                        broker=msg.broker,
                        symbol=msg.symbol or "all",
                        trading=state.trading,
                    )
                    await self.ctx.forward(env, self.deps.brokers[msg.broker], msg)
                case SeedPositions() as msg:
                    seed_books(state, msg)
                case RestrictTrading(broker=broker, reason=reason, state=new):
                    held = state.broker_trading.get(broker, "active")
                    if _STRICTNESS[new] > _STRICTNESS[held]:
                        self.set_state(new, reason, broker, by="service")
                case LiftRestriction(broker=broker, reason=reason):
                    own = setting_of(state, broker)
                    # Only the service's own restriction: what a person set waits for a person.
                    if own.state != "active" and own.set_by == "service":
                        self.set_state(
                            "active", f"{reason} (was: {own.reason})", broker, by="service"
                        )
                case SetKillSwitch(id=request_id, on=True):
                    self.set_state("halted", "kill switch on")
                    canceled = await self.cancel_everywhere()
                    self.ctx.reply(
                        env, OkReply(id=request_id, detail=f"halted; {canceled} orders canceled")
                    )
                case SetKillSwitch(id=request_id):
                    self.set_state("active", "kill switch off")
                    self.ctx.reply(env, OkReply(id=request_id, detail="trading active"))
                case SetTradingState(id=request_id, state=new, broker=broker):
                    if broker is not None:
                        known_broker(broker, self.deps.brokers)
                    self.set_state(new, "operator", broker)
                    self.ctx.reply(env, OkReply(id=request_id, detail=f"trading {new}"))
        except UltError as exc:
            self.ctx.fail(env, exc)

    async def place(
        self, env: Envelope[RiskCommand], msg: PlaceOrder, request: OrderRequest
    ) -> None:
        """Check an order against the limits; if it passes, count it open and send it on."""
        self.admit(request, env.deadline)
        assert request.broker is not None
        await self.ctx.forward(env, self.deps.brokers[request.broker], msg)

    def admit(self, request: OrderRequest, deadline: float, now: float | None = None) -> None:
        """Check a new order (sent within ``deadline``, trio time); count it open if it passes.

        ``now``: the trio time, read by the asker whose plain calls brought the order
        here with nothing waiting between (``None``: read the clock here)."""
        self.deps.bus.release_held()  # an order held for its reply (``AfterReply``) counts
        state = self.state
        now_ns = self.deps.now_ns()
        if not state.day_starts_ns <= now_ns < state.day_ends_ns:
            roll_day(state, now_ns)  # the daily loss resets even with no fills
        if now is None:
            now = self.clock.current_time()
        state.forget_unreported(now)
        check = self.deps.check
        coid = request.client_order_id
        assert coid is not None
        if check is check_order and coid not in state.open_orders:
            # Not replaced (the service), and new to risk (the usual case): ``check_order``
            # then ``set_open``, the order's fields read and its key built once for both,
            # and the open quantity on its side looked up and summed once.
            broker = request.broker or ""
            symbol, side, qty = request.symbol, request.side, request.qty
            key: Any = (broker, symbol, side)
            open_after = _check(
                state, self.deps.limits, request, broker, symbol, side, qty, qty, key, now, True
            )
            if open_after is None:  # no check worked it out
                pending = state.open_qty.get(key)
                # None open on its side: the order's own quantity object (``set_open``).
                open_after = qty if pending is None else pending + qty
            state.open_orders[coid] = OpenOrder(key, qty)
            state.open_qty[key] = open_after
        else:
            check(state, self.deps.limits, request, now)
            state.set_open(request)
        state.unconfirmed[coid] = deadline + _REPORT_GRACE_S

    async def place_list(self, env: Envelope[RiskCommand], msg: PlaceList) -> None:
        """Check every leg of a list before any is sent; count what can fill at once.

        The leg that works first (a bracket's entry, an OTO's parent, an OCO's
        first exit) is checked as an order; a bracket's exits only close what its
        entry opens, so they pass where the entry passes; an OCO's second exit adds
        nothing (one of the two fills); an OTO's child is checked as an order too.
        """
        state, request = self.state, msg.request
        roll_day(state, self.deps.now_ns())
        now = trio.current_time()
        state.forget_unreported(now)
        first, *rest = request.legs
        check_order(state, self.deps.limits, first, now)
        if request.contingency == "oco":
            check_order(state, self.deps.limits, rest[0], now, adds=Decimal(0), new_order=False)
        elif request.contingency == "oto":
            check_order(state, self.deps.limits, rest[0], now)
        assert first.client_order_id is not None and request.broker is not None
        state.set_open(first)
        state.unconfirmed[first.client_order_id] = env.deadline + _REPORT_GRACE_S
        await self.ctx.forward(env, self.deps.brokers[request.broker], msg)

    async def replace(self, env: Envelope[RiskCommand], msg: ReplaceOrder) -> None:
        """Check a replace's new terms; if they pass, count what they add and send it on.

        The kill switch and ``reducing`` apply as to a new order. Until the broker
        answers, the order counts as the larger of its old and new quantity.
        """
        state, terms = self.state, msg.terms
        roll_day(state, self.deps.now_ns())
        now = trio.current_time()
        state.forget_unreported(now)
        adds = replace_adds(msg.order, terms)
        check_order(state, self.deps.limits, terms, now, adds=adds, new_order=False)
        assert terms.client_order_id is not None and terms.broker is not None
        if adds:
            state.set_open(msgspec.structs.replace(terms, qty=adds))
            state.unconfirmed[terms.client_order_id] = env.deadline + _REPORT_GRACE_S
        await self.ctx.forward(env, self.deps.brokers[terms.broker], msg)

    async def cancel_everywhere(self) -> int:
        """Cancel every open order at every broker (the kill switch); how many were canceled."""
        canceled = 0
        for name, mailbox in self.deps.brokers.items():
            try:
                canceled += await call(mailbox, CancelAll(), timeout=10.0, answer=int)
            except (UltError, TimeoutError) as exc:
                self.log.error("kill switch: cancel all failed", broker=name, error=str(exc))
        return canceled

    def set_state(
        self, new: TradingState, reason: str, broker: str | None = None, by: SetBy = "person"
    ) -> None:
        """Set the global trading state (``broker`` None) or a broker's; save and publish it."""
        state, deps = self.state, self.deps
        now_ns = deps.now_ns()
        if broker is None:
            state.trading = new
            state.broker_trading.clear()
            state.settings.clear()
        else:
            state.broker_trading[broker] = new
        state.settings[broker or ""] = TradingSetting(
            state=new, set_by=by, reason=reason, at=now_ns
        )
        if deps.state_path is not None:
            saved = SavedTradingState(
                trading=state.trading,
                broker_trading=dict(state.broker_trading),
                reason=reason,
                at_ns=now_ns,
                settings=dict(state.settings),
            )
            try:
                save_trading_state(deps.state_path, saved)
            except OSError as exc:
                self.log.error("trading state not saved", path=str(deps.state_path), error=str(exc))
        deps.bus.publish(
            TradingStateChanged(state=new, reason=reason, broker=broker, ts=now_ns, set_by=by)
        )
        self.log.warning("trading state changed", state=new, reason=reason, broker=broker, by=by)
