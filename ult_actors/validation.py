"""Checks an order request before anything leaves the service.

Broker-independent rules only; a connector may refuse more (for example a
venue that has no ``opg``). Every failure is an ``InvalidOrder`` naming the
field, with a message a trader can act on.

Every decimal a client sends is bounded here, before any actor does
arithmetic on it (see "Client numbers" in docs/architecture.md): finite,
written as plain digits (no exponent), at most ``MAX_DECIMAL_PLACES``
places and below ``MAX_DECIMAL`` in magnitude. Within those bounds no sum,
product or comparison in risk, positions or a connector can leave the
default decimal context (28 digits, exponents to 999999), so none can raise.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Final

import msgspec

from ult_actors.errors import InvalidOrder
from ult_actors.messages import (
    Contingency,
    LegRole,
    Order,
    OrderListRequest,
    OrderRequest,
    ReplaceRequest,
)

# Upper-case tickers and FX pairs: AAPL, BRK.B, EUR_USD, BTC/USD. Both are used with
# ``fullmatch``: ``$`` also matched before a trailing newline ("AAPL\n" passed).
SYMBOL_RE: Final = re.compile(r"[A-Z][A-Z0-9]{0,11}(?:[._/-][A-Z0-9]{1,11})?")
# Printable ASCII without spaces; brokers limit the length (Alpaca 128, IB orderRef).
CLIENT_ORDER_ID_RE: Final = re.compile(r"[A-Za-z0-9._:-]{1,48}")

# The module's constants are ``Final``: compiled, each is a C static, not a look-up in
# the module's dict (nine of those an order, ~0.9k instructions).
_TIFS_BY_TYPE: Final[dict[str, frozenset[str]]] = {
    "market": frozenset({"day", "gtc", "ioc", "fok", "opg", "cls"}),
    "limit": frozenset({"day", "gtc", "ioc", "fok", "opg", "cls"}),
    "stop": frozenset({"day", "gtc"}),
    "stop_limit": frozenset({"day", "gtc"}),
}
#: Whether an order type needs a limit price, and a stop price (each is refused otherwise).
_PRICES_BY_TYPE: Final[dict[str, tuple[bool, bool]]] = {
    "market": (False, False),
    "limit": (True, False),
    "stop": (False, True),
    "stop_limit": (True, True),
}


#: A quantity or price as text: ASCII digits with at most one '.', nothing else
#: (no exponent, sign, underscore or space: "1e1" and "1_0" are not 10 here).
PLAIN_DECIMAL: Final = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)
#: Most decimal places of a quantity or price: Alpaca's crypto quantities go to 9,
#: no venue quotes a price finer, and 1e-9 is far below any lot or tick size.
MAX_DECIMAL_PLACES: Final = 9
#: Quantities and prices must be below this (a trillion): beyond any real order,
#: and it keeps ``qty * price`` (at most 42 digits) far from the context's limits.
MAX_DECIMAL: Final = Decimal(10) ** 12
_MAX_ADJUSTED: Final = 11  # the exponent of the leading digit of anything below MAX_DECIMAL
_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)


def check_decimal(value: Decimal, field: str) -> None:
    """Raise ``InvalidOrder`` naming ``field`` unless ``value`` is a plain, bounded, positive
    decimal: finite, no exponent form, at most ``MAX_DECIMAL_PLACES`` places, below
    ``MAX_DECIMAL``.

    Reads the sign, digits and exponent first and compares ``value`` only once it is
    bounded, so any ``Decimal`` (``1E+999999999``, ``sNaN``) gets an answer rather
    than an exception.
    """
    # A whole number in bounds (most quantities): its exponent and two compares, not the
    # three method calls below (``same_quantum`` is False for NaN and the infinities).
    if value.same_quantum(_ONE) and _ZERO < value < MAX_DECIMAL:
        return
    if not value.is_finite():
        raise InvalidOrder(f"{field} must be a finite number, got {value}", field=field)
    # Whole numbers (most quantities) have exponent 0: ``same_quantum`` says so without
    # ``as_tuple``, which builds a tuple of every digit (two thirds of this check's cost).
    exponent = 0 if value.same_quantum(_ONE) else value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    if value.adjusted() > _MAX_ADJUSTED:
        raise InvalidOrder(f"{field} is too large (must be below {MAX_DECIMAL:,})", field=field)
    if exponent > 0:
        # Plain digits never decode to a positive exponent: "1e1" did, which is 10.
        raise InvalidOrder(
            f"{field} must be written as plain digits such as 10 or 0.25, not {value}",
            field=field,
        )
    if -exponent > MAX_DECIMAL_PLACES:
        raise InvalidOrder(
            f"{field} has more than {MAX_DECIMAL_PLACES} decimal places: {value}", field=field
        )
    if value <= _ZERO:
        raise InvalidOrder(f"{field} must be greater than 0, got {value}", field=field)


def validate_symbol(symbol: str) -> None:
    """Raise ``InvalidOrder`` (field ``symbol``) unless ``symbol`` is a well-formed symbol."""
    if not SYMBOL_RE.fullmatch(symbol):
        raise InvalidOrder(
            f"symbol {symbol!r} is not a valid symbol (upper-case, e.g. AAPL or EUR_USD)",
            field="symbol",
        )


def _plain_ticker(symbol: str) -> bool:
    """Whether ``symbol`` is a letter and up to 11 more letters or digits, all ASCII
    upper-case: ``SYMBOL_RE``'s usual case (AAPL), told by its characters' codes in a
    fraction of the regex engine's ~2k instructions; anything else goes to ``SYMBOL_RE``.

    Compiled, ``ord`` of each character is a native integer compared natively: ~0.7k
    instructions for AAPL, against ~1.3k for the four string methods that told it before
    (``isascii``, ``isalnum``, ``isupper``, ``isalpha``: each a method call by name).
    """
    if not 0 < len(symbol) <= 12:
        return False
    first = True
    for char in symbol:
        code = ord(char)
        # A-Z anywhere; 0-9 after the first.
        if not (65 <= code <= 90 or (not first and 48 <= code <= 57)):
            return False
        first = False
    return True


def validate_order(req: OrderRequest) -> None:
    """Raise ``InvalidOrder`` if ``req`` breaks a broker-independent rule."""
    # Run on every order: the checks that pass are inlined, the helpers kept for the messages.
    symbol = req.symbol
    if not _plain_ticker(symbol) and not SYMBOL_RE.fullmatch(symbol):
        validate_symbol(symbol)
    check_decimal(req.qty, "qty")
    limit_price, stop_price, order_type = req.limit_price, req.stop_price, req.type
    if limit_price is not None:
        check_decimal(limit_price, "limit_price")
    if stop_price is not None:
        check_decimal(stop_price, "stop_price")
    needs_limit, needs_stop = _PRICES_BY_TYPE[order_type]
    if needs_limit and limit_price is None:
        raise InvalidOrder(f"limit_price is required for {order_type} orders", field="limit_price")
    if not needs_limit and limit_price is not None:
        raise InvalidOrder(
            f"limit_price does not apply to {order_type} orders", field="limit_price"
        )
    if needs_stop and stop_price is None:
        raise InvalidOrder(f"stop_price is required for {order_type} orders", field="stop_price")
    if not needs_stop and stop_price is not None:
        raise InvalidOrder(f"stop_price does not apply to {order_type} orders", field="stop_price")
    if req.time_in_force not in _TIFS_BY_TYPE[order_type]:
        allowed = ", ".join(sorted(_TIFS_BY_TYPE[order_type]))
        raise InvalidOrder(
            f"time_in_force {req.time_in_force} is not allowed for {order_type} orders"
            f" (allowed: {allowed})",
            field="time_in_force",
        )
    if req.extended_hours and not (order_type == "limit" and req.time_in_force == "day"):
        raise InvalidOrder(
            "extended_hours needs a limit order with time_in_force day", field="extended_hours"
        )
    coid = req.client_order_id
    if coid is not None and not CLIENT_ORDER_ID_RE.fullmatch(coid):
        validate_client_id(coid, "client_order_id")


def with_leg_ids(request: OrderListRequest, new_id: Callable[[], str]) -> OrderListRequest:
    """``request`` with an id for every leg without one, and for the list.

    A list named by the caller gives its legs ``LIST_ID-1``, ``LIST_ID-2``, ...: asked
    again (a retry) it is the same legs, which the service answers once. Otherwise each
    leg gets ``new_id()`` and the list ``FIRST_LEG_ID-list``.
    """
    named = request.list_id
    legs = [
        leg
        if leg.client_order_id is not None
        else msgspec.structs.replace(
            leg, client_order_id=f"{named}-{i + 1}" if named is not None else new_id()
        )
        for i, leg in enumerate(request.legs)
    ]
    # No legs: left as it is, for validate_order_list to refuse naming ``legs``.
    list_id = named or (f"{legs[0].client_order_id}-list" if legs else None)
    return msgspec.structs.replace(request, legs=legs, list_id=list_id)


def validate_client_id(value: str | None, field: str) -> None:
    """Raise ``InvalidOrder`` naming ``field`` unless ``value`` is ``None`` or a usable id."""
    if value is not None and not CLIENT_ORDER_ID_RE.fullmatch(value):
        raise InvalidOrder(
            f"{field} must be 1-48 characters of letters, digits and . _ : -", field=field
        )


def replaced_terms(order: Order, change: ReplaceRequest) -> OrderRequest:
    """The order ``change`` asks for: ``order``'s terms with the changed fields, validated.

    Raises ``InvalidOrder`` naming the field for a change that makes no order
    (a limit price on a market order, a total below what has filled) or that
    names nothing to change.
    """
    if (
        change.qty is None
        and change.limit_price is None
        and change.stop_price is None
        and change.time_in_force is None
    ):
        raise InvalidOrder(
            "a replace needs at least one change: qty, limit_price, stop_price or time_in_force"
        )
    validate_client_id(change.client_order_id, "client_order_id")
    if change.qty is not None:
        check_decimal(change.qty, "qty")
        if change.qty <= order.filled_qty:
            raise InvalidOrder(
                f"qty {change.qty} must exceed what has filled already ({order.filled_qty}):"
                " qty is the order's new total",
                field="qty",
            )
    terms = OrderRequest(
        symbol=order.symbol,
        side=order.side,
        qty=order.qty if change.qty is None else change.qty,
        type=order.type,
        limit_price=order.limit_price if change.limit_price is None else change.limit_price,
        stop_price=order.stop_price if change.stop_price is None else change.stop_price,
        time_in_force=order.time_in_force if change.time_in_force is None else change.time_in_force,
        extended_hours=order.extended_hours,
        broker=order.broker,
        client_order_id=change.client_order_id,
        deadline_ns=change.deadline_ns,
    )
    validate_order(terms)
    return terms


def check_replace_changes(order: Order, change: ReplaceRequest, terms: OrderRequest) -> None:
    """Raise ``InvalidOrder`` if ``terms`` (``replaced_terms(order, change)``) are ``order``'s own.

    Sent anyway, the venue would cancel the order and place a copy of it. Checked
    where a client's replace comes in, not at the venues: a replace sent again
    after a lost answer may find its change already applied there.
    """
    if (terms.qty, terms.limit_price, terms.stop_price, terms.time_in_force) == (
        order.qty, order.limit_price, order.stop_price, order.time_in_force
    ):  # fmt: skip
        asked = {
            "qty": change.qty,
            "limit_price": change.limit_price,
            "stop_price": change.stop_price,
            "time_in_force": change.time_in_force,
        }
        has = ", ".join(f"{name} {value}" for name, value in asked.items() if value is not None)
        raise InvalidOrder(
            f"the replace changes nothing: order {order.client_order_id} already has {has};"
            " nothing was sent"
        )


def check_exit_qty(order: Order, terms: OrderRequest) -> None:
    """Raise ``InvalidOrder`` for a replace that resizes one exit of a pair alone.

    A bracket's exits (an OCO's) are for one quantity, the position they close;
    one resized alone leaves part of it unprotected or the pair closing more than
    it holds (OANDA's exits carry no quantity at all). Their prices and time in
    force may change; the service's own reductions of a peer do not come here.
    """
    leg = order.leg
    if leg is None or leg.peer_id is None or terms.qty == order.qty:
        return
    raise InvalidOrder(
        f"order {order.client_order_id} is the {leg.role.replace('_', ' ')} of"
        f" {leg.contingency} {leg.list_id}: its quantity is its pair's, so it cannot be"
        " resized alone; change its prices, or cancel the exits and place new ones",
        field="qty",
    )


#: What each contingency's legs are, in order: (role, order types allowed).
_LEGS: dict[str, tuple[tuple[LegRole, frozenset[str] | None], ...]] = {
    "bracket": (
        ("entry", None),
        ("take_profit", frozenset({"limit"})),
        ("stop_loss", frozenset({"stop", "stop_limit"})),
    ),
    "oco": (
        ("take_profit", frozenset({"limit"})),
        ("stop_loss", frozenset({"stop", "stop_limit"})),
    ),
    "oto": (("parent", None), ("child", None)),
}


def leg_roles(contingency: Contingency) -> tuple[LegRole, ...]:
    """The roles of a ``contingency``'s legs, in the order ``OrderListRequest.legs`` has them."""
    return tuple(role for role, _ in _LEGS[contingency])


_ARTICLE = {"bracket": "a", "oco": "an", "oto": "an"}


def validate_order_list(request: OrderListRequest) -> None:
    """Raise ``InvalidOrder`` unless ``request`` is a well-formed list (field ``legs[i].x``).

    Every leg is a valid order of the same symbol and broker with its own client
    order id; a bracket's exits are on the other side of the entry for its
    quantity, an OCO's two exits on one side for one quantity, with the take
    profit beyond the stop loss (above it when the exits sell, below when they
    buy; a limit entry between them).
    """
    shape = _LEGS[request.contingency]
    if len(request.legs) != len(shape):
        roles = ", ".join(role for role, _ in shape)
        raise InvalidOrder(
            f"{_ARTICLE[request.contingency]} {request.contingency} has {len(shape)} legs ({roles}),"
            f" got {len(request.legs)}",
            field="legs",
        )
    validate_client_id(request.list_id, "list_id")
    seen: set[str] = set()
    for i, (leg, (role, types)) in enumerate(zip(request.legs, shape, strict=True)):
        try:
            validate_order(leg)
        except InvalidOrder as exc:
            raise InvalidOrder(
                f"{role} leg: {exc.message}", field=f"legs[{i}].{exc.field or 'order'}"
            ) from None
        if types is not None and leg.type not in types:
            raise InvalidOrder(
                f"the {role} leg must be a {' or '.join(sorted(types))} order, not {leg.type}",
                field=f"legs[{i}].type",
            )
        if leg.symbol != request.legs[0].symbol:
            raise InvalidOrder(
                "every leg of an order list has one symbol", field=f"legs[{i}].symbol"
            )
        if leg.broker not in (None, request.broker):
            raise InvalidOrder(
                "a leg's broker differs from the list's: every leg goes to one broker",
                field=f"legs[{i}].broker",
            )
        if leg.client_order_id is not None:
            if leg.client_order_id in seen:
                raise InvalidOrder(
                    f"client order id {leg.client_order_id} is used by two legs",
                    field=f"legs[{i}].client_order_id",
                )
            seen.add(leg.client_order_id)
    if request.contingency == "oto" and request.legs[1].qty != request.legs[0].qty:
        raise InvalidOrder(
            f"an OTO's child is for its parent's quantity ({request.legs[0].qty}): it is sized"
            " to what the parent fills",
            field="legs[1].qty",
        )
    if request.contingency == "bracket":
        entry, take_profit, stop_loss = request.legs
        _check_exits(take_profit, stop_loss, first=1, entry=entry)
    elif request.contingency == "oco":
        take_profit, stop_loss = request.legs
        _check_exits(take_profit, stop_loss, first=0, entry=None)


def _check_exits(
    take_profit: OrderRequest, stop_loss: OrderRequest, *, first: int, entry: OrderRequest | None
) -> None:
    if entry is not None:
        for i, leg in enumerate((take_profit, stop_loss), start=first):
            if leg.side == entry.side:
                raise InvalidOrder(
                    f"a bracket's exits are on the other side of its entry ({entry.side})",
                    field=f"legs[{i}].side",
                )
            if leg.qty != entry.qty:
                raise InvalidOrder(
                    f"a bracket's exits are for the entry's quantity ({entry.qty})",
                    field=f"legs[{i}].qty",
                )
    if stop_loss.side != take_profit.side or stop_loss.qty != take_profit.qty:
        raise InvalidOrder(
            "the take profit and the stop loss are on one side for one quantity",
            field=f"legs[{first + 1}].side",
        )
    assert take_profit.limit_price is not None and stop_loss.stop_price is not None
    selling = take_profit.side == "sell"
    if (
        (take_profit.limit_price <= stop_loss.stop_price)
        if selling
        else (take_profit.limit_price >= stop_loss.stop_price)
    ):
        where = "above" if selling else "below"
        raise InvalidOrder(
            f"the take profit ({take_profit.limit_price}) must be {where} the stop loss"
            f" ({stop_loss.stop_price}) when the exits {take_profit.side}",
            field=f"legs[{first}].limit_price",
        )
    if entry is not None and entry.limit_price is not None and entry.type == "limit":
        low, high = sorted((take_profit.limit_price, stop_loss.stop_price))
        if not low < entry.limit_price < high:
            raise InvalidOrder(
                f"a limit entry ({entry.limit_price}) must lie between its stop loss and its"
                f" take profit ({low} - {high})",
                field="legs[0].limit_price",
            )
