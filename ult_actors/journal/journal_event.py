"""One row of an order's history (``SqliteStore.history``).

Apart from ``sqlite.py`` so that module can be compiled by mypyc, which drops a
``msgspec.Struct``'s class keywords (``frozen``, ``kw_only``).
"""

from __future__ import annotations

import msgspec

from ult_actors.messages import Order


class JournalEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One row of an order's history."""

    seq: int
    event: str
    ts: int
    order: Order
