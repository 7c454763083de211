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
from typing import Any

import msgspec

from ult_actors.messages import Fill, Order
from ult_actors.struct_arrays import array_twin

__all__ = [
    "CHANGE_TAG",
    "ArrayBodiesChange",
    "Change",
    "FillKeys",
    "MapBodiesChange",
    "ObjectsRecord",
    "RowsRecord",
    "WorkingKeys",
    "WorkingOrder",
    "fill_from_array",
    "fills_from_arrays",
    "working_from_array",
]


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
CHANGE_TAG = 5


class Change(msgspec.Struct, array_like=True, gc=False, tag=CHANGE_TAG):
    """One venue call's changes to one account: the file's rows of it, as they are written.

    Made on the trio thread (``batch.stage_change``) and handed as it is to the
    writer's thread, which folds the rows without decoding anything; its
    encode is the change log's record, read back as this on a replay. Each
    body is the msgpack the file stores (an array of the order's or fill's
    fields by position, ``working_from_array``, ``fill_from_array``), carried
    as a msgpack bin; decimals are the text the file stores. Nothing in it
    changes once made (the venue goes on with its own objects), so the two
    threads may share it.
    """

    #: ``(account, id, client_order_id, open, body)`` of each order the call changed.
    orders: list[tuple[str, str, str, int, bytearray]]
    #: ``(account, fill_id, order_id, body)`` of each fill.
    fills: list[tuple[str, str, str, bytearray]]
    #: ``(account, symbol, qty, avg_price, realized_pl)`` of each holding the call moved.
    positions: list[tuple[str, str, str, str, str]]
    #: ``(account, symbol, price)`` of each price moved since the last record.
    prices: list[tuple[str, str, str]]
    #: ``(name, cash, created_at, next_order, next_fill)``: the account's counters.
    account: tuple[str, str, int, int, int]


class ArrayBodiesChange(msgspec.Struct, array_like=True, tag=4):
    """A ``Change`` as the version before wrote it: the orders and fills each a msgpack
    array without their rows' keys, which the writer read from them.

    Read only (``changelog``), so that a log left by a crash of that version is not
    lost. Decimals are the text the file stores; each order and fill is its body,
    left as it is.
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


class MapBodiesChange(ArrayBodiesChange, tag=3):
    """An ``ArrayBodiesChange`` as the version before that wrote it: each body a msgpack
    map of the ``WorkingOrder`` or ``Fill`` by field name, as the file's rows of that
    version hold.

    Read only (``changelog``), so that a log left by a crash of that version is not lost.
    """


#: An ``Order`` or a ``Fill`` as a body holds it: its fields by position
#: (``msgspec.structs.astuple``). So ``Order``'s and ``Fill``'s fields keep their
#: order: one added at the end with a default is read from older bodies as that
#: default; any other change to them needs a new body form (the test pins them).
_OrderArray = array_twin(Order, "_OrderArray")
_FillArray = array_twin(Fill, "_FillArray")
#: A ``WorkingOrder`` as a body holds it: ``[order, triggered, in_transit, commission]``.
_WorkingArray = array_twin(WorkingOrder, "_WorkingArray", order=_OrderArray)
_working_array = msgspec.msgpack.Decoder(_WorkingArray).decode
_fill_array = msgspec.msgpack.Decoder(_FillArray).decode
# (``list[_FillArray]`` spelt so that mypy takes a class made at run time.)
_fill_arrays = msgspec.msgpack.Decoder(list.__class_getitem__(_FillArray)).decode
#: A msgpack array's header of up to 2**32 - 1 items, the count after it (big-endian).
_ARRAY32 = b"\xdd"


def working_from_array(body: bytes) -> WorkingOrder:
    """The order a body of this version holds (a msgpack array, ``stage_change``'s)."""
    row: Any = _working_array(body)
    return WorkingOrder(
        order=Order(**msgspec.structs.asdict(row.order)),
        triggered=row.triggered,
        in_transit=row.in_transit,
        commission=row.commission,
    )


def fill_from_array(body: bytes) -> Fill:
    """The fill a body of this version holds (a msgpack array, ``stage_change``'s)."""
    return Fill(**msgspec.structs.asdict(_fill_array(body)))


def fills_from_arrays(bodies: bytes, count: int) -> list[Fill]:
    """The ``count`` fills whose bodies (msgpack arrays, ``stage_change``'s) ``bodies``
    holds one after the other (an order row's ``fills``), oldest first."""
    if not count:
        return []
    # With an array's header in front, they are one msgpack array: one decode.
    items: list[Any] = _fill_arrays(_ARRAY32 + count.to_bytes(4, "big") + bodies)
    return [Fill(**msgspec.structs.asdict(item)) for item in items]


class _OrderKeys(msgspec.Struct, array_like=True):
    id: str
    client_order_id: str


class WorkingKeys(msgspec.Struct, array_like=True):
    """The keys of an order's row, read from its body without the rest of it (the
    bodies of an ``ArrayBodiesChange``)."""

    order: _OrderKeys


class FillKeys(msgspec.Struct, array_like=True):
    """The keys of a fill's row, read from its body without the rest of it."""

    fill_id: str
    order_id: str


class ObjectsRecord(msgspec.Struct, array_like=True):
    """A change log record as the version before ``MapBodiesChange`` wrote it:
    copies of the venue's objects.

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
