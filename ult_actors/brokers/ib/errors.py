"""What TWS error codes mean for us: notices, connectivity, fatal, order rejections.

TWS reports everything through ERR_MSG, from "market data farm connection is
OK" to "order rejected". ``req_id`` is the order id for order errors and -1
for system messages.
"""

from __future__ import annotations

import msgspec

from ult_actors.errors import (
    BrokerUnavailable,
    InsufficientFunds,
    InvalidOrder,
    NotFound,
    RateLimited,
    UltError,
)
from ult_actors.messages import TERMINAL_STATUSES, Order
from ult_actors.order_state import not_replaceable

MAX_RATE_EXCEEDED = 100
CONNECTIVITY_LOST = 1100
RESTORED_DATA_LOST = 1101
RESTORED_DATA_KEPT = 1102
CLIENT_ID_IN_USE = 326
DUPLICATE_ORDER_ID = 103
#: "Order being modified does not match original order": for a new order, its id
#: named another live order (so it was a reused id, and nothing was placed).
MODIFIED_ORDER_MISMATCH = 105
#: Codes meaning the order id, not the order, was refused: never placed, retryable.
ORDER_ID_REFUSED = frozenset({DUPLICATE_ORDER_ID, MODIFIED_ORDER_MISMATCH})
#: "Can't modify a filled order": a modify that lost the race with the last fill.
MODIFY_FILLED = 104
ORDER_CANCELED = 202
CANCEL_NOT_FOUND = 10147
CANCEL_NOT_ALLOWED = 10148
#: Order-related warnings: the order stays alive (e.g. held until the market opens).
ORDER_WARNINGS = frozenset({165, 399, 404, 434, 492, 10167})
#: Phrases of rejections caused by money, not by the order itself.
_FUNDS_WORDS = (
    "insufficient",
    "buying power",
    "equity with loan",
    "initial margin",
    "margin requirement",
)


def is_notice(code: int) -> bool:
    """Informational: farm connection status and other 21xx messages, logged only."""
    return 2100 <= code < 2200


def order_rejection(code: int, message: str, broker: str) -> UltError:
    """The error a rejected order (or a failed cancel) raises, with TWS's text."""
    text = f"TWS error {code}: {message}"
    if code == MAX_RATE_EXCEEDED:
        return RateLimited(text, retry_after=1.0, broker=broker)
    if code == CANCEL_NOT_FOUND:
        return NotFound(text, broker=broker)
    if code in ORDER_ID_REFUSED:
        # Never placed: our id counter fell behind TWS's. Retryable with a fresh id.
        return BrokerUnavailable(text, broker=broker)
    lowered = message.lower()
    if any(word in lowered for word in _FUNDS_WORDS):
        return InsufficientFunds(text, broker=broker)
    return InvalidOrder(text, broker=broker)


def modify_refusal(code: int, message: str, order: Order, broker: str) -> UltError:
    """The error a refused modification raises: the order's state, or what TWS said."""
    if code == MODIFY_FILLED:
        # TWS reports the fill before refusing the modify: the order is filled by now.
        return not_replaceable(msgspec.structs.replace(order, status="filled"))
    if code == DUPLICATE_ORDER_ID:
        # TWS's answer to a modify of an order that is no longer working: its final
        # state reached us first (or, unheard, it is at least no longer working).
        final = (
            order
            if order.status in TERMINAL_STATUSES
            else msgspec.structs.replace(order, status="canceled")
        )
        return not_replaceable(final)
    if code == MODIFIED_ORDER_MISMATCH:
        return InvalidOrder(
            f"TWS error {code}: {message} (TWS changes price, quantity and time in force"
            " in place; cancel and send a new order for anything else)",
            broker=broker,
        )
    return order_rejection(code, message, broker)
