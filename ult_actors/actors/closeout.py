"""Closing positions at one broker: ``ult close SYMBOL`` and ``ult flatten``.

The broker actor runs ``close_out`` for a ``CloseOut`` command. Open orders
of what is closed are canceled first (an order left working could reopen
the position, and at Alpaca it would hold the shares the close needs); then
each position is closed the venue's own way where it has one (Alpaca's
``DELETE /v2/positions``, OANDA's position close) and otherwise by a market
order sent through the broker actor's normal submit path (journaled before
it leaves, looked up by client order id on a retry). Every order touched is
tracked like any other: journaled, published, visible in ``ult orders``.

``close_positions`` is the gateway's side: it picks the brokers a
``ClosePosition`` or ``Flatten`` request means and sends each a ``CloseOut``
through risk (closing passes every trading state: see docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from ult_actors.actors.commands import BrokerCommand, CloseOut, QueryPositions
from ult_actors.actors.lookup import known_broker
from ult_actors.actors.risk import RiskCommand
from ult_actors.brokers.base import Connector, closing_order
from ult_actors.errors import AlreadyFinal, BrokerUnavailable, InvalidOrder, NotFound, UltError
from ult_actors.messages import (
    ClosePosition,
    Flatten,
    Order,
    OrderRequest,
    Position,
)
from ult_actors.runtime import CallTimeout, Mailbox, call
from ult_actors.validation import validate_symbol


@dataclass(frozen=True)
class CloseOutSide:
    """What closing needs from a broker actor: its connector and its order paths."""

    connector: Connector
    #: Cancel one order by its broker id; returns it as it then stands, tracked.
    cancel: Callable[[str], Awaitable[Order]]
    #: Merge a broker report into the journal and publish it.
    track: Callable[[Order], Awaitable[Order]]
    #: Submit through the normal path (journal first, exactly once).
    place: Callable[[OrderRequest], Awaitable[Order]]


async def close_out(side: CloseOutSide, msg: CloseOut) -> list[Order]:
    """Cancel the open orders and close the positions ``msg`` names; every order touched.

    Raises ``NotFound`` when a symbol has neither a position nor an open
    order, and the first error of a position that could not be closed (after
    closing all the others), its message naming every failure.
    """
    canceled = await _cancel_open(side, msg.symbol)
    closing: list[Order] = []
    if msg.symbol is None:
        native = await side.connector.close_all_positions()
        closing = [await side.track(order) for order in native or []]
    already = {order.symbol for order in closing}
    positions = [
        p
        for p in await side.connector.positions()
        if p.qty != 0 and p.symbol not in already and msg.symbol in (None, p.symbol)
    ]
    if msg.symbol is not None and not positions and not canceled:
        raise NotFound(
            f"no position and no open order in {msg.symbol} at broker {msg.broker}",
            field="symbol",
            broker=msg.broker,
        )
    failures: list[tuple[str, UltError]] = []
    for n, position in enumerate(positions, start=1):
        coid = msg.client_order_id if msg.symbol is not None else f"{msg.client_order_id}-{n}"
        try:
            closing.append(await _close_one(side, position, coid))
        except UltError as exc:
            failures.append((position.symbol, exc))
    if failures:
        raise combined_failure(failures, f"broker {msg.broker}")
    return canceled + closing


async def _cancel_open(side: CloseOutSide, symbol: str | None) -> list[Order]:
    """Cancel every open order (of ``symbol``, if given); the orders as they then stand."""
    canceled = []
    for order in await side.connector.open_orders():
        if symbol in (None, order.symbol):
            try:
                canceled.append(await side.cancel(order.id))
            except AlreadyFinal:
                continue  # it ended while we asked: nothing left to cancel
    return canceled


async def _close_one(side: CloseOutSide, position: Position, client_order_id: str) -> Order:
    """Close one position natively if the venue can, else by a market order."""
    native = await side.connector.close_position(position, client_order_id)
    if native is None:
        return await side.place(closing_order(position, client_order_id))
    return await side.track(native)


def combined_failure(failures: list[tuple[str, UltError]], where: str) -> UltError:
    """The first failure, its message naming every one (``what: why``) and ``where``."""
    first = failures[0][1]
    left = "; ".join(f"{what}: {exc.message}" for what, exc in failures)
    first.message = f"{where}: could not close {left}"
    first.args = (first.message,)
    return first


async def close_positions(
    request: ClosePosition | Flatten,
    *,
    brokers: Mapping[str, Mailbox[BrokerCommand]],
    risk: Mailbox[RiskCommand],
    client_order_id: str,
    timeout: float,
) -> list[Order]:
    """Close what ``request`` asks at each broker it means; every order touched.

    A ``Flatten`` without broker means every broker, and goes on past one
    that fails (then raises naming it). A ``ClosePosition`` without broker
    means the one broker holding the symbol; none or several is refused.
    """
    symbol = request.symbol if isinstance(request, ClosePosition) else None
    if symbol is not None:
        validate_symbol(symbol)
    if request.broker is not None:
        names = [known_broker(request.broker, brokers)]
    elif symbol is None:
        names = sorted(brokers)
    else:
        names = [await _holder(symbol, brokers)]
    orders: list[Order] = []
    failures: list[tuple[str, UltError]] = []
    for name in names:
        coid = client_order_id if len(names) == 1 else f"{client_order_id}-{name}"
        command = CloseOut(broker=name, symbol=symbol, client_order_id=coid)
        try:
            orders += await call(risk, command, timeout=timeout, answer=list)
        except UltError as exc:
            failures.append((name, exc))
    if failures:
        raise combined_failure(failures, "flatten" if symbol is None else f"close {symbol}")
    return orders


async def _holder(symbol: str, brokers: Mapping[str, Mailbox[BrokerCommand]]) -> str:
    """The one broker with a position in ``symbol`` (asked live); refused if none or several."""
    holders: list[str] = []
    silent: list[str] = []
    for name in sorted(brokers):
        try:
            positions: list[Position] = await call(
                brokers[name], QueryPositions(), timeout=10.0, answer=list
            )
        except (UltError, CallTimeout):
            silent.append(name)
            continue
        if any(p.symbol == symbol and p.qty != 0 for p in positions):
            holders.append(name)
    if len(holders) > 1:
        raise InvalidOrder(
            f"{symbol} is held at {', '.join(holders)}: name one with --broker", field="broker"
        )
    if holders:
        return holders[0]
    if silent:
        raise BrokerUnavailable(
            f"no position in {symbol} at the brokers that answered; {', '.join(silent)}"
            " did not: name the broker with --broker"
        )
    raise NotFound(f"no position in {symbol} at any broker", field="symbol")
