"""The paper file's record classes: ``msgspec.Struct``s declared with class keywords.

mypyc builds such a class without its class statement's keywords and says
nothing (``tests/ops/test_compiled_sources.py``): a compiled ``Change``
would encode as a map without its tag, a compiled ``WorkingOrder`` would
lose ``kw_only``. So they live here, in a module the compiled build leaves
alone, and the modules that use them (``batch``, ``changelog``) can be
compiled. This one has no code that runs per order.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from ult_actors.messages import Fill, Order

__all__ = ["CHANGE_TAG", "Change", "ObjectsRecord", "RowsRecord", "WorkingOrder"]


class WorkingOrder(msgspec.Struct, kw_only=True):
    """An order at the paper venue plus the matching state the ``Order`` does not carry."""

    order: Order
    #: A stop or stop-limit whose stop price has been reached.
    triggered: bool = False
    #: Still travelling to the venue (``latency_ms``); not yet matched.
    in_transit: bool = False
    #: Commissions charged so far.
    commission: Decimal = Decimal(0)


#: The first field of every ``Change``: a change log of an earlier version is told apart by it.
CHANGE_TAG = 3


class Change(msgspec.Struct, array_like=True, tag=CHANGE_TAG):
    """One venue call's changes to one account as the writer's thread reads them back.

    Decimals are the text the file stores; each order and fill is its msgpack,
    the file's body, left as it is.
    """

    account: str
    #: Each order the call changed, by id.
    orders: dict[str, msgspec.Raw]
    #: The ids of those that ended (the others are open).
    ended: list[str]
    fills: list[msgspec.Raw]
    #: ``(symbol, qty, avg_price, realized_pl)`` of each holding the call moved.
    holdings: list[tuple[str, str, str, str]]
    #: ``(symbol, price)`` of each price moved since the last record.
    prices: list[tuple[str, str]]
    cash: str
    created_at: int
    next_order: int
    next_fill: int


class ObjectsRecord(msgspec.Struct, array_like=True):
    """A change log record as the version before ``Change`` wrote it: copies of the
    venue's objects.

    Read only (``changelog``), so that a log left by a crash of that version is not
    lost on an upgrade. Its decimals are read as the text the file stores.
    """

    account: str
    orders: list[tuple[WorkingOrder, bool]]
    fills: list[Fill]
    holdings: list[tuple[str, str, str, str]]
    prices: list[tuple[str, str]]
    cash: str
    created_at: int
    next_order: int
    next_fill: int
    seq: int = 0


class RowsRecord(msgspec.Struct, array_like=True):
    """A change log record as an earlier version wrote it: one venue call's rows for the file.

    Read only, like ``ObjectsRecord``.
    """

    seq: int
    orders: list[tuple[str, str, str, int, bytes]]
    fills: list[tuple[str, str, str, bytes]]
    positions: list[tuple[str, str, str, str, str]]
    prices: list[tuple[str, str, str]]
    accounts: list[tuple[str, str, int, int, int]]
