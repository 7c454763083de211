"""One append to the journal's change log (``journal.changelog``), as msgpack.

Apart from ``changelog.py`` so that module can be compiled by mypyc, which drops a
``msgspec.Struct``'s class keywords (``array_like``: the record's encoding).
"""

from __future__ import annotations

import msgspec

#: One record as logged, everything its table rows need: sequence number, client
#: order id, event, status, time, body (the msgpack ``Order``), broker order id,
#: broker, outcome, ``updated_at``. A body is a ``bytearray`` (as made, and as read back
#: from the log): Python 3.11's sqlite3 binds one as a blob at once, where a ``bytes``
#: parameter first looks for an adapter, raising and clearing an ``AttributeError``
#: (~2,000 instructions a body, with the GIL held), and a copy into a ``bytearray`` at
#: the fold cost ~1,000 more.
LogRow = tuple[int, str, str, str, int, bytearray, str, str, str, int]
#: One fill as logged, in the ``fills`` table's column order: broker, fill id,
#: client order id, symbol, time, body (the msgpack ``Fill``, a ``bytearray`` too).
FillRow = tuple[str, str, str, str, int, bytearray]


class LogRecord(msgspec.Struct, array_like=True):
    """One append: a batch's records and fills."""

    rows: list[LogRow]
    fills: list[FillRow]
