"""The account's activities: ``GET /v2/account/activities/FILL``, Alpaca's record of
executions, and the FEE activities that charge regulatory fees on sales.

Every execution the venue makes is recorded here, whether or not its trade
update reached anyone, so a client that missed updates can recover them.
An activity's ``id`` is ``<UTC time to the millisecond>::<execution id>``:
the part after ``::`` is the ``execution_id`` the ``trade_updates`` event of
the same execution carried. Ids sort in execution order and serve as
``page_token``.

A sale also pays the SEC's fee (on its proceeds) and FINRA's trading
activity fee (per share, capped), each rounded up to the cent: one FEE
activity each, a non-trade activity as Alpaca posts it (``date``,
``net_amount`` negative, ``description``, ``symbol``, and the execution's
``qty`` and ``price``), with no order or execution id: a client joins it to
its execution by those.

Query parameters, as Alpaca takes them: ``after`` / ``until`` (RFC 3339,
exclusive, on the activity's time), ``direction`` (``desc`` by default),
``page_size`` (1..100, default 100) and ``page_token`` (the id of the last
activity of the previous page); ``GET /v2/account/activities`` takes the
types in ``activity_types`` (comma-separated).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING, Any

from ult_actors.brokers.alpaca.wire import ns_to_rfc3339
from ult_actors.sim.alpaca.checks import invalid, query_time

if TYPE_CHECKING:
    from ult_actors.sim.alpaca.venue import SimOrder

#: The activity types Alpaca lists; the simulator records FILL and FEE.
KNOWN_TYPES = frozenset(
    {"FILL", "TRANS", "MISC", "ACATC", "ACATS", "CSD", "CSW", "DIV", "FEE", "CFEE"}
)
MAX_PAGE = 100
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class SaleFees:
    """The regulatory fees a sale pays (rates as set; the defaults are of late 2026)."""

    #: SEC fee, in dollars per million dollars of proceeds.
    sec_per_million: Decimal = Decimal("27.80")
    #: FINRA trading activity fee, per share sold, and its most per execution.
    taf_per_share: Decimal = Decimal("0.000166")
    taf_max: Decimal = Decimal("8.30")

    def of(self, qty: Decimal, price: Decimal) -> dict[str, Decimal]:
        """The fees of selling ``qty`` at ``price``, by name (``REG``, ``TAF``), in dollars."""
        sec = qty * price * self.sec_per_million / 1_000_000
        taf = min(self.taf_max, qty * self.taf_per_share)
        return {
            name: amount.quantize(_CENT, rounding=ROUND_CEILING)
            for name, amount in (("REG", sec), ("TAF", taf))
            if amount > 0
        }


@dataclass
class FillActivities:
    """FILL activities (``entries``) and FEE ones (``fees``), each in the order they happened."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    fees: list[dict[str, Any]] = field(default_factory=list)
    _times: list[int] = field(default_factory=list)
    _fee_times: list[int] = field(default_factory=list)

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

    def fee(
        self, order: SimOrder, *, name: str, amount: Decimal, execution_id: str, ts_ns: int,
        qty: Decimal, price: Decimal,
    ) -> None:  # fmt: skip
        """A FEE activity of ``amount`` dollars (named ``name``) charged for one execution."""
        moment = datetime.fromtimestamp(ts_ns // 1_000_000_000, UTC)
        millis = ts_ns // 1_000_000 % 1000
        self.fees.append(
            {
                # Its own id after the time: a fee names no execution.
                "id": f"{moment:%Y%m%d%H%M%S}{millis:03d}::{execution_id}-{name.lower()}",
                "activity_type": "FEE",
                "date": f"{moment:%Y-%m-%d}",
                "net_amount": format(-amount, "f"),
                "description": f"{name} fee for the sale of {qty:f} {order.symbol} at {price:f}",
                "status": "executed",
                "symbol": order.symbol,
                "qty": format(qty, "f"),
                "price": format(price, "f"),
            }
        )
        self._fee_times.append(ts_ns)

    def page(self, activity_type: str, query: dict[str, str]) -> list[dict[str, Any]]:
        """One page of the types in ``activity_type`` (comma-separated; 422 for unknown ones)."""
        types = set(activity_type.split(","))
        unknown = sorted(types - KNOWN_TYPES)
        if unknown:
            raise invalid(f"invalid activity type: {','.join(unknown)}")
        after = query_time(query, "after")
        until = query_time(query, "until")
        try:
            size = int(query.get("page_size", str(MAX_PAGE)))
        except ValueError:
            raise invalid("page_size must be an integer") from None
        if not 1 <= size <= MAX_PAGE:
            raise invalid(f"page_size must be between 1 and {MAX_PAGE}")
        ascending = query.get("direction", "desc") == "asc"
        timed = list(zip(self._times, self.entries, strict=True)) if "FILL" in types else []
        if "FEE" in types:
            timed += zip(self._fee_times, self.fees, strict=True)
            timed.sort(key=lambda pair: pair[0])  # stable: a fee after its execution
        picked = [
            entry
            for ts, entry in timed
            if (after is None or ts > after) and (until is None or ts < until)
        ]
        if not ascending:
            picked.reverse()
        token = query.get("page_token")
        if token:
            ids = [entry["id"] for entry in picked]
            picked = picked[ids.index(token) + 1 :] if token in ids else []
        return picked[:size]
