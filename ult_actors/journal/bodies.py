"""An order's and a fill's body as the journal stores them: msgpack, the fields as an array.

Since SQLite schema 9 (PostgreSQL's 4) a body is the ``Order``'s or ``Fill``'s
fields in their declared order, as a msgpack array (``changelog.log_row`` and
``fill_row`` write them): no field names, so a filled market order is ~115 bytes
instead of the ~350 of the map that earlier versions wrote. SQLite copies,
balances and writes a third of the bytes per row, and the encode is cheaper.
A body written as a map before stays one: ``decode_order`` and ``decode_fill``
read either form, told apart by the first byte.

The fields' order is part of the stored form: a field may be added at the end of
``Order`` or ``Fill`` (an older body lacks it and is read with its default),
never moved or removed (``tests/journal/test_bodies.py`` pins the order).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from ult_actors.messages import Fill, Order
from ult_actors.struct_arrays import array_twin

_decode_order_map: Final = msgspec.msgpack.Decoder(Order).decode
_decode_fill_map: Final = msgspec.msgpack.Decoder(Fill).decode
_decode_order_array: Final = msgspec.msgpack.Decoder(array_twin(Order, "OrderBody")).decode
_decode_fill_array: Final = msgspec.msgpack.Decoder(array_twin(Fill, "FillBody")).decode
_astuple: Final = msgspec.structs.astuple
# ``Order`` and ``Fill`` take their own fields by position (``_Value``'s ``kw_only`` covers
# only fields declared on it, none), as unpickling one does.
_order: Final[Any] = Order
_fill: Final[Any] = Fill


def is_array(body: bytes | bytearray | memoryview) -> bool:
    """Whether ``body`` is a msgpack array (this form) rather than a map (before schema 9)."""
    first = body[0]
    return 0x90 <= first <= 0x9F or first == 0xDC or first == 0xDD


def decode_order(body: bytes | bytearray | memoryview) -> Order:
    """The ``Order`` of a journal body, either form."""
    if is_array(body):
        order: Order = _order(*_astuple(_decode_order_array(body)))
        return order
    return _decode_order_map(body)


def decode_fill(body: bytes | bytearray | memoryview) -> Fill:
    """The ``Fill`` of a journal body, either form."""
    if is_array(body):
        fill: Fill = _fill(*_astuple(_decode_fill_array(body)))
        return fill
    return _decode_fill_map(body)
