"""The simulated back end behind the TWS simulator: one account, a price feed, matching.

Everything here is synchronous and deterministic (a seeded ``random.Random``
walks the prices; the clock is injected), so the server can call it between
awaits without locks. Each operation returns the TWS messages it causes,
addressed to the API client id that owns the order (``None``: everyone).

Linked orders work as at TWS. A modification is PLACE_ORDER again under the
same order id: price, quantity and time in force change in place; another
side, contract or type is refused (105), and so is a filled order (104). An
order sent with ``transmit`` off waits, unseen, until an order of its family
arrives with ``transmit`` on: then the parent and all its children go out
together. Children (``parent_id``) stay PreSubmitted until their parent has
filled; a canceled parent takes its children with it; a fill of one child
cancels its siblings once it completes, and reduces them meanwhile. Orders
sharing an ``oca_group`` are one-cancels-all: with ``oca_type`` 1 any fill
cancels the others; with 2 and 3 a fill reduces them in proportion.
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

import msgspec

from ult_actors.brokers.ib import wire
from ult_actors.holding import Holding
from ult_actors.sim.ib.instruments import FX_PAIRS, Instrument, commission, resolve, stock

CENT = Decimal("0.01")
_BPS = Decimal("0.0001")
#: Order types the simulator executes.
ORDER_TYPES = frozenset({"MKT", "LMT", "STP", "STP LMT"})
TIFS = frozenset({"DAY", "GTC", "IOC", "FOK", "OPG"})
#: PendingSubmit: accepted by TWS while cut off from IB, not transmitted yet (held).
OPEN_STATES = frozenset({"PendingSubmit", "PreSubmitted", "Submitted", "PendingCancel"})
HELD = "PendingSubmit"
#: What an OCA group of each type does to the others on a fill.
OCA_CANCEL = 1
CANCELED = frozenset({"Cancelled", "ApiCancelled", "Inactive"})

#: (client id or None for every client, message)
Outgoing = tuple[int | None, wire.Incoming]


@dataclass
class SimOrder:
    """An order as the simulated TWS holds it."""

    client_id: int
    order_id: int
    perm_id: int
    contract: wire.Contract
    order: wire.IbOrder
    status: str = "PreSubmitted"
    filled: Decimal = Decimal(0)
    avg_price: Decimal = Decimal(0)
    last_fill_price: Decimal = Decimal(0)
    triggered: bool = False
    completed_time: str = ""
    completed_status: str = ""

    @property
    def remaining(self) -> Decimal:
        return self.order.total_quantity - self.filled

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATES

    @property
    def is_held(self) -> bool:
        """Accepted by TWS but not yet transmitted to IB: listed, never matched."""
        return self.status == HELD


@dataclass
class SimExchange:
    """Account, positions, prices and the order book of the simulated TWS."""

    rng: random.Random
    account: str = "DU1234567"
    cash: Decimal = Decimal(1_000_000)
    now_ns: Callable[[], int] = time.time_ns
    commission_per_share: Decimal = Decimal("0.005")
    min_commission: Decimal = Decimal(1)
    #: Largest relative move of one price tick.
    volatility: float = 0.0005
    orders: dict[int, SimOrder] = field(default_factory=dict)  # by perm id
    executions: list[tuple[wire.ExecDetails, wire.CommissionReport]] = field(default_factory=list)
    holdings: dict[str, Holding] = field(default_factory=dict)
    prices: dict[str, Decimal] = field(default_factory=dict)
    #: Every instrument traded or quoted so far, by key (``AAPL``, ``EUR.USD``).
    instruments: dict[str, Instrument] = field(default_factory=dict)
    realized_pnl: Decimal = Decimal(0)
    #: The most one execution takes (a thin book, for partial fills); ``None``: all.
    max_fill_qty: Decimal | None = None
    #: Orders sent with ``transmit`` off, by (client id, order id): not yet at IB.
    staged: dict[tuple[int, int], wire.PlaceOrder] = field(default_factory=dict)
    _next_perm_id: int = 1_000_001
    _exec_seq: int = 0

    # -- prices -------------------------------------------------------------

    def price(self, symbol: str) -> Decimal:
        """The last price of an instrument key; a new stock starts at a price derived
        from its name, an FX pair at its usual level."""
        if symbol not in self.prices:
            if symbol in FX_PAIRS:
                self.prices[symbol] = FX_PAIRS[symbol][0]
            else:
                base = 20 + zlib.crc32(symbol.encode()) % 480
                cents = Decimal(zlib.adler32(symbol.encode()) % 100) / 100
                self.prices[symbol] = Decimal(base) + cents
        return self.prices[symbol]

    def quote(self, symbol: str) -> tuple[Decimal, Decimal]:
        """(bid, ask) around the last price, a basis point or one tick either side."""
        last = self.price(symbol)
        tick = _tick(symbol)
        half = max(tick, (last * _BPS).quantize(tick))
        return last - half, last + half

    def set_price(self, symbol: str, price: Decimal) -> list[Outgoing]:
        """Move a price (tests, admin) and execute what it triggers."""
        self.prices[symbol] = price.quantize(_tick(symbol))
        return self.match(symbol)

    def usd(self, symbol: str, amount: Decimal) -> Decimal:
        """An amount in the quote currency of ``symbol`` in USD (the account's currency)."""
        quote = symbol.split(".")[1] if symbol in FX_PAIRS else "USD"
        if quote == "USD":
            return amount
        if f"USD.{quote}" in FX_PAIRS:
            return amount / self.price(f"USD.{quote}")
        return amount * self.price(f"{quote}.USD")

    def tick(self) -> list[Outgoing]:
        """One random step of every known price, then matching."""
        out: list[Outgoing] = []
        for symbol in sorted(self.prices):
            step = Decimal(str(round(self.rng.uniform(-self.volatility, self.volatility), 6)))
            tick = _tick(symbol)
            moved = (self.prices[symbol] * (1 + step)).quantize(tick, ROUND_HALF_UP)
            self.prices[symbol] = max(tick, moved)
            out += self.match(symbol)
        return out

    # -- orders -------------------------------------------------------------

    def find(self, client_id: int, order_id: int) -> SimOrder | None:
        for o in self.orders.values():
            if o.client_id == client_id and o.order_id == order_id:
                return o
        return None

    def max_order_id(self, client_id: int) -> int:
        placed = (o.order_id for o in self.orders.values() if o.client_id == client_id)
        staged = (oid for cid, oid in self.staged if cid == client_id)
        return max([*placed, *staged], default=0)

    def knows(self, client_id: int, order_id: int) -> bool:
        """Whether the id names an order of this client, placed or staged."""
        return (client_id, order_id) in self.staged or self.find(client_id, order_id) is not None

    def completes_a_family(self, client_id: int, msg: wire.PlaceOrder) -> bool:
        """Whether this transmitting order also sends staged orders (its parent, children)."""
        return msg.order.transmit and any(
            cid == client_id and (oid == msg.order.parent_id or p.order.parent_id == msg.order_id)
            for (cid, oid), p in self.staged.items()
        )

    def reject(self, client_id: int, order_id: int, code: int, text: str) -> list[Outgoing]:
        return [(client_id, wire.ErrorMessage(req_id=order_id, code=code, message=text))]

    def place(self, client_id: int, msg: wire.PlaceOrder) -> list[Outgoing]:
        """A new order (or, for a live order id, a modification)."""
        existing = self.find(client_id, msg.order_id)
        if existing is not None:
            return self._modify(existing, msg)
        key = (client_id, msg.order_id)
        if key not in self.staged and msg.order_id <= self.max_order_id(client_id):
            return self.reject(client_id, msg.order_id, 103, "Duplicate order id")
        problem = self._validate(msg)
        if problem is None and msg.order.parent_id:
            problem = self._check_parent(client_id, msg)
        if problem is not None:
            self.staged.pop(key, None)
            return self.reject(client_id, msg.order_id, *problem)
        if not msg.order.transmit:
            self.staged[key] = msg  # TWS keeps it, tells nobody, sends nothing to IB
            return []
        self.staged.pop(key, None)
        return self._transmit(client_id, msg)

    def _check_parent(self, client_id: int, msg: wire.PlaceOrder) -> tuple[int, str] | None:
        parent_id = msg.order.parent_id
        parent = self.find(client_id, parent_id)
        staged = self.staged.get((client_id, parent_id))
        if parent is None and staged is None:
            return 135, f"Can't find order with id ={parent_id}"
        if parent is not None and not parent.is_open and parent.status != "Filled":
            return 201, f"Order rejected - reason:Parent order {parent_id} is {parent.status}"
        return None

    def _transmit(self, client_id: int, msg: wire.PlaceOrder) -> list[Outgoing]:
        """Send an order and the staged orders of its family: parent first, then children."""
        family = [msg]
        parent = self.staged.pop((client_id, msg.order.parent_id), None)
        if parent is not None:
            family.insert(0, parent)
        head = family[0].order_id
        for key in sorted(k for k, p in self.staged.items() if k[0] == client_id):
            if self.staged[key].order.parent_id == head:
                family.append(self.staged.pop(key))
        new = [self._new_order(client_id, m) for m in sorted(family, key=lambda m: m.order_id)]
        out: list[Outgoing] = []
        for sim in new:
            out += self._open(sim)
        for sim in new:
            if self._oca_filled(sim):
                # Its group (cancel on fill) is done already: TWS cancels a late member.
                out += self._finish(sim, "Cancelled")
            else:
                out += self._execute_new(sim)
        return out

    def _oca_filled(self, sim: SimOrder) -> bool:
        """Whether another member of ``sim``'s cancel-on-fill OCA group has filled."""
        group = sim.order.oca_group
        if not group or sim.order.oca_type != OCA_CANCEL:
            return False
        return any(
            o is not sim
            and o.order.oca_group == group
            and o.order.account == sim.order.account
            and o.filled > 0
            for o in self.orders.values()
        )

    def hold(self, client_id: int, msg: wire.PlaceOrder) -> list[Outgoing]:
        """A new order TWS accepts while cut off from IB: open as PendingSubmit, not worked.

        Real TWS lists such an order among the open orders (and finds it by its
        order ref) until it can transmit it; ``release`` does that. What TWS can
        check by itself (the order's own fields) it refuses at once.
        """
        problem = self._validate(msg)
        if problem is not None:
            return self.reject(client_id, msg.order_id, *problem)
        sim = self._new_order(client_id, msg)
        sim.status = HELD
        return self._status(sim)

    def release(self, sim: SimOrder) -> list[Outgoing]:
        """Transmit a held order now that IB is back: worked, refused for funds, or
        canceled if its cancel-on-fill OCA group was done while it waited."""
        out = self._open(sim)
        if sim.is_open and self._oca_filled(sim):
            return out + self._finish(sim, "Cancelled")
        return out + self._execute_new(sim)

    def _new_order(self, client_id: int, msg: wire.PlaceOrder) -> SimOrder:
        perm_id = self._next_perm_id
        self._next_perm_id += 1
        order = msgspec.structs.replace(
            msg.order,
            client_id=client_id,
            perm_id=perm_id,
            account=msg.order.account or self.account,
            tif=msg.order.tif or "DAY",  # TWS's default when a client leaves it empty
        )
        instrument = resolve(msg.contract)
        assert instrument is not None, "checked by _validate"
        self.instruments[instrument.key] = instrument
        contract = msgspec.structs.replace(
            instrument.contract,
            exchange=msg.contract.exchange or instrument.contract.exchange,
            primary_exchange="",
        )
        sim = SimOrder(client_id, msg.order_id, perm_id, contract, order)
        self.orders[perm_id] = sim
        return sim

    def _open(self, sim: SimOrder) -> list[Outgoing]:
        """Check funds, then submit: children wait for their parent, stops for their trigger."""
        funds = self._check_funds(sim) if not sim.order.parent_id else None
        if funds is not None:
            out = self.reject(sim.client_id, sim.order_id, 201, funds)
            return out + self._finish(sim, "Inactive")
        if self._waits_for_parent(sim) or sim.order.order_type.startswith("STP"):
            sim.status = "PreSubmitted"
        else:
            sim.status = "Submitted"
        return self._status(sim)

    def _execute_new(self, sim: SimOrder) -> list[Outgoing]:
        """A just-submitted order's first chance to execute; IOC/FOK leftovers are canceled."""
        if not self._is_live(sim):
            return []
        out = self._try_execute(sim)
        if sim.is_open and sim.order.tif in ("IOC", "FOK"):
            out += self._finish(sim, "Cancelled")
        return out

    def _parent(self, sim: SimOrder) -> SimOrder | None:
        return self.find(sim.client_id, sim.order.parent_id) if sim.order.parent_id else None

    def _waits_for_parent(self, sim: SimOrder) -> bool:
        parent = self._parent(sim)
        if parent is None or parent.status == "Filled":
            return False
        return parent.is_open or parent.filled <= 0  # ended part-filled: the children go

    def _is_live(self, sim: SimOrder) -> bool:
        """Open, at IB, and free to execute."""
        return sim.is_open and not sim.is_held and not self._waits_for_parent(sim)

    def _children(self, sim: SimOrder) -> list[SimOrder]:
        return [
            o
            for o in self.orders.values()
            if o.is_open and o.client_id == sim.client_id and o.order.parent_id == sim.order_id
        ]

    def _validate(self, msg: wire.PlaceOrder) -> tuple[int, str] | None:
        o, c = msg.order, msg.contract
        if not c.symbol and not c.local_symbol:
            return 321, "Error validating request.-'bN' : cause - Missing symbol"
        if resolve(c) is None:
            return 200, "No security definition has been found for the request"
        if o.order_type not in ORDER_TYPES:
            return 201, f"Order rejected - reason:Unsupported order type {o.order_type!r}"
        if o.tif and o.tif not in TIFS:
            return 201, f"Order rejected - reason:Unsupported time in force {o.tif!r}"
        if o.action not in ("BUY", "SELL"):
            return 201, f"Order rejected - reason:Invalid action {o.action!r}"
        if o.total_quantity <= 0:
            return 201, "Order rejected - reason:The order size must be positive"
        if o.order_type in ("LMT", "STP LMT") and (o.lmt_price is None or o.lmt_price <= 0):
            return 201, "Order rejected - reason:The limit price must be positive"
        if o.order_type in ("STP", "STP LMT") and (o.aux_price is None or o.aux_price <= 0):
            return 201, "Order rejected - reason:The stop price must be positive"
        if o.account and o.account != self.account:
            return 201, f"Order rejected - reason:Account {o.account} is not managed by this login"
        return None

    def _check_funds(self, sim: SimOrder) -> str | None:
        if sim.order.action != "BUY":
            return None
        key = key_of(sim.contract)
        price = sim.order.lmt_price or self.quote(key)[1]
        needed = self.usd(key, sim.order.total_quantity * price) + self.gross_position_value()
        equity = self.net_liquidation()
        if needed > 2 * equity:
            return (
                "Order rejected - reason:YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED"
                f" POSITION YOUR EQUITY WITH LOAN VALUE [{equity:.2f} USD] MUST EXCEED THE INITIAL"
                f" MARGIN [{needed / 2:.2f} USD]"
            )
        return None

    def _modify(self, sim: SimOrder, msg: wire.PlaceOrder) -> list[Outgoing]:
        """Price, quantity and time in force change in place; the fills so far stay."""
        if sim.status == "Filled":
            return self.reject(sim.client_id, sim.order_id, 104, "Can't modify a filled order")
        if not sim.is_open:
            return self.reject(sim.client_id, sim.order_id, 103, "Duplicate order id")
        o = msg.order
        same = resolve(msg.contract)
        if (
            same is None
            or same.key != key_of(sim.contract)
            or o.action != sim.order.action
            or o.order_type != sim.order.order_type
        ):
            # Another order under a live id, or a change TWS only makes as cancel + new.
            return self.reject(
                sim.client_id,
                sim.order_id,
                105,
                "Order being modified does not match original order",
            )
        problem = self._validate(msg)
        if problem is None and o.total_quantity < sim.filled:
            problem = (
                134,
                f"Modify order failed. The quantity {o.total_quantity} is below the"
                f" {sim.filled} already filled",
            )
        if problem is not None:
            return self.reject(sim.client_id, sim.order_id, *problem)
        sim.order = msgspec.structs.replace(
            sim.order,
            total_quantity=o.total_quantity,
            lmt_price=o.lmt_price,
            aux_price=o.aux_price,
            tif=o.tif or sim.order.tif,
            outside_rth=o.outside_rth,
            order_ref=o.order_ref,  # a tag of the client's: it may change with the rest
        )
        if sim.remaining <= 0:  # cut down to what has filled: done
            return self._finish(sim, "Filled")
        out = self._status(sim)
        return out + (self._try_execute(sim) if self._is_live(sim) else [])

    def execute(self, client_id: int, order_id: int, qty: Decimal) -> list[Outgoing]:
        """A counterparty takes ``qty`` of a working order at its limit (or the market)."""
        sim = self.find(client_id, order_id)
        if sim is None or not self._is_live(sim):
            raise ValueError(f"order {order_id} of client {client_id} is not working")
        bid, ask = self.quote(key_of(sim.contract))
        price = sim.order.lmt_price or (ask if sim.order.action == "BUY" else bid)
        return self._fill(sim, min(qty, sim.remaining), price)

    def cancel(self, client_id: int, order_id: int) -> list[Outgoing]:
        if self.staged.pop((client_id, order_id), None) is not None:
            return self.reject(client_id, order_id, 202, "Order Canceled - reason:")
        sim = self.find(client_id, order_id)
        if sim is None:
            return self.reject(
                client_id,
                order_id,
                10147,
                f"OrderId {order_id} that needs to be cancelled is not found.",
            )
        if not sim.is_open:
            return self.reject(
                client_id,
                order_id,
                10148,
                f"OrderId {order_id} that needs to be cancelled cannot be cancelled, state: {sim.status}.",
            )
        return [
            *self.reject(client_id, order_id, 202, "Order Canceled - reason:"),
            *self._finish(sim, "Cancelled"),
        ]

    def cancel_all(self) -> list[Outgoing]:
        self.staged.clear()
        out: list[Outgoing] = []
        for sim in list(self.orders.values()):
            if sim.is_open:
                out += self._finish(sim, "Cancelled")
        return out

    def _finish(self, sim: SimOrder, status: str) -> list[Outgoing]:
        sim.status = status
        sim.completed_status = status
        sim.completed_time = self._ib_time()
        out = self._status(sim)
        if status in CANCELED:
            out += self._orphan_children(sim)
        return out

    def _orphan_children(self, parent: SimOrder) -> list[Outgoing]:
        """A parent ended unfilled: its children go too, or protect what did fill."""
        out: list[Outgoing] = []
        for child in self._children(parent):
            if parent.filled <= 0:
                out += self._finish(child, "Cancelled")
                continue
            # Worked for the quantity that did fill (``_waits_for_parent`` lets it go).
            child.order = msgspec.structs.replace(child.order, total_quantity=parent.filled)
            out += self._open(child) + self._execute_new(child)
        return out

    def _status(self, sim: SimOrder) -> list[Outgoing]:
        return [
            (sim.client_id, self.open_order_msg(sim)),
            (sim.client_id, self.order_status_msg(sim)),
        ]

    def open_order_msg(self, sim: SimOrder) -> wire.OpenOrder:
        return wire.OpenOrder(
            order_id=sim.order_id, contract=sim.contract, order=sim.order, status=sim.status
        )

    def order_status_msg(self, sim: SimOrder) -> wire.OrderStatus:
        return wire.OrderStatus(
            order_id=sim.order_id,
            status=sim.status,
            filled=sim.filled,
            remaining=sim.remaining if sim.is_open or sim.status == "Filled" else Decimal(0),
            avg_fill_price=sim.avg_price,
            perm_id=sim.perm_id,
            parent_id=sim.order.parent_id,
            last_fill_price=sim.last_fill_price,
            client_id=sim.client_id,
        )

    def completed_order_msg(self, sim: SimOrder) -> wire.CompletedOrder:
        return wire.CompletedOrder(
            contract=sim.contract,
            order=sim.order,
            status=sim.status,
            filled_quantity=sim.filled,
            completed_time=sim.completed_time,
            completed_status=sim.completed_status,
        )

    # -- matching -----------------------------------------------------------

    def match(self, symbol: str) -> list[Outgoing]:
        out: list[Outgoing] = []
        for sim in list(self.orders.values()):
            # Checked at each turn: a fill above may have canceled or released this one.
            if self._is_live(sim) and key_of(sim.contract) == symbol:
                out += self._try_execute(sim)
        return out

    def _try_execute(self, sim: SimOrder) -> list[Outgoing]:
        o = sim.order
        bid, ask = self.quote(key_of(sim.contract))
        buy = o.action == "BUY"
        touch = ask if buy else bid
        out: list[Outgoing] = []
        if o.order_type.startswith("STP") and not sim.triggered:
            assert o.aux_price is not None
            if (buy and touch < o.aux_price) or (not buy and touch > o.aux_price):
                return out
            sim.triggered = True
            sim.status = "Submitted"
            out += self._status(sim)
        if o.order_type in ("LMT", "STP LMT"):
            assert o.lmt_price is not None
            if (buy and touch > o.lmt_price) or (not buy and touch < o.lmt_price):
                return out
        qty = sim.remaining
        if self.max_fill_qty is not None:
            qty = min(qty, self.max_fill_qty)
        return out + self._fill(sim, qty, touch)

    def _fill(self, sim: SimOrder, qty: Decimal, price: Decimal) -> list[Outgoing]:
        before = sim.remaining
        out = self._execute(sim, qty, price)
        return out + self._after_fill(sim, qty, before)

    def _after_fill(self, sim: SimOrder, qty: Decimal, before: Decimal) -> list[Outgoing]:
        """What a fill does to linked orders: children released, siblings and OCA peers cut."""
        out: list[Outgoing] = []
        done = sim.status == "Filled"
        if done:
            for child in self._children(sim):
                out += self._open(child) + self._execute_new(child)
        cancel_peers = self._oca_peers(sim) if sim.order.oca_type == OCA_CANCEL else []
        reduce_peers = [
            p for p in self._siblings(sim) + self._oca_peers(sim) if p not in cancel_peers
        ]
        for peer in cancel_peers:
            if peer.is_open:
                out += self._finish(peer, "Cancelled")
        for peer in reduce_peers:
            if not peer.is_open:
                continue
            cut = qty * peer.remaining / before
            if peer.remaining == peer.remaining.to_integral_value():
                cut = cut.quantize(Decimal(1), ROUND_HALF_UP)
            if done or peer.remaining - cut <= 0:
                out += self._finish(peer, "Cancelled")
                continue
            peer.order = msgspec.structs.replace(
                peer.order, total_quantity=peer.order.total_quantity - cut
            )
            out += self._status(peer)
        return out

    def _siblings(self, sim: SimOrder) -> list[SimOrder]:
        """The other open children of the same parent: a bracket's exits."""
        if not sim.order.parent_id:
            return []
        return [
            o
            for o in self.orders.values()
            if o is not sim
            and o.is_open
            and o.client_id == sim.client_id
            and o.order.parent_id == sim.order.parent_id
        ]

    def _oca_peers(self, sim: SimOrder) -> list[SimOrder]:
        """The other open orders of the account in the same OCA group."""
        group = sim.order.oca_group
        if not group:
            return []
        return [
            o
            for o in self.orders.values()
            if o is not sim
            and o.is_open
            and o.order.oca_group == group
            and o.order.account == sim.order.account
        ]

    def _execute(self, sim: SimOrder, qty: Decimal, price: Decimal) -> list[Outgoing]:
        self._exec_seq += 1
        buy = sim.order.action == "BUY"
        total_before = sim.avg_price * sim.filled
        sim.filled += qty
        sim.avg_price = ((total_before + price * qty) / sim.filled).quantize(Decimal("0.0001"))
        sim.last_fill_price = price
        key = key_of(sim.contract)
        value = self.usd(key, qty * price)
        fee = commission(
            self.instruments.get(key) or stock(key),
            qty,
            value,
            per_share=self.commission_per_share,
            minimum=self.min_commission,
        )
        realized = self._book(key, qty if buy else -qty, price)
        self.cash -= (value if buy else -value) + fee
        exec_id = f"{sim.perm_id:08x}.{self._exec_seq:08x}.01.01"
        details = wire.ExecDetails(
            req_id=-1,
            order_id=sim.order_id,
            contract=sim.contract,
            exec_id=exec_id,
            time=self._ib_time(),
            account=sim.order.account,
            exchange="ISLAND",
            side="BOT" if buy else "SLD",
            shares=qty,
            price=price,
            perm_id=sim.perm_id,
            client_id=sim.client_id,
            cum_qty=sim.filled,
            avg_price=sim.avg_price,
            order_ref=sim.order.order_ref,
            last_liquidity=2,
        )
        report = wire.CommissionReport(exec_id=exec_id, commission=fee, realized_pnl=realized)
        self.executions.append((details, report))
        if sim.remaining <= 0:
            sim.status = "Filled"
            sim.completed_status = "Filled"
            sim.completed_time = details.time
        return [
            (sim.client_id, details),
            (sim.client_id, self.order_status_msg(sim)),
            (sim.client_id, self.open_order_msg(sim)),
            (sim.client_id, report),
        ]

    def _book(self, symbol: str, signed_qty: Decimal, price: Decimal) -> Decimal | None:
        """Apply a fill to the position; returns realized P&L when it reduced one."""
        h = self.holdings.setdefault(symbol, Holding())
        adding = h.qty == 0 or (h.qty > 0) == (signed_qty > 0)
        realized = h.book(signed_qty, price)
        if adding:
            # TWS reports a new average cost to 4 places; reducing keeps it as it was.
            h.avg_price = h.avg_price.quantize(Decimal("0.0001"))
            return None
        realized_usd = self.usd(symbol, realized).quantize(CENT)
        self.realized_pnl += realized_usd
        return realized_usd

    # -- account ------------------------------------------------------------

    def gross_position_value(self) -> Decimal:
        return sum(
            (self.usd(s, abs(h.qty) * self.price(s)) for s, h in self.holdings.items()),
            Decimal(0),
        )

    def net_liquidation(self) -> Decimal:
        return self.cash + sum(
            (self.usd(s, h.qty * self.price(s)) for s, h in self.holdings.items()), Decimal(0)
        )

    def account_values(self) -> dict[str, str]:
        """Account summary tags and values (all USD)."""
        equity = self.net_liquidation()
        gross = self.gross_position_value()
        buying_power = max(Decimal(0), 2 * equity - gross)
        values = {
            "AccountType": "INDIVIDUAL",
            "NetLiquidation": equity,
            "TotalCashValue": self.cash,
            "SettledCash": self.cash,
            "BuyingPower": buying_power,
            "EquityWithLoanValue": equity,
            "GrossPositionValue": gross,
            "AvailableFunds": buying_power / 2,
            "ExcessLiquidity": buying_power / 2,
            "InitMarginReq": gross / 2,
            "MaintMarginReq": gross / 4,
            "RealizedPnL": self.realized_pnl,
        }
        return {k: v if isinstance(v, str) else f"{v:.2f}" for k, v in values.items()}

    def positions(self) -> list[wire.PositionData]:
        """Every non-zero position."""
        return [self.position_of(s) for s, h in sorted(self.holdings.items()) if h.qty != 0]

    def position_of(self, key: str) -> wire.PositionData:
        """One position as ``reqPositions`` reports it (zero once closed)."""
        h = self.holdings.get(key) or Holding()
        return wire.PositionData(
            account=self.account,
            contract=self._held_contract(key, exchange="NASDAQ"),
            position=h.qty,
            avg_cost=h.avg_price,
        )

    def portfolio(self) -> list[wire.PortfolioValue]:
        """Every non-zero portfolio line."""
        return [self.portfolio_of(s) for s, h in sorted(self.holdings.items()) if h.qty != 0]

    def portfolio_of(self, key: str) -> wire.PortfolioValue:
        """One portfolio line as ``reqAccountUpdates`` reports it (zero once closed)."""
        h = self.holdings.get(key) or Holding()
        price = self.price(key)
        return wire.PortfolioValue(
            contract=self._held_contract(key, exchange="", primary_exchange="NASDAQ"),
            position=h.qty,
            market_price=price,
            market_value=self.usd(key, h.qty * price),
            average_cost=h.avg_price,
            unrealized_pnl=self.usd(key, (price - h.avg_price) * h.qty).quantize(CENT),
            realized_pnl=Decimal(0),
            account=self.account,
        )

    def _held_contract(
        self, key: str, *, exchange: str, primary_exchange: str = ""
    ) -> wire.Contract:
        """The contract a position report shows: an FX pair as such, a stock with its listing."""
        instrument = self.instruments.get(key) or stock(key)
        if instrument.is_fx:
            return instrument.contract
        return wire.Contract(
            symbol=key,
            con_id=instrument.contract.con_id,
            exchange=exchange,
            primary_exchange=primary_exchange,
        )

    def _ib_time(self) -> str:
        return datetime.fromtimestamp(self.now_ns() / 1e9, UTC).strftime("%Y%m%d  %H:%M:%S")


def key_of(contract: wire.Contract) -> str:
    """The exchange's key of an order's contract: the symbol, or ``EUR.USD`` for FX."""
    return contract.local_symbol if contract.sec_type == "CASH" else contract.symbol


def _tick(key: str) -> Decimal:
    return FX_PAIRS[key][1] if key in FX_PAIRS else CENT
