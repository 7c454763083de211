"""Translation between the service's orders and IB's: types, time in force, statuses."""

from __future__ import annotations

from decimal import Decimal

from ult_actors.brokers.ib import wire
from ult_actors.brokers.ib.settings import IbSettings
from ult_actors.errors import InvalidOrder
from ult_actors.messages import Order, OrderRequest, OrderStatus, OrderType, Side, TimeInForce

ORDER_TYPES: dict[OrderType, str] = {
    "market": "MKT",
    "limit": "LMT",
    "stop": "STP",
    "stop_limit": "STP LMT",
}
FROM_IB_TYPE: dict[str, OrderType] = {v: k for k, v in ORDER_TYPES.items()}
TIFS: dict[TimeInForce, str] = {
    "day": "DAY",
    "gtc": "GTC",
    "ioc": "IOC",
    "fok": "FOK",
    "opg": "OPG",
}
FROM_IB_TIF: dict[str, TimeInForce] = {v: k for k, v in TIFS.items()}

#: IB order statuses and ours; filled quantity refines "Submitted" to partially_filled.
_STATUSES: dict[str, OrderStatus] = {
    "PendingSubmit": "pending_new",
    "ApiPending": "pending_new",
    "PreSubmitted": "accepted",
    "Submitted": "accepted",
    "PendingCancel": "pending_cancel",
    "ApiCancelled": "canceled",
    "Cancelled": "canceled",
    "Filled": "filled",
    "Inactive": "rejected",
}


def to_ib(
    request: OrderRequest, settings: IbSettings, account: str
) -> tuple[wire.Contract, wire.IbOrder]:
    """The IB contract and order for a validated request (``InvalidOrder`` if IB has no such thing)."""
    tif = TIFS.get(request.time_in_force)
    if tif is None:
        raise InvalidOrder(
            f"time_in_force {request.time_in_force!r} is not available at IB"
            f" (use one of {', '.join(TIFS)}; market-on-close is an order type there)",
            field="time_in_force",
        )
    if request.type in ("limit", "stop_limit") and request.limit_price is None:
        raise InvalidOrder(
            f"limit_price is required for {request.type} orders", field="limit_price"
        )
    if request.type in ("stop", "stop_limit") and request.stop_price is None:
        raise InvalidOrder(f"stop_price is required for {request.type} orders", field="stop_price")
    symbol = request.symbol.strip().upper()
    if not symbol:
        raise InvalidOrder("symbol is required", field="symbol")
    contract = wire.Contract(symbol=symbol, exchange=settings.exchange, currency=settings.currency)
    order = wire.IbOrder(
        action="BUY" if request.side == "buy" else "SELL",
        total_quantity=request.qty,
        order_type=ORDER_TYPES[request.type],
        lmt_price=request.limit_price if request.type in ("limit", "stop_limit") else None,
        aux_price=request.stop_price if request.type in ("stop", "stop_limit") else None,
        tif=tif,
        account=account,
        order_ref=request.client_order_id or "",
        outside_rth=request.extended_hours,
    )
    return contract, order


def status_from_ib(ib_status: str, filled: Decimal) -> OrderStatus | None:
    """Our status for an IB status string; ``None`` for one we do not know."""
    status = _STATUSES.get(ib_status)
    if status == "accepted" and filled > 0:
        return "partially_filled"
    return status


def order_from_ib(
    *,
    broker: str,
    order_id: int | None,
    contract: wire.Contract,
    order: wire.IbOrder,
    status: OrderStatus,
    now: int,
    filled: Decimal = Decimal(0),
    avg_price: Decimal | None = None,
) -> Order | None:
    """An ``Order`` from what TWS reports; ``None`` for orders we cannot express
    (other order types or time in force, e.g. trailing stops typed into TWS)."""
    order_type = FROM_IB_TYPE.get(order.order_type)
    tif = FROM_IB_TIF.get(order.tif or "DAY")
    if order_type is None or tif is None or order.action not in ("BUY", "SELL"):
        return None
    side: Side = "buy" if order.action == "BUY" else "sell"
    return Order(
        id=str(order_id) if order_id else "",
        # Orders placed outside the service have no orderRef: name them by IB's perm id.
        client_order_id=order.order_ref or f"ib-perm-{order.perm_id}",
        broker=broker,
        symbol=contract.symbol
        if contract.sec_type == "STK"
        else contract.local_symbol or contract.symbol,
        side=side,
        qty=order.total_quantity,
        type=order_type,
        time_in_force=tif,
        status=status,
        limit_price=order.lmt_price if order_type in ("limit", "stop_limit") else None,
        stop_price=order.aux_price if order_type in ("stop", "stop_limit") else None,
        extended_hours=order.outside_rth,
        filled_qty=filled,
        avg_fill_price=avg_price if filled > 0 else None,
        created_at=now,
        updated_at=now,
    )


def same_request(order: Order, request: OrderRequest) -> bool:
    """Whether a retried request asks for the order already placed under its client id."""
    return (
        order.symbol == request.symbol.strip().upper()
        and order.side == request.side
        and order.qty == request.qty
        and order.type == request.type
        and order.limit_price
        == (request.limit_price if request.type in ("limit", "stop_limit") else None)
        and order.stop_price
        == (request.stop_price if request.type in ("stop", "stop_limit") else None)
        and order.time_in_force == request.time_in_force
    )
