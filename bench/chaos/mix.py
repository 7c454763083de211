"""The chaos run's order mix, fixed by the seed: plain orders, replaces, and order lists.

Every price is far from any market the brokers quote (stocks trade between
$1 and $100,000, FX between 0.5 and 100), so whether an order rests or fills
at once is known when it is planned:

- **plain**: mostly market orders; some resting limits, half of them canceled.
- **replace**: a resting limit whose terms change while it works: new price
  and quantity still far away (it goes on resting), or a price that crosses
  the market (the replacement fills) followed at once by a second replace
  that races that fill (replaced, after a partial fill where fills come in
  parts, or refused naming the filled order).
- **oco**: two exits on one side; half of them with a take-profit that fills
  at once, so its peer stop must be canceled.
- **bracket**: a market entry with exits far on both sides (they rest once
  the entry fills).
- **oto**: a market parent whose child is sent once it fills; the child
  rests or, where the venue takes it, fills at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from dataclasses import replace as _with
from decimal import Decimal
from typing import Literal

import msgspec

from ult_actors.client import bracket_request, oco_request, order_request, oto_request
from ult_actors.messages import Order, OrderListRequest, Side

SYMBOLS = ["AAPL", "MSFT", "SPY", "QQQ", "TSLA"]
FX = ["EUR_USD", "GBP_USD"]

Kind = Literal["order", "replace", "oco", "bracket", "oto"]
#: Share of each kind in the mix.
KINDS: dict[Kind, float] = {"order": 0.7, "replace": 0.1, "oco": 0.08, "bracket": 0.06, "oto": 0.06}


@dataclass(frozen=True)
class Prices:
    """Prices no market reaches (``low``, ``lowest``) or always exceeds (``high``, ``highest``)."""

    lowest: Decimal
    low: Decimal
    high: Decimal
    highest: Decimal


STOCK = Prices(Decimal("0.5"), Decimal(1), Decimal(100000), Decimal(200000))
CURRENCY = Prices(Decimal("0.25"), Decimal("0.5"), Decimal(100), Decimal(200))


@dataclass(frozen=True)
class ReplaceStep:
    """One replace a client asks for: the new total quantity and/or limit price."""

    qty: int | None
    limit_price: Decimal | None


@dataclass(frozen=True)
class PlannedOrder:
    """One order (or list) a client will send; ``coid`` names it (a list: its first leg)."""

    coid: str
    broker: str
    symbol: str
    side: Side
    qty: int
    type: str
    limit_price: Decimal | None
    cancel: bool
    kind: Kind = "order"
    replaces: tuple[ReplaceStep, ...] = ()
    orders: OrderListRequest | None = None

    def replacement_id(self, step: int) -> str:
        """The client order id of the replacement made by ``replaces[step]``."""
        return f"{self.coid}.r{step + 1}"

    @property
    def coids(self) -> list[str]:
        """Every client order id the client gives this plan item."""
        if self.orders is not None:
            return [str(leg.client_order_id) for leg in self.orders.legs]
        return [self.coid, *(self.replacement_id(i) for i in range(len(self.replaces)))]


def parse_mix(text: str) -> dict[Kind, float]:
    """``order=0.4,oco=0.2``: shares of the kinds named (the others keep theirs)."""
    shares = dict(KINDS)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in KINDS:
            raise ValueError(f"unknown kind {name!r} (kinds: {', '.join(KINDS)})")
        share = float(value)
        if not 0 <= share <= 1:
            raise ValueError(f"{name}: a share is between 0 and 1")
        shares[name] = share
    if sum(shares.values()) <= 0:
        raise ValueError("the shares add up to nothing")
    return shares


def make_plan(
    n: int,
    seed: int,
    brokers: list[str],
    lists_at: list[str] | None = None,
    shares: dict[Kind, float] = KINDS,
) -> list[PlannedOrder]:
    """The orders, fixed by the seed; order lists only to ``lists_at`` (default: all);
    ``shares`` weighs the kinds."""
    rng = random.Random(seed)
    kinds, weights = list(shares), list(shares.values())
    plan = []
    for i in range(n):
        broker = rng.choice(brokers)
        kind = rng.choices(kinds, weights)[0]
        if lists_at is not None and broker not in lists_at and kind not in ("order", "replace"):
            kind = "order"
        fx = broker == "oanda"
        item = PlannedOrder(
            coid=f"chaos-{seed}-{i}",
            broker=broker,
            symbol=rng.choice(FX if fx else SYMBOLS),
            side="buy" if rng.random() < 0.6 else "sell",
            qty=rng.randint(1, 20) * (100 if fx else 1),
            type="market",
            limit_price=None,
            cancel=False,
            kind=kind,
        )
        prices = CURRENCY if fx else STOCK
        if kind == "order":
            item = _plain(item, rng, prices, shares["order"])
        elif kind == "replace":
            item = _replaced(item, rng, prices)
        else:
            item = _listed(item, rng, prices)
        plan.append(item)
    return plan


def _far(side: str, prices: Prices) -> Decimal:
    """A limit price that rests for the whole run."""
    return prices.low if side == "buy" else prices.high


def _crossing(side: str, prices: Prices) -> Decimal:
    """A limit price that fills at once."""
    return prices.high if side == "buy" else prices.low


def still_filling(order: Order) -> bool:
    """Whether ``order``, still open, has fills to come: a market order, or a limit whose
    price crosses every market (a venue that fills in parts goes on filling it)."""
    if order.type == "market":
        return True
    if order.type != "limit" or order.limit_price is None:
        return False
    prices = CURRENCY if order.symbol in FX else STOCK
    if order.side == "buy":
        return order.limit_price >= prices.high
    return order.limit_price <= prices.low


def _plain(
    item: PlannedOrder, rng: random.Random, prices: Prices, share: float
) -> PlannedOrder:
    # 15 % of all orders are plain resting limits, whatever the plain orders' share.
    if rng.random() >= 0.15 / share:
        return item
    return _with(item, type="limit", limit_price=_far(item.side, prices), cancel=rng.random() < 0.5)


def _replaced(item: PlannedOrder, rng: random.Random, prices: Prices) -> PlannedOrder:
    unit = 100 if item.symbol in FX else 1
    new_qty = rng.randint(1, 20) * unit
    if rng.random() < 0.5:
        # Still far: the replacement rests, and a client may cancel it.
        nearer = prices.low * 2 if item.side == "buy" else prices.high / 2
        steps: tuple[ReplaceStep, ...] = (ReplaceStep(new_qty, nearer),)
        cancel = rng.random() < 0.5
    else:
        # Crosses the market: the replacement fills, and the second replace races that fill
        # (landing, where fills come in parts, after some: it asks for more than was filled).
        steps = (
            ReplaceStep(None, _crossing(item.side, prices)),
            ReplaceStep(item.qty + new_qty, None),
        )
        cancel = False
    return _with(
        item, type="limit", limit_price=_far(item.side, prices), replaces=steps, cancel=cancel
    )


def _listed(item: PlannedOrder, rng: random.Random, prices: Prices) -> PlannedOrder:
    other: Side = "sell" if item.side == "buy" else "buy"
    list_id = f"{item.coid}-list"
    orders: OrderListRequest
    if item.kind == "oco":
        # Exits that sell take their profit above their stop; exits that buy, below it.
        selling = item.side == "sell"
        fills = rng.random() < 0.5
        if selling:
            take_profit = prices.low if fills else prices.high
            stop_loss = prices.lowest
        else:
            take_profit = prices.high if fills else prices.low
            stop_loss = prices.highest
        orders = oco_request(
            item.symbol, item.side, item.qty, take_profit=take_profit, stop_loss=stop_loss,
            broker=item.broker, list_id=list_id,
        )  # fmt: skip
    elif item.kind == "bracket":
        up = item.side == "buy"
        orders = bracket_request(
            item.symbol, item.side, item.qty,
            take_profit=prices.high if up else prices.low,
            stop_loss=prices.low if up else prices.high,
            broker=item.broker, list_id=list_id,
        )  # fmt: skip
    else:
        # Alpaca takes an OTO's child only as an exit beyond the entry: there it rests.
        fills = item.broker != "alpaca" and rng.random() < 0.5
        child_price = _crossing(other, prices) if fills else _far(other, prices)
        orders = oto_request(
            order_request(item.symbol, item.side, item.qty),
            order_request(item.symbol, other, item.qty, type="limit", limit_price=child_price),
            broker=item.broker, list_id=list_id,
        )  # fmt: skip
    legs = [
        msgspec.structs.replace(leg, client_order_id=f"{item.coid}-{n}")
        for n, leg in enumerate(orders.legs)
    ]
    legs[0] = msgspec.structs.replace(legs[0], client_order_id=item.coid)
    return _with(item, orders=msgspec.structs.replace(orders, legs=legs))
