"""The account's FILL activities: ``GET /v2/account/activities/FILL``, Alpaca's record of executions.

Every execution the venue makes is recorded here, whether or not its trade
update reached anyone, so a client that missed updates can recover them.
An activity's ``id`` is ``<UTC time to the millisecond>::<execution id>``:
the part after ``::`` is the ``execution_id`` the ``trade_updates`` event of
the same execution carried. Ids sort in execution order and serve as
``page_token``.

Query parameters, as Alpaca takes them: ``after`` / ``until`` (RFC 3339,
exclusive, on ``transaction_time``), ``direction`` (``desc`` by default),
``page_size`` (1..100, default 100) and ``page_token`` (the id of the last
activity of the previous page).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ult_actors.brokers.alpaca.wire import ns_to_rfc3339
from ult_actors.sim.alpaca.checks import invalid, query_time

if TYPE_CHECKING:
    from ult_actors.sim.alpaca.venue import SimOrder

#: The activity types Alpaca lists; the simulator records only FILL.
KNOWN_TYPES = frozenset({"FILL", "TRANS", "MISC", "ACATC", "ACATS", "CSD", "CSW", "DIV", "FEE"})
MAX_PAGE = 100


@dataclass
class FillActivities:
    """FILL activities in the order they happened."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    _times: list[int] = field(default_factory=list)

    def record(
        self, order: SimOrder, *, execution_id: str, ts_ns: int, qty: Decimal, price: Decimal
    ) -> None:
        """One execution of ``order`` (as it stands after the execution)."""
        moment = datetime.fromtimestamp(ts_ns // 1_000_000_000, UTC)
        millis = ts_ns // 1_000_000 % 1000
        self.entries.append(
            {
                "id": f"{moment:%Y%m%d%H%M%S}{millis:03d}::{execution_id}",
                "activity_type": "FILL",
                "transaction_time": ns_to_rfc3339(ts_ns),
                "type": "fill" if order.status == "filled" else "partial_fill",
                "price": format(price, "f"),
                "qty": format(qty, "f"),
                "side": order.side,
                "symbol": order.symbol,
                "leaves_qty": format(max(order.remaining, Decimal(0)), "f"),
                "order_id": order.id,
                "cum_qty": format(order.filled_qty, "f"),
                "order_status": order.status,
            }
        )
        self._times.append(ts_ns)

    def page(self, activity_type: str, query: dict[str, str]) -> list[dict[str, Any]]:
        """One page of activities of ``activity_type`` (422 for a type Alpaca does not know)."""
        if activity_type not in KNOWN_TYPES:
            raise invalid(f"invalid activity type: {activity_type}")
        if activity_type != "FILL":
            return []
        after = query_time(query, "after")
        until = query_time(query, "until")
        try:
            size = int(query.get("page_size", str(MAX_PAGE)))
        except ValueError:
            raise invalid("page_size must be an integer") from None
        if not 1 <= size <= MAX_PAGE:
            raise invalid(f"page_size must be between 1 and {MAX_PAGE}")
        ascending = query.get("direction", "desc") == "asc"
        picked = [
            entry
            for entry, ts in zip(self.entries, self._times, strict=True)
            if (after is None or ts > after) and (until is None or ts < until)
        ]
        if not ascending:
            picked.reverse()
        token = query.get("page_token")
        if token:
            ids = [entry["id"] for entry in picked]
            picked = picked[ids.index(token) + 1 :] if token in ids else []
        return picked[:size]
