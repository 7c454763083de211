"""The paper venue: order book, matching rules and the account, all synchronous.

The venue knows nothing of trio or actors; ``PaperConnector`` drives it
(submits, cancels, clock ticks, latency) and turns what it emits into the
connector protocol. Rules:

- An order matches against the current price of its symbol. A buy limit is
  marketable at or below its limit, a sell limit at or above. A stop (or
  stop-limit) triggers when the price reaches its stop (buy: at or above,
  sell: at or below) and then acts as a market (or limit) order.
- Fills are ``slippage_bps + size_impact_bps_per_share * qty`` worse than
  the price, never through a limit. Commission is ``commission_per_share``
  per unit filled.
- An order takes at most ``displayed_size`` per match; the rest waits for
  the next tick (``partially_filled``). On arrival ``ioc`` fills what it can
  and cancels the rest; ``fok`` fills whole or is canceled without a fill.
  ``day`` orders expire when the UTC date changes; ``gtc`` orders rest.
  ``opg``/``cls`` are refused: the paper market has no auctions.
- Only the configured ``symbols`` trade; another symbol is ``InvalidOrder``
  (field ``symbol``), as a real venue refuses an unknown instrument.
- A buy (or a sell beyond the long position) needs buying power for the
  exposure it adds (see ``paper.account``), else ``InsufficientFunds``.
- A replace ends the working order ``replaced`` and puts a new order (new
  venue id, the replacement's client order id) in for what was left to
  fill, on the new terms; only ``accepted`` / ``partially_filled`` orders.
- Order lists (bracket, OCO, OTO) are native: a leg that waits for its
  trigger is ``held`` (never matched) until the leg that triggers it has
  filled completely (or ends, then for what it filled; nothing filled: the
  held legs are canceled). An exit that fills reduces its peer to what is
  left of it, canceling it once nothing is.

The venue's state is in memory: open orders, positions, cash, every client
order id the account has used (the duplicate check), and the orders that
ended and fills not yet in the file. Every call that changes it hands its
changes to the writer as one record (bytes) before it returns
(``BatchWriter.record``: in the change log at once, in the file a few ms
later), then emits its order updates; so nobody is told of a change a
``kill -9`` would lose. Once the file has an ended order or a fill, the
venue lets go of it and reads it from the file when asked (rarely). An
in-memory account (no file) keeps everything.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

import msgspec
import structlog

from ult_actors.brokers.paper.account import ZERO, PaperAccount, exposure_increase
from ult_actors.brokers.paper.batch import Change, DecimalTexts, WorkingOrder, stage_change
from ult_actors.brokers.paper.feed import PriceFeed
from ult_actors.brokers.paper.settings import PaperSettings, trades_symbol
from ult_actors.brokers.paper.store import PaperSnapshot, PaperStore
from ult_actors.brokers.paper.unfiled import Unfiled
from ult_actors.brokers.paper.writer import BatchWriter
from ult_actors.errors import DuplicateOrder, InsufficientFunds, InvalidOrder, NotFound
from ult_actors.holding import SharedBooking
from ult_actors.messages import (
    OPEN_STATUSES,
    Account,
    Fill,
    Leg,
    Order,
    OrderListRequest,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    Position,
    ReplaceRequest,
    Side,
)
from ult_actors.order_state import (
    REPLACEABLE_STATUSES,
    already_final,
    fill_of,
    leg_records,
    not_replaceable,
    order_from_fields,
)
from ult_actors.validation import replaced_terms, validate_order, validate_order_list

# ``Final``: compiled, these are C statics, not a look-up in the module's dict per use
# (``OPEN_STATUSES`` and ``replace`` come from modules that are not compiled).
_DAY_NS: Final = 86_400 * 1_000_000_000
_BPS: Final = Decimal(10_000)
#: A fill's value below this is exact: its price has at most 10 places (the feed's
#: ``price_decimals``, a validated limit's 9) and its quantity 9 (validated), so the
#: product has at most 9 + 19 digits, within the context's 28, and is not rounded.
_EXACT_BELOW: Final = Decimal(10) ** 9
_OPEN: Final = OPEN_STATUSES
_replace: Final = msgspec.structs.replace
_astuple: Final = msgspec.structs.astuple

log = structlog.get_logger("ult.paper")


class PaperVenue:
    """One paper account and its market, kept in a ``PaperStore`` through a ``BatchWriter``."""

    def __init__(
        self,
        name: str,
        settings: PaperSettings,
        snap: PaperSnapshot,
        feed: PriceFeed,
        *,
        store: PaperStore,
        writer: BatchWriter,
        now_ns: Callable[[], int],
        emit: Callable[[OrderUpdate], None],
        booking: SharedBooking | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.store = store
        self.writer = writer
        self.feed = feed
        self.now_ns = now_ns
        self.emit = emit
        #: An order's checks (``validate_order``), an attribute so a test can watch them
        #: (a compiled module calls what it imported directly, past any patch).
        self.validate: Callable[[OrderRequest], None] = validate_order
        #: The last batch this venue recorded (a reload must wait for the file to have it).
        self.staged_seq = 0
        # ``booking``: the service's risk and positions books share it (see ``PaperAccount``).
        self.account = PaperAccount(
            snap.cash if snap.cash is not None else settings.starting_cash, snap.holdings, booking
        )
        feed.load(snap.prices.items())
        #: ``feed.price``, bound once: the funds check hands it on per order.
        self._price: Callable[[str], Decimal] = feed.price
        for symbol in snap.holdings:
            # Prices are saved when they move; one never moved is at its start price.
            feed.price(symbol)
        self._next_order = snap.next_order
        self._next_fill = snap.next_fill
        #: Open orders by broker id, in arrival order; terminal ones live only in the store.
        self.open: dict[str, WorkingOrder] = {w.order.id: w for w in snap.open_orders}
        self._open_by_client = {w.order.client_order_id: w.order.id for w in self.open.values()}
        #: Open orders by symbol, and the buying power each symbol's open orders hold
        #: (``_reserved``), dropped when its orders, position or price change: an
        #: order checks its funds without a pass over the whole book.
        self._open_by_symbol: dict[str, dict[str, WorkingOrder]] = {}
        for working in self.open.values():
            self._open_by_symbol.setdefault(working.order.symbol, {})[working.order.id] = working
        self._reserve: dict[str, Decimal] = {}
        #: Most a match fills (``displayed_size``; ``None``: no limit).
        self._shown = settings.displayed_size or None
        #: ``slippage_bps`` and ``size_impact_bps_per_share`` as fractions of a price.
        self._slippage = _per_bps(settings.slippage_bps)
        self._impact = _per_bps(settings.size_impact_bps_per_share)
        self._commission = settings.commission_per_share
        #: Whether ``commission_per_share`` times a validated quantity (plain digits, at most
        #: 21 of them: below 10^12 with at most 9 places) is exact, at most 0 in exponent and
        #: not signed: then ``0 + commission`` is ``commission`` digit for digit, and a new
        #: order filled whole keeps its fill's commission without the sum (``_fill_new``).
        sign, digits, exponent = settings.commission_per_share.as_tuple()
        self._commission_plain = (
            not sign and isinstance(exponent, int) and exponent <= 0 and len(digits) <= 7
        )
        #: The last fill's price before its limit (``_fill_price``), and what it was worked
        #: out from: the symbol's price (an object a tick replaces), the size and the side.
        #: Orders of one size between two ticks fill at it without the slip's arithmetic.
        self._slipped_from: Decimal | None = None
        self._slipped_qty = ZERO
        self._slipped_buy = False
        self._slipped = ZERO
        #: A market order's reference price over its symbol's price (its slippage).
        self._market_factor = 1 + settings.slippage_bps / _BPS
        #: The last market order's reference price and the symbol's price it was worked out
        #: from (an object a tick replaces): the next one at that price takes it.
        self._marked: Decimal | None = None
        self._marked_reference = ZERO
        #: Symbols ``trades_symbol`` allowed (it passes over the ``symbols`` list).
        self._traded: set[str] = set()
        #: Every client order id used (a set of short strings: ~100 bytes an order).
        self._client_ids = snap.client_ids
        self._day = now_ns() // _DAY_NS
        # Written together at the end of each venue call (see ``_commit``).
        self._dirty: dict[str, WorkingOrder] = {}
        self._dirty_prices: set[str] = set()
        self._dirty_holdings: set[str] = set()
        self._fills: list[Fill] = []
        #: The texts of the decimals the last record carried (``_record``).
        self._texts = DecimalTexts()
        #: ``(order, fill, ts)`` of each state change of this call (see ``_changed``).
        self._updates: list[tuple[Order, Fill | None, int]] = []
        #: Ended orders and fills the file does not have yet (with no file: all of them).
        self._unfiled = Unfiled()
        self._created_at = snap.created_at if snap.created_at is not None else now_ns()
        # Order ids stay unique across resets of the account: they carry its creation time.
        tag = format(self._created_at // 1_000_000, "x")
        #: What every order id and fill id of this venue starts with (then its number).
        self._order_id_prefix = f"{name}.{tag}."
        self._fill_id_prefix = f"{tag}.f"
        # Day orders of an earlier date expire, travelling or not; whatever else
        # was travelling when we stopped has arrived meanwhile.
        self._expire_day_orders(force=True)
        for working in list(self.open.values()):
            if working.in_transit:
                working.in_transit = False
                self._arrive(working)
        self._commit()

    # -- queries ----------------------------------------------------------------

    def get(self, order_id: str) -> Order:
        working = (
            self.open.get(order_id)
            or self._unfiled.order(order_id)
            or self.store.order(self.name, order_id)
        )
        if working is None:
            raise NotFound(f"paper broker {self.name}: no order {order_id!r}")
        return working.order

    def get_by_client_id(self, client_order_id: str) -> Order:
        oid = self._open_by_client.get(client_order_id)
        if oid is not None:
            return self.open[oid].order
        working = self._unfiled.by_client_id(client_order_id) or self.store.order_by_client_id(
            self.name, client_order_id
        )
        if working is None:
            raise NotFound(
                f"paper broker {self.name}: no order with client_order_id {client_order_id!r}"
            )
        return working.order

    def open_orders(self) -> list[Order]:
        return [w.order for w in self.open.values()]

    def marks(self) -> dict[str, Decimal]:
        return self.feed.known()

    def positions(self) -> list[Position]:
        rows = []
        for symbol, holding in sorted(self.account.holdings.items()):
            if holding.qty == 0:
                continue
            mark = self.feed.price(symbol)
            rows.append(
                Position(
                    broker=self.name,
                    symbol=symbol,
                    qty=holding.qty,
                    avg_entry_price=holding.avg_price,
                    market_value=holding.qty * mark,
                    unrealized_pl=(mark - holding.avg_price) * holding.qty,
                    realized_pl=holding.realized_pl,
                )
            )
        return rows

    def realized_pl(self, symbol: str) -> Decimal:
        """Realized P&L of ``symbol`` so far (net of commissions), even once flat."""
        holding = self.account.holdings.get(symbol)
        return holding.realized_pl if holding else ZERO

    def account_info(self) -> Account:
        marks = self.marks()
        return Account(
            broker=self.name,
            cash=self.account.cash,
            buying_power=self.account.buying_power(marks, self._reserved()),
            equity=self.account.equity(marks),
            currency=self.settings.currency,
        )

    def fills(self, order_id: str) -> list[Fill]:
        """The executions of ``order_id``, oldest first."""
        filed = self.store.fills(self.name, order_id)
        seen = {fill.fill_id for fill in filed}
        return filed + [f for f in self._unfiled.fills(order_id) if f.fill_id not in seen]

    # -- commands ---------------------------------------------------------------

    def submit(
        self, request: OrderRequest, *, in_transit: bool = False, validated: bool = False
    ) -> Order:
        """Accept (and, unless ``in_transit``, match) a new order.

        ``validated``: ``request`` is one ``validate_order`` passed (the router's
        check; requests are frozen), so only the venue's own rules are checked.
        """
        if not validated:
            self.validate(request)
        if in_transit:
            working = self._accept(request, in_transit=True)
            self._commit()
            return working.order
        # Every field read at once: compiled, a Struct field read is ~114 instructions,
        # and the checks, the match and the order built read most of them.
        fields = _astuple(request)
        symbol, side, qty, kind, limit, stop, tif, _, _, coid, _ = fields
        commission = self._admit(symbol, side, qty, limit, stop, tif, coid, funds=True)
        now = self.now_ns()
        oid = f"{self._order_id_prefix}{self._next_order}"
        self._next_order += 1
        self._client_ids.add(coid)
        # What ``_arrive`` would find for a new market order, or a limit order marketable
        # now: all of it fills at once (a fok or ioc too), unless it is more than a match
        # shows. Then it is built once, filled (``_fill_new``); anything else as accepted,
        # and matched by the general rules.
        shown = self._shown
        if (shown is None or qty <= shown) and (
            kind == "market" or (kind == "limit" and self._marketable(symbol, side, limit))
        ):
            order = self._fill_new(fields, oid, now, commission)
            self._commit()
            return order
        accepted = order_from_fields(
            fields, broker=self.name, order_id=oid, status="accepted", now_ns=now
        )
        working = WorkingOrder(order=accepted)
        self._arrive(working, fresh=True)
        order = working.order
        if order is accepted:
            # Nothing on arrival changed it: its accepted state is news (``_accept`` left
            # that to us, for an order filled or ended on arrival passes it by).
            self._changed(working, order, None, now)
        # Booked once it rests: one that ends on arrival (an ioc or fok canceled) never
        # goes on the book and off again.
        if order.status in _OPEN:
            self._book(working)
        self._commit()
        return order

    def _marketable(self, symbol: str, side: str, limit: Decimal) -> bool:
        """Whether a limit order's ``limit`` lets it trade at ``symbol``'s price now."""
        price = self.feed.price(symbol)
        return not ((price > limit) if side == "buy" else (price < limit))

    def _fill_new(
        self, fields: tuple[Any, ...], oid: str, now: int, commission: Decimal | None
    ) -> Order:
        """Fill a new order (``fields``: its request's, ``astuple``; accepted at ``now`` as
        ``oid``) whole, as ``_arrive`` -> ``_match`` -> ``_fill`` would a fresh one that the
        price lets trade and a match shows all of: the same price, fees, account moves,
        fill, order and record, in the same order, with the order built once (its
        ``filled`` state: the ``accepted`` one is news to nobody) and no field read twice.
        ``commission``: ``commission_per_share * qty``, if the funds check worked it out.
        """
        symbol, side, qty, _, limit, _, _, _, _, coid, _ = fields
        price = self._fill_price(symbol, side == "buy", limit, qty)
        if commission is None:
            commission = self._commission * qty
        value = price * qty  # the account's and the average's: worked out once
        self.account.apply_fill(symbol, side, qty, price, commission, value)
        self._dirty_holdings.add(symbol)
        # Nothing filled before (``Decimal(0)``, exponent 0) and plain digits (the quantity
        # validated, the price on the feed's increment or a validated limit): ``0 + qty`` is
        # ``qty`` and ``0 * 0 + value`` is ``value``, digit for digit, as ``_fill``'s general
        # case works them out. ``value / qty`` is ``price`` digit for digit when ``value`` is
        # exact (a quotient without remainder takes the dividend's exponent less the
        # divisor's): the fill's own price object, which the books' shared booking then
        # matches (``SharedBooking``).
        avg = price if value < _EXACT_BELOW else value / qty
        filled_at = self.now_ns()
        fill = Fill(  # by position, as ``fill_of`` (``order_state`` checks the fields' order)
            f"{self._fill_id_prefix}{self._next_fill}",
            oid,
            coid,
            self.name,
            symbol,
            side,
            qty,
            price,
            commission,
            filled_at,
        )
        self._next_fill += 1
        self._fills.append(fill)
        order = order_from_fields(
            fields,
            broker=self.name,
            order_id=oid,
            status="filled",
            now_ns=now,
            filled_qty=qty,
            avg_fill_price=avg,
            updated_at=filled_at,
        )
        # ``0 + commission``, what ``_fill`` adds to a new working order's, is ``commission``
        # digit for digit when it is plain (``_commission_plain``).
        working = WorkingOrder(
            order=order, commission=commission if self._commission_plain else ZERO + commission
        )
        self._changed(working, order, fill, filled_at)
        # Never booked (``submit`` books only what rests) and no leg: done.
        return order

    def replace(self, order_id: str, change: ReplaceRequest) -> Order:
        """End a working order ``replaced`` and put its replacement in; the replacement."""
        working = self.open.get(order_id)
        if working is None or working.order.status not in REPLACEABLE_STATUSES:
            raise not_replaceable(working.order if working else self.get(order_id))
        old = working.order
        terms = replaced_terms(old, change)  # validated
        # What is left to fill: a plain number above 0 (``replaced_terms`` saw to that).
        rest = _replace(terms, qty=terms.qty - old.filled_qty)
        self._check_unused(rest.client_order_id)
        self._check_funds(rest, instead_of=working)  # its reservation goes with it
        now = self.now_ns()
        working.order = ended = _replace(
            old, status="replaced", replaced_by=rest.client_order_id, updated_at=now
        )
        self._changed(working, ended, None, now)
        self._close(ended)
        new = self._accept(rest, replaces=old)
        new.triggered = working.triggered and terms.stop_price == old.stop_price
        self._arrive(new)
        self._commit()
        return new.order

    def submit_list(self, request: OrderListRequest) -> list[Order]:
        """Accept every leg of a list at once; the legs that wait are ``held``."""
        validate_order_list(request)  # every leg's ``validate_order`` with it
        legs: list[WorkingOrder] = []
        for leg, order in zip(request.legs, leg_records(request, self.name, self.now_ns(), emulated=False), strict=True):
            assert order.leg is not None
            held = order.leg.parent_id is not None
            legs.append(self._accept(leg, leg=order.leg, held=held))
        for working in legs:
            if working.order.status != "held":
                self._arrive(working)
        self._commit()
        return [self._current(w.order.client_order_id) for w in legs]

    def execute(self, order_id: str, qty: Decimal) -> None:
        """Fill ``qty`` of a resting order now, as if a counterparty came (tests)."""
        working = self.open[order_id]
        self._fill(working, min(qty, working.order.qty - working.order.filled_qty))
        self._commit()

    def _current(self, client_order_id: str) -> Order:
        return self.get_by_client_id(client_order_id)

    def _check_unused(self, coid: str | None) -> str:
        """``coid``, a new order's client order id, unless it is missing or used already."""
        if coid is None:
            raise InvalidOrder("client_order_id is required", field="client_order_id")
        if coid in self._client_ids:
            raise DuplicateOrder(
                f"client_order_id {coid} is already used at paper broker {self.name}",
                field="client_order_id",
            )
        return coid

    def _accept(
        self,
        request: OrderRequest,
        *,
        in_transit: bool = False,
        replaces: Order | None = None,
        leg: Leg | None = None,
        held: bool = False,
    ) -> WorkingOrder:
        """Check a validated new order (or a replacement, or a leg) against the venue's own
        rules and put it on the book unmatched, its state noted."""
        fields = _astuple(request)
        symbol, side, qty, _, limit, stop, tif, _, _, coid, _ = fields
        self._admit(
            symbol, side, qty, limit, stop, tif, coid, funds=replaces is None and not held
        )
        now = self.now_ns()
        oid = f"{self._order_id_prefix}{self._next_order}"
        self._next_order += 1
        order = order_from_fields(
            fields, broker=self.name, order_id=oid, status="held" if held else "accepted",
            now_ns=now,
        )  # fmt: skip
        if replaces is not None:
            order = _replace(order, replaces=replaces.client_order_id, leg=replaces.leg)
        elif leg is not None:
            order = _replace(order, leg=leg)
        working = WorkingOrder(order=order, in_transit=in_transit)
        self._client_ids.add(coid)
        self._book(working)
        self._changed(working, order, None, now)
        return working

    def _admit(
        self,
        symbol: str,
        side: Side,
        qty: Decimal,
        limit: Decimal | None,
        stop: Decimal | None,
        tif: str,
        coid: str | None,
        *,
        funds: bool,
    ) -> Decimal | None:
        """The venue's own rules for a new order of these terms (a validated request's):
        a symbol it trades, no auction, an unused client order id and (``funds``) the
        buying power. Returns ``commission_per_share * qty`` if the funds check worked it
        out (the fill needs it too), else ``None``."""
        if symbol not in self._traded:
            self._check_traded(symbol)
        if tif in ("opg", "cls"):
            raise InvalidOrder(
                f"the paper broker has no opening or closing auction ({tif})",
                field="time_in_force",
            )
        self._check_unused(coid)
        if not funds:
            return None
        return self._funds(symbol, side, qty, limit, stop, None)

    def _book(self, working: WorkingOrder) -> None:
        """Put an open order on the book (``_close`` takes it off)."""
        order = working.order
        self.open[order.id] = working
        self._open_by_client[order.client_order_id] = order.id
        self._open_by_symbol.setdefault(order.symbol, {})[order.id] = working

    def _check_traded(self, symbol: str) -> None:
        if not trades_symbol(self.settings, symbol):
            raise InvalidOrder(
                f"unknown symbol {symbol}: paper broker {self.name} does not trade it"
                " (its symbols setting lists what it trades)",
                field="symbol",
            )
        self._traded.add(symbol)

    def arrive(self, order_id: str) -> None:
        """An order that was travelling (``latency_ms``) reaches the venue and is matched."""
        working = self.open.get(order_id)
        if working is None or not working.in_transit:
            return  # canceled on the way
        working.in_transit = False
        self._arrive(working)
        self._commit()

    def cancel(self, order_id: str) -> Order:
        """Cancel an open order; ``AlreadyFinal`` for a final one, ``NotFound`` for none."""
        working = self.open.get(order_id)
        if working is None:
            raise already_final(self.get(order_id))  # self.get: NotFound if it never existed
        self._finish(working, "canceled")
        self._commit()
        return working.order

    def set_price(self, symbol: str, price: Decimal) -> None:
        """Put ``symbol`` at ``price`` and match its resting orders (tests, rehearsals)."""
        self.feed.set(symbol, price)
        self._reserve.pop(symbol, None)
        self._dirty_prices.add(symbol)
        self._match_resting(symbol)
        self._commit()

    def tick(self) -> None:
        """One step of the clock: move every price, expire day orders, match resting orders.

        Prices that moved and nothing else are written with the venue's next
        change (or ``save_prices``): an idle account costs no write per tick,
        and a crash only takes the market back a few steps of its walk.
        """
        self.feed.step()
        self._reserve.clear()
        self._dirty_prices.update(self.feed.known())
        self._expire_day_orders()
        self._match_resting(None)
        if self._dirty or self._fills:
            self._commit()

    def save_prices(self) -> None:
        """Write the prices that moved since the last write (before closing)."""
        self._commit()

    # -- matching ---------------------------------------------------------------

    def _arrive(self, working: WorkingOrder, *, fresh: bool = False) -> None:
        """Match an order that reaches the venue; ``fresh``: a new one, just accepted from a
        validated request (nothing filled, its quantity and prices plain digits)."""
        order = working.order
        tif = order.time_in_force
        if tif == "fok" and self._executable_qty(working, fresh) < order.qty:
            # Its symbol priced, as matching it would have (``_executable_qty`` leaves a
            # market order's price to its fill): the walk draws for every priced symbol.
            self.feed.price(order.symbol)
            self._finish(working, "canceled")
            return
        self._match(working, fresh)
        if tif in ("ioc", "fok") and working.order.status in _OPEN:
            self._finish(working, "canceled")

    def _match_resting(self, symbol: str | None) -> None:
        for working in list(self.open.values()):
            if working.in_transit or (symbol is not None and working.order.symbol != symbol):
                continue
            if working.order.id not in self.open or working.order.status == "held":
                continue  # ended or held by a fill matched just before in this pass
            self._match(working)

    def _executable_qty(self, working: WorkingOrder, fresh: bool = False) -> Decimal:
        """How much of the order could fill right now (``fresh``: see ``_arrive``)."""
        order = working.order
        kind = order.type
        if kind != "market":
            # Only a price condition reads the price (and the side): a market order,
            # the usual one, passes by them.
            price = self.feed.price(order.symbol)
            buy = order.side == "buy"
            if kind in ("stop", "stop_limit") and not working.triggered:
                assert order.stop_price is not None
                if (price < order.stop_price) if buy else (price > order.stop_price):
                    return ZERO
            if kind in ("limit", "stop_limit"):
                assert order.limit_price is not None
                if (price > order.limit_price) if buy else (price < order.limit_price):
                    return ZERO
        # Fresh, ``qty - 0`` is ``qty`` digit for digit (validated: no positive exponent).
        remaining = order.qty if fresh else order.qty - order.filled_qty
        shown = self._shown
        return remaining if shown is None or remaining <= shown else shown

    def _match(self, working: WorkingOrder, fresh: bool = False) -> None:
        order = working.order
        if order.type in ("stop", "stop_limit") and not working.triggered:
            price = self.feed.price(order.symbol)
            assert order.stop_price is not None
            reached = (
                price >= order.stop_price if order.side == "buy" else price <= order.stop_price
            )
            if not reached:
                return
            working.triggered = True
            self._dirty[order.id] = working
        qty = self._executable_qty(working, fresh)
        if qty > ZERO:
            self._fill(working, qty, fresh)

    def _fill_price(
        self, symbol: str, buy: bool, limit: Decimal | None, qty: Decimal
    ) -> Decimal:
        """The price ``qty`` of an order for ``symbol`` (a buy or not, its ``limit``) fills at."""
        price = self.feed.price(symbol)
        if price is self._slipped_from and qty == self._slipped_qty and buy == self._slipped_buy:
            # The last fill's price and size on the same side, at the same tick: its price
            # (the slip's rounding goes by value, and the feed's increment sets the digits).
            worse = self._slipped
        else:
            # ``price * (slippage_bps + size_impact_bps_per_share * qty) / 10_000``: the same
            # digits rounded the same way (``_per_bps``), without the division.
            slip = price * (self._slippage + self._impact * qty)
            worse = self.feed.round(price + slip if buy else price - slip)
            self._slipped_from, self._slipped_qty, self._slipped_buy = price, qty, buy
            self._slipped = worse
        if limit is not None:
            # Slippage never trades through the limit.
            worse = min(worse, limit) if buy else max(worse, limit)
        return worse

    def _fill(self, working: WorkingOrder, qty: Decimal, fresh: bool = False) -> None:
        order = working.order
        symbol = order.symbol
        side = order.side
        price = self._fill_price(symbol, side == "buy", order.limit_price, qty)
        commission = self._commission * qty
        value = price * qty  # the account's and the average's: worked out once
        self.account.apply_fill(symbol, side, qty, price, commission, value)
        self._dirty_holdings.add(symbol)
        ordered = order.qty
        # A new order filled at once, all of it (the usual market order).
        whole = fresh and qty is ordered
        if whole:
            # Nothing filled before (``Decimal(0)``, exponent 0: ``order_from_request``), and
            # plain digits (the quantity validated, the price on the feed's increment or a
            # validated limit): ``0 + qty`` is ``qty`` and ``0 * 0 + value`` is ``value``,
            # digit for digit, as the general case below works them out.
            filled = qty
            # ``value / qty`` is ``price`` digit for digit when ``value`` is exact (a quotient
            # without remainder takes the dividend's exponent less the divisor's): the fill's
            # own price object, which the books' shared booking then matches (``SharedBooking``).
            avg = price if value < _EXACT_BELOW else value / filled
        else:
            before = order.filled_qty
            filled = before + qty
            avg = ((order.avg_fill_price or ZERO) * before + value) / filled
        now = self.now_ns()
        fill = fill_of(
            order,
            fill_id=f"{self._fill_id_prefix}{self._next_fill}",
            qty=qty,
            price=price,
            ts=now,
            commission=commission,
            side=side,  # read already: not again
            broker=self.name,
        )
        self._next_fill += 1
        self._fills.append(fill)
        working.commission += commission
        status: OrderStatus = "filled" if whole or filled == ordered else "partially_filled"
        order = _replace(
            order, status=status, filled_qty=filled, avg_fill_price=avg, updated_at=now
        )
        working.order = order
        self._changed(working, order, fill, now)
        if whole:
            return  # never booked (``submit`` books only what rests) and no leg: done
        if status == "filled":
            self._close(order)
        self._linked(order)

    def _finish(self, working: WorkingOrder, status: OrderStatus) -> None:
        now = self.now_ns()
        working.order = order = _replace(working.order, status=status, updated_at=now)
        self._changed(working, order, None, now)
        self._close(order)
        self._linked(order)

    def _linked(self, order: Order) -> None:
        """Apply a leg's news to its list: release its children, reduce its peer."""
        leg = order.leg
        if leg is None or order.status == "replaced":
            return
        ended = order.status not in _OPEN
        for child_id in leg.children:
            child = self._open_working(child_id)
            if child is None or child.order.status != "held":
                continue
            if order.filled_qty == 0 and ended:
                self._finish(child, "canceled")
            elif order.filled_qty >= order.qty or ended:
                child.order = released = _replace(
                    child.order, status="accepted", qty=min(child.order.qty, order.filled_qty)
                )
                self._changed(child, released, None, self.now_ns())
                self._arrive(child)
        if leg.peer_id is not None and order.filled_qty > 0:
            peer = self._open_working(leg.peer_id)
            if peer is None or peer.order.status == "held":
                return
            left = order.qty - order.filled_qty if not ended else Decimal(0)
            if left <= 0:
                self._finish(peer, "canceled")
            elif peer.order.qty - peer.order.filled_qty > left:
                now = self.now_ns()
                peer.order = reduced = _replace(
                    peer.order, qty=peer.order.filled_qty + left, updated_at=now
                )
                self._changed(peer, reduced, None, now)

    def _open_working(self, client_order_id: str) -> WorkingOrder | None:
        oid = self._open_by_client.get(client_order_id)
        return None if oid is None else self.open.get(oid)

    def _close(self, order: Order) -> None:
        """Take ``order`` (its working order's ``order``, just ended) off the book."""
        if self.open.pop(order.id, None) is None:
            return  # it ended on arrival, never booked (``submit``)
        del self._open_by_client[order.client_order_id]
        same_symbol = self._open_by_symbol[order.symbol]
        del same_symbol[order.id]
        if not same_symbol:
            del self._open_by_symbol[order.symbol]

    def _expire_day_orders(self, *, force: bool = False) -> None:
        today = self.now_ns() // _DAY_NS
        if today == self._day and not force:
            return
        self._day = today
        for working in list(self.open.values()):
            order = working.order
            if order.time_in_force == "day" and order.created_at // _DAY_NS < today:
                self._finish(working, "expired")

    def _changed(
        self, working: WorkingOrder, order: Order, fill: Fill | None, ts: int
    ) -> None:
        """Note ``working``'s new state ``order`` (its ``order``, handed over as the caller
        holds it: a Struct field read is ~110 instructions compiled; with ``fill``, the
        execution that made it) at ``ts``, the time the caller stamped it with: written and
        reported at the call's end."""
        oid = order.id
        # Its quantities, state or (through a fill) the position moved: so may its reserve
        # (none kept, the usual case: no call).
        if self._reserve:
            self._reserve.pop(order.symbol, None)
        self._dirty[oid] = working
        updates = self._updates
        # Kept as tuples until ``_commit`` reports them: most calls pass a state by.
        if updates and updates[-1][1] is None and updates[-1][0].id == oid:
            # A state this call went past (a market order accepted, then filled): news
            # to nobody (``_news``), so not kept.
            updates[-1] = (order, fill, ts)
        else:
            updates.append((order, fill, ts))

    # -- money ------------------------------------------------------------------

    def _reference_price(self, order: Order) -> Decimal:
        return self._reference(order.symbol, order.side, order.limit_price, order.stop_price)

    def _reference(
        self, symbol: str, side: str, limit: Decimal | None, stop: Decimal | None
    ) -> Decimal:
        """The price an order of these terms is reserved at: its limit, its stop (a buy's, or
        the price if higher) or the price with a market order's slippage."""
        mark = self.feed.price(symbol)
        if limit is not None:
            return limit
        if stop is not None:
            return max(stop, mark) if side == "buy" else stop
        if mark is not self._marked:
            # The same price object, the same product: kept until the price moves.
            self._marked = mark
            self._marked_reference = mark * self._market_factor
        return self._marked_reference

    def _reserved(self) -> Decimal:
        """Buying power held by open orders for the exposure they would add."""
        total = ZERO
        for symbol, orders in self._open_by_symbol.items():
            reserve = self._reserve.get(symbol)
            if reserve is None:
                reserve = sum((self._reservation(w) for w in orders.values()), ZERO)
                self._reserve[symbol] = reserve
            total += reserve
        return total

    def _reservation(self, working: WorkingOrder) -> Decimal:
        """What one open order holds: its remaining exposure at its reference price."""
        order = working.order
        remaining = order.qty - order.filled_qty
        adds = exposure_increase(self.account.position(order.symbol), order.side, remaining)
        return adds * self._reference_price(order) if adds else ZERO

    def _check_funds(
        self, request: OrderRequest, *, instead_of: WorkingOrder | None = None
    ) -> None:
        """``InsufficientFunds`` unless the account can take ``request`` on (in place of
        the open order ``instead_of``, whose reservation it frees)."""
        symbol, side, qty, _, limit, stop, _, _, _, _, _ = _astuple(request)
        self._funds(symbol, side, qty, limit, stop, instead_of)

    def _funds(
        self,
        symbol: str,
        side: Side,
        qty: Decimal,
        limit: Decimal | None,
        stop: Decimal | None,
        instead_of: WorkingOrder | None,
    ) -> Decimal | None:
        """``_check_funds`` of an order of these terms; ``commission_per_share * qty`` if it
        worked that out, else ``None``."""
        adds = exposure_increase(self.account.position(symbol), side, qty)
        if not adds:  # not ``== 0``: compiled, a compare with an int converts it per order
            return None  # it only closes (part of) a position: always allowed
        commission = self._commission * qty
        cost = adds * self._reference(symbol, side, limit, stop) + commission
        # Nothing open, nothing reserved: the common case, without a call.
        reserved = self._reserved() if self._open_by_symbol else None
        if instead_of is not None:
            reserved = (ZERO if reserved is None else reserved) - self._reservation(instead_of)
        available = self.account.free(self._price, reserved)
        if cost > available:
            raise InsufficientFunds(
                f"order needs {cost:.2f} {self.settings.currency} of buying power;"
                f" {max(available, ZERO):.2f} available",
                broker=self.name,
            )
        return commission

    # -- persistence --------------------------------------------------------------

    def _commit(self) -> None:
        """Record what changed (``BatchWriter.record``), then emit the updates."""
        if not (self._dirty or self._dirty_prices or self._fills):
            return
        # By the key (its id), not ``w.order.id``: two Struct field reads an order.
        ended = [w for oid, w in self._dirty.items() if oid not in self.open]
        if self.writer.keeps_rows:
            # What the file has now, it answers for.
            self._unfiled.let_go(self.writer.committed_seq)
            self.staged_seq = self.writer.record(self._record())
        if ended or self._fills:
            self._unfiled.add(ended, self._fills, self.staged_seq)
        self.store.accounts.add(self.name)
        updates = _news(self._updates)
        self._updates = []  # not cleared: ``updates`` may be this list
        # Cleared, not built anew per call: what took them in (``_record``, ``Unfiled``)
        # keeps none of them.
        self._dirty.clear()
        self._fills.clear()
        self._dirty_prices.clear()
        self._dirty_holdings.clear()
        for order, fill, ts in updates:
            try:
                # By position (``order_state`` checks the fields' order): msgspec matches
                # no keywords then.
                self.emit(OrderUpdate(order, fill, ts))
            except Exception:  # a connector gone meanwhile: its successor reconciles
                log.debug("paper update not delivered", broker=self.name, exc_info=True)

    def _record(self) -> Change:
        """What this call changed, made the file's rows now: the venue goes on changing its
        own objects."""
        holdings = self.account.holdings
        if self._dirty_prices:
            known = self.feed.known()
            prices = [(symbol, known[symbol]) for symbol in self._dirty_prices]
        else:
            prices = []
        moved = []
        for symbol in self._dirty_holdings:
            holding = holdings[symbol]
            moved.append((symbol, holding.qty, holding.avg_price, holding.realized_pl))
        return stage_change(
            self.name,
            self._dirty,
            self.open,
            self._fills,
            moved,
            prices,
            (self.account.cash, self._created_at, self._next_order, self._next_fill),
            self._texts,
        )


def _per_bps(value: Decimal) -> Decimal:
    """``value / 10_000`` exactly: its digits, its exponent 4 lower.

    A product or sum with it has the digits (and the rounding) of one with
    ``value``, 4 places lower: what dividing that result by 10,000 gives, the
    division (exact: only the exponent moves) left out.
    """
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # settings are finite (``check_paper_settings``)
    return Decimal((sign, digits, exponent - 4))


def _news(
    updates: list[tuple[Order, Fill | None, int]],
) -> list[tuple[Order, Fill | None, int]]:
    """What one venue call reports of its ``(order, fill, ts)`` changes: every fill, and
    each order's last state.

    A state the call went past (a market order ``accepted`` and then filled
    inside ``submit``, a held leg released and filled on one tick) is news
    to nobody: the update after it, and any answer, say more.
    """
    if len(updates) < 2:
        return updates
    last = {order.id: i for i, (order, _, _) in enumerate(updates)}
    return [u for i, u in enumerate(updates) if u[1] is not None or last[u[0].id] == i]
